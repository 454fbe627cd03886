"""SQL execution accuracy: does the predicted query return what the gold query returns, on several databases?

For each example, ``databases`` (default 3) SQLite databases are synthesized from the example's schema with
different seeds, filled with realistic rows whose values include the literals of both queries (so a filter such
as ``city = 'Berlin'`` selects rows and a wrong filter shows), with a row meeting each AND of the gold's conditions
on one table. Gold and prediction run on each database in the sandbox (in-memory, read-only authorizer, time
limit, row cap; see :mod:`tools.tasks.text2sql.sql.sandbox`). The example scores 1 when every database gives
equal results, else 0.

Comparison rules:
- rows are tuples in SELECT order; column names and aliases are ignored (``SELECT COUNT(*) AS n`` equals
  ``SELECT COUNT(*)``); column order matters unless ``column_order="any"`` (then some permutation of the
  prediction's columns must match, tried for up to 6 columns);
- results are compared as multisets of rows, or as ordered lists when the gold's outermost query has ORDER BY;
- numbers compare by value (``3 == 3.0``), floats rounded to 6 decimal places;
- a prediction that fails (syntax, unknown column, write attempt, ATTACH, PRAGMA, a loop stopped by the time
  limit, more than one statement) scores 0 and nothing it tried touches the databases;
- a result cut by the row cap on either side scores 0 (``too_many_rows``);
- an example whose gold fails or whose schema does not parse scores 0 and is counted under ``gold_error``/
  ``bad_schema``, so broken references stay visible.

Entry points: :func:`execution_accuracy` (plain Python, typed report), :func:`compute` (the metrics package's
dict form; ``references`` are ``{"sql", "schema"[, "category"]}`` mappings, or gold strings with
``schemas=[...]``), and the ``evaluate`` module class for ``evaluate.load(<this folder>)``.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets
import evaluate
from sqlglot import exp

from tools.tasks.text2sql.sql.categories import UNPARSABLE, categorize_sql, clean_sql
from tools.tasks.text2sql.sql.literals import literal_pool, literal_rows, parse_sql
from tools.tasks.text2sql.sql.sandbox import DEFAULT_TIMEOUT_S, run_query, sandbox_database
from tools.tasks.text2sql.sql.schema import Schema, SchemaError, parse_schema

ColumnOrder = Literal["strict", "any"]
_MAX_PERMUTED_COLUMNS = 6


@dataclass(frozen=True)
class ExampleVerdict:
    """One example's outcome: ``reason`` is ``match``, ``mismatch``, ``pred_<error kind>``, ``too_many_rows``,
    ``gold_error`` or ``bad_schema``."""

    match: bool
    reason: str
    category: str
    detail: str = ""


@dataclass
class ExecutionReport:
    accuracy: float
    count: int
    per_category: dict[str, float] = field(default_factory=dict)
    category_counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[ExampleVerdict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"execution_accuracy": self.accuracy, "count": self.count, "per_category": self.per_category,
                "category_counts": self.category_counts, "reasons": self.reasons}


def _normal_value(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        rounded = round(value, 6)
        return int(rounded) if rounded.is_integer() else rounded
    return value


def _ordered(sql: str) -> bool:
    """Whether the outermost query sorts its result (so row order is part of the answer)."""
    tree = parse_sql(sql)
    return tree is not None and isinstance(tree, exp.Query) and tree.args.get("order") is not None


def results_equal(gold: list[tuple[Any, ...]], predicted: list[tuple[Any, ...]], *, ordered: bool,
                  column_order: ColumnOrder = "strict") -> bool:
    """Compare two results under the module's rules (values are normalized here)."""
    gold = [tuple(_normal_value(v) for v in row) for row in gold]
    predicted = [tuple(_normal_value(v) for v in row) for row in predicted]

    def same(candidate: list[tuple[Any, ...]]) -> bool:
        return candidate == gold if ordered else Counter(candidate) == Counter(gold)

    if len(gold) != len(predicted):
        return False
    if same(predicted):
        return True
    width = len(predicted[0]) if predicted else 0
    if column_order == "strict" or not gold or width != len(gold[0]) or width > _MAX_PERMUTED_COLUMNS:
        return False
    for permutation in itertools.permutations(range(width)):
        if same([tuple(row[i] for i in permutation) for row in predicted]):
            return True
    return False


def _example(prediction: str, gold: str, schema_text: str, category: str, *, databases: int, seed: int,
             timeout_s: float, max_rows: int, column_order: ColumnOrder) -> ExampleVerdict:
    try:
        schema: Schema = parse_schema(schema_text)
    except SchemaError as exc:
        return ExampleVerdict(False, "bad_schema", category, str(exc))
    gold_sql, predicted_sql = clean_sql(gold), clean_sql(prediction or "")
    pool = literal_pool(schema, [gold_sql, predicted_sql])
    together = literal_rows(schema, [gold_sql])
    ordered = _ordered(gold_sql)
    for index in range(databases):
        conn = sandbox_database(schema, seed=seed + index, literal_pool=pool, literal_rows=together)
        try:
            gold_result = run_query(conn, gold_sql, timeout_s=timeout_s, max_rows=max_rows)
            if not gold_result.ok:
                return ExampleVerdict(False, "gold_error", category, gold_result.error or "")
            predicted = run_query(conn, predicted_sql, timeout_s=timeout_s, max_rows=max_rows)
        finally:
            conn.close()
        if not predicted.ok:
            return ExampleVerdict(False, f"pred_{predicted.error_kind}", category, predicted.error or "")
        if gold_result.truncated or predicted.truncated:
            return ExampleVerdict(False, "too_many_rows", category, f"more than {max_rows} rows")
        if not results_equal(list(gold_result.rows), list(predicted.rows), ordered=ordered,
                             column_order=column_order):
            return ExampleVerdict(False, "mismatch", category, f"database {index + 1} of {databases}")
    return ExampleVerdict(True, "match", category)


