"""The text-to-SQL task type: SQL categories, SQL-first generation, queries proven to run, execution accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tools.data import FlockRecord
from tools.tasks.base import Categorization, GateCheck, TaskMetric, TaskPlugin, fail, ok
from tools.tasks.text2sql.records import CREATE_TABLE, prompt_of
from tools.tasks.text2sql.sql.categories import (
    CATEGORY_DESCRIPTIONS,
    UNPARSABLE,
    categorize_sql,
    clean_sql,
    looks_like_sql,
)
from tools.tasks.text2sql.sql.sandbox import check_sql as sandbox_check
from tools.tasks.text2sql.strategy import Text2SQLStrategy


def check_sql(record: FlockRecord) -> GateCheck:
    """The answer is one SQL query that parses and runs on the record's schema (sandboxed SQLite)."""
    schema = prompt_of(record).schema
    if not schema:
        return fail("sql_no_schema", "no CREATE TABLE statements in the prompt")
    answers = record.assistant_texts()
    result = sandbox_check(schema, clean_sql(answers[-1]))
    if not result.ok:
        return fail(f"sql_{result.reason_code}", result.detail)
    return ok()


class Text2SQLPlugin(TaskPlugin):
    name = "text2sql"
    description = "Text-to-SQL: schema (CREATE TABLE) and question in, one SQL query out."
    strategies = (Text2SQLStrategy,)
    metrics = (TaskMetric("sql_execution", result_key="execution_accuracy"), TaskMetric("sql_exact_match"),
               TaskMetric("exact_match"))
    headline_metric = "sql_execution"
    hub_tags = ("text-to-sql",)

    prompt_of = staticmethod(prompt_of)

    def detect(self, records: Sequence[FlockRecord]) -> float:
        hits = 0
        for record in records:
            prompt_text = (record.system or "") + "\n" + record.first_user_text()
            answers = record.assistant_texts()
            if CREATE_TABLE.search(prompt_text) and answers and looks_like_sql(answers[-1]):
                hits += 1
        return hits / len(records) if records else 0.0

    def categorize(self, record: FlockRecord) -> Categorization:
        answers = record.assistant_texts()
        primary, tags = categorize_sql(answers[-1]) if answers else (UNPARSABLE, ())
        return Categorization(primary=primary, tags=tags or (primary,))

    def categories(self) -> dict[str, str]:
        return dict(CATEGORY_DESCRIPTIONS)

    def check_validity(self, record: FlockRecord) -> GateCheck:
        return check_sql(record)

    def content_text(self, record: FlockRecord) -> str:
        """The question plus the SQL: SQL-first data differs mostly in the query, and the schema repeats."""
        answers = record.assistant_texts()
        question = prompt_of(record).question
        return question + "\n" + (clean_sql(answers[-1]) if answers else "")

    def metric_references(self, metric: str, records: Sequence[FlockRecord], golds: Sequence[str]) -> list[Any]:
        if metric == "sql_execution":
            # prompt_of also finds a schema given in the system prompt rather than the user turn.
            return [{"sql": gold, "schema": prompt_of(r).schema} for r, gold in zip(records, golds, strict=True)]
        return list(golds)
