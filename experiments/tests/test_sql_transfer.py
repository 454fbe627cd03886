"""Template transfer: a real query's shape carried to other tables, in the task's own spelling."""

from __future__ import annotations

import random
from pathlib import Path

from tools.strategies.base import Candidate

from experiments.sql_mutate import load_seeds
from experiments.sql_transfer import SQLTransferStrategy, template_of
from tools.data import load_jsonl
from tools.quality import check_sql
from tools.tasks.text2sql import Text2SQLPlugin

TASK = Path(__file__).resolve().parents[2] / "tools" / "demo_tasks" / "text2sql" / "training_set.jsonl"


def test_template_lists_tables_columns_and_join_columns() -> None:
    plugin = Text2SQLPlugin()
    records = load_jsonl(TASK).records
    seed = next(s for s in load_seeds(plugin, records)
                if s.sql.startswith("SELECT t.name, COUNT(*) FROM matches AS m JOIN teams AS t"))
    template = template_of(seed)
    assert template is not None
    assert template.tables == ("matches", "teams")
    assert ("matches", "home_id", "teams", "id") in template.joins
    assert set(template.columns["teams"]) >= {"name", "id"}


def test_transferred_rows_run_keep_the_category_and_the_alias_scheme() -> None:
    plugin = Text2SQLPlugin()
    records = load_jsonl(TASK).records
    strategy = SQLTransferStrategy(plugin, records)
    rng = random.Random(0)
    for category in ("filter", "join", "group_by", "nested", "set_operation"):
        for _ in range(3):
            done = strategy.complete(strategy.draft(category, rng), None)  # type: ignore[arg-type]
            assert isinstance(done, Candidate)
            sql = done.record.assistant_texts()[-1]
            assert plugin.categorize(done.record).primary == category
            assert check_sql(done.record).passed
            assert sql != done.provenance["seed_sql"]  # an equal query elsewhere in the data is the dedup gate's
            if " JOIN " in sql:
                assert " AS " in sql  # the demo task aliases every joined table with AS
            assert done.provenance["writer"] in ("transfer", "renderer")