def execution_accuracy(predictions: Sequence[str], golds: Sequence[str], schemas: Sequence[str], *,
                       categories: Sequence[str | None] | None = None, databases: int = 3, seed: int = 0,
                       timeout_s: float = DEFAULT_TIMEOUT_S, max_rows: int = 10_000,
                       column_order: ColumnOrder = "strict") -> ExecutionReport:
    """Execution accuracy over examples; a missing or empty category is the gold SQL's primary category."""
    if not (len(predictions) == len(golds) == len(schemas)):
        raise ValueError(f"{len(predictions)} predictions, {len(golds)} golds and {len(schemas)} schemas: "
                         "one of each per example")
    if categories is not None and len(categories) != len(golds):
        raise ValueError(f"{len(categories)} categories for {len(golds)} examples")
    if databases < 1:
        raise ValueError(f"databases must be at least 1, got {databases}")
    verdicts: list[ExampleVerdict] = []
    for index, (prediction, gold, schema) in enumerate(zip(predictions, golds, schemas, strict=True)):
        category = (categories[index] if categories is not None else None) or categorize_sql(gold)[0]
        try:
            verdict = _example(prediction, gold, schema, category or UNPARSABLE, databases=databases, seed=seed,
                               timeout_s=timeout_s, max_rows=max_rows, column_order=column_order)
        except RecursionError as exc:  # a prediction nested past what the SQL tools can walk: a wrong answer
            verdict = ExampleVerdict(False, "pred_unparsable", category or UNPARSABLE, f"RecursionError: {exc}")
        verdicts.append(verdict)
    by_category: dict[str, list[bool]] = defaultdict(list)
    for verdict in verdicts:
        by_category[verdict.category].append(verdict.match)
    return ExecutionReport(
        accuracy=sum(v.match for v in verdicts) / len(verdicts) if verdicts else 0.0,
        count=len(verdicts),
        per_category={c: sum(m) / len(m) for c, m in sorted(by_category.items())},
        category_counts={c: len(m) for c, m in sorted(by_category.items())},
        reasons=dict(Counter(v.reason for v in verdicts)),
        examples=verdicts,
    )


def _split_references(references: Sequence[Any], schemas: Sequence[str] | None
                      ) -> tuple[list[str], list[str], list[str | None]]:
    golds: list[str] = []
    schema_texts: list[str] = []
    categories: list[str | None] = []
    for index, reference in enumerate(references):
        if isinstance(reference, Mapping):
            if "sql" not in reference or "schema" not in reference:
                raise ValueError(f"references[{index}] needs 'sql' and 'schema' keys, got {sorted(reference)}")
            golds.append(str(reference["sql"]))
            schema_texts.append(str(reference["schema"]))
            categories.append(str(reference["category"]) if reference.get("category") else None)
        else:
            if schemas is None:
                raise ValueError("gold SQL strings as references need schemas=[...] (one schema per example), or "
                                 "pass references as {'sql', 'schema'} mappings")
            golds.append(str(reference))
            categories.append(None)
    if schemas is not None:
        schema_texts = list(schemas)
    return golds, schema_texts, categories


def compute(predictions: Sequence[str], references: Sequence[Any], *, schemas: Sequence[str] | None = None,
            databases: int = 3, seed: int = 0, timeout_s: float = DEFAULT_TIMEOUT_S, max_rows: int = 10_000,
            column_order: ColumnOrder = "strict") -> dict[str, Any]:
    """``{"execution_accuracy", "count", "per_category", "category_counts", "reasons"}``."""
    golds, schema_texts, categories = _split_references(references, schemas)
    report = execution_accuracy(predictions, golds, schema_texts, categories=categories, databases=databases,
                                seed=seed, timeout_s=timeout_s, max_rows=max_rows, column_order=column_order)
    return report.as_dict()


class SqlExecution(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="",
            inputs_description="predictions: list of SQL strings; references: list of {'sql', 'schema', "
                               "'category'} (category may be empty)",
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": {"sql": datasets.Value("string"), "schema": datasets.Value("string"),
                               "category": datasets.Value("string")},
            }),
        )

    def _compute(self, predictions, references, databases=3, seed=0, timeout_s=DEFAULT_TIMEOUT_S, max_rows=10_000,
                 column_order="strict"):
        return compute(predictions, references, databases=databases, seed=seed, timeout_s=timeout_s,
                       max_rows=max_rows, column_order=column_order)
