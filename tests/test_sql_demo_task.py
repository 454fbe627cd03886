"""The SQL toolkit over the bundled text-to-SQL demo task (tools/demo_tasks/text2sql)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tools.data import FlockRecord, load_jsonl
from tools.tasks.base import Candidate, Draft
from tools.tasks.text2sql import CATEGORY_PRIORITY, Text2SQLPlugin, categorize_sql
from tools.tasks.text2sql.metrics.sql_execution.sql_execution import execution_accuracy
from tools.tasks.text2sql.sql.faithfulness import faithfulness
from tools.tasks.text2sql.sql.literals import literal_pool, literal_rows
from tools.tasks.text2sql.sql.sampler import QuerySampler
from tools.tasks.text2sql.sql.sandbox import check_sql, run_query, sandbox_database
from tools.tasks.text2sql.sql.schema import parse_schema
from tools.tasks.text2sql.strategy import Text2SQLStrategy, question_of

DEMO = Path(__file__).resolve().parents[1] / "tools" / "demo_tasks" / "text2sql"
pytestmark = pytest.mark.skipif(not (DEMO / "training_set.jsonl").is_file(), reason="demo task not present")


def _records(name: str) -> list[FlockRecord]:
    loaded = load_jsonl(DEMO / name)
    return list(getattr(loaded, "records", loaded))


@pytest.fixture(scope="module")
def train() -> list[FlockRecord]:
    return _records("training_set.jsonl")


@pytest.fixture(scope="module")
def everything(train: list[FlockRecord]) -> list[FlockRecord]:
    return train + _records("validation_set.jsonl")


@pytest.fixture(scope="module")
def strategy(train: list[FlockRecord]) -> Text2SQLStrategy:
    return Text2SQLStrategy(Text2SQLPlugin(), train)


def test_every_gold_query_runs_on_three_synthesized_databases(everything: list[FlockRecord]) -> None:
    with_rows = 0
    for record in everything:
        sql = record.assistant_texts()[-1]
        schema = parse_schema(Text2SQLPlugin.prompt_of(record).schema)
        pool, rows = literal_pool(schema, [sql]), literal_rows(schema, [sql])
        results = [run_query(sandbox_database(schema, seed=s, literal_pool=pool, literal_rows=rows), sql)
                   for s in range(3)]
        assert all(r.ok for r in results), (sql, [r.error for r in results])
        with_rows += any(r.rows and any(v is not None for v in r.rows[0]) for r in results)
    # The rest need more rows than a small database has (HAVING COUNT(*) > 100) or NULLs.
    assert with_rows / len(everything) >= 0.95


def test_gold_against_itself_scores_one(everything: list[FlockRecord]) -> None:
    golds = [r.assistant_texts()[-1] for r in everything[::5]]
    schemas = [Text2SQLPlugin.prompt_of(r).schema for r in everything[::5]]
    report = execution_accuracy(golds, golds, schemas)
    assert report.accuracy == 1.0, report.reasons
    assert set(report.per_category) == set(CATEGORY_PRIORITY)


def test_sampler_writes_every_category_for_every_domain(strategy: Text2SQLStrategy) -> None:
    domains = json.loads((DEMO / "domains.json").read_text(encoding="utf-8"))
    by_block = {d.schema_block: d for d in strategy.domains}
    assert set(by_block) == {v["schema"] for v in domains.values()}
    rng = random.Random(0)
    for domain in strategy.domains:
        sampler: QuerySampler = strategy.sampler(domain)
        for category in CATEGORY_PRIORITY:
            for _ in range(2):
                query = sampler.sample(category, rng)
                assert categorize_sql(query.sql)[0] == category
                assert check_sql(domain.schema, query.sql).ok, query.sql


def test_strategy_records_match_the_demo_format(strategy: Text2SQLStrategy, train: list[FlockRecord]) -> None:
    assert strategy.frame.system == train[0].system
    assert strategy.style.alias_kind == "initials"
    rng = random.Random(3)
    for category in CATEGORY_PRIORITY:
        draft = strategy.draft(category, rng)
        assert isinstance(draft, Draft)
        candidate = strategy.complete(draft, None)
        assert isinstance(candidate, Candidate)
        record = candidate.record
        assert record.system == train[0].system
        user = record.first_user_text()
        assert user.startswith("Schema:\nCREATE TABLE ") and "\n\nQuestion: " in user
        assert Text2SQLPlugin().categorize(record).primary == category
        assert check_sql(Text2SQLPlugin.prompt_of(record).schema, record.assistant_texts()[-1]).ok


def test_faithfulness_accepts_most_hand_written_questions(everything: list[FlockRecord]) -> None:
    verdicts = [faithfulness(question_of(r), r.assistant_texts()[-1],
                             parse_schema(Text2SQLPlugin.prompt_of(r).schema)) for r in everything]
    assert all(v.reason != "missing_value" for v in verdicts), [v for v in verdicts if v.reason == "missing_value"]
    assert sum(v.ok for v in verdicts) / len(verdicts) >= 0.85
