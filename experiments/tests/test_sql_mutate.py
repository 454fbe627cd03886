"""Mutations of real text-to-SQL rows: each operator's edit, and the strategy's rows pass the project's gates."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tools.sql.schema import parse_schema
from tools.strategies.base import Candidate

from experiments.sql_mutate import (
    OPERATORS,
    SchemaFacts,
    Seed,
    SQLMutationStrategy,
    apply_edit,
    load_seeds,
    schema_facts,
)
from tools.data import FlockRecord, Turn, load_jsonl
from tools.quality import check_sql
from tools.tasks.text2sql import Text2SQLPlugin

TASK = Path(__file__).resolve().parents[2] / "tools" / "demo_tasks" / "text2sql" / "training_set.jsonl"
SCHEMA = ("CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT, city TEXT, founded INTEGER);\n"
          "CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT, team_id INTEGER REFERENCES teams(id), "
          "position TEXT, goals INTEGER);")
FACTS = SchemaFacts(values={"teams.city": ["Manchester", "Leeds", "London"], "players.position": ["forward"]},
                    group_columns={"players": ["position"], "teams": ["city"]})


def seed(question: str, sql: str) -> Seed:
    record = FlockRecord(system="You write SQL.", conversations=[
        Turn(role="user", content=f"Schema:\n{SCHEMA}\n\nQuestion: {question}"), Turn(role="assistant", content=sql)])
    return Seed(record, SCHEMA, parse_schema(SCHEMA), question, sql, "filter")


@pytest.mark.parametrize(("operator", "question", "sql", "expected_question", "expected_sql"), [
    ("swap_literal", "What teams play in Manchester?", "SELECT name FROM teams WHERE city = 'Manchester'",
     None, None),
    ("flip_order", "Who are the 3 highest scorers?", "SELECT name FROM players ORDER BY goals DESC LIMIT 3",
     "Who are the 3 lowest scorers?", "SELECT name FROM players ORDER BY goals LIMIT 3"),
    ("swap_aggregate", "What is the average number of goals per player?", "SELECT AVG(goals) FROM players",
     None, None),
    ("flip_comparison", "Which teams were founded before 1900?", "SELECT name FROM teams WHERE founded < 1900",
     "Which teams were founded after 1900?", "SELECT name FROM teams WHERE founded > 1900"),
    ("to_count", "Which teams play in Leeds?", "SELECT name FROM teams WHERE city = 'Leeds'",
     "How many teams play in Leeds?", "SELECT COUNT(*) FROM teams WHERE city = 'Leeds'"),
    ("count_to_list", "How many teams play in Leeds?", "SELECT COUNT(*) FROM teams WHERE city = 'Leeds'",
     "Which teams play in Leeds?", "SELECT name FROM teams WHERE city = 'Leeds'"),
    ("add_group", "How many players are there?", "SELECT COUNT(*) FROM players",
     "How many players are there for each position?", "SELECT position, COUNT(*) FROM players GROUP BY position"),
    ("to_nested_avg", "Which teams were founded before 1900?", "SELECT name FROM teams WHERE founded < 1900",
     "Which teams were founded before the average?",
     "SELECT name FROM teams WHERE founded < (SELECT AVG(founded) FROM teams)"),
    ("order_alphabetically", "List the teams in Leeds.", "SELECT name FROM teams WHERE city = 'Leeds'",
     "List the teams in Leeds alphabetically.", "SELECT name FROM teams WHERE city = 'Leeds' ORDER BY name"),
])
def test_operator_edits_question_and_sql_together(operator: str, question: str, sql: str,
                                                  expected_question: str | None, expected_sql: str | None) -> None:
    edit = OPERATORS[operator](seed(question, sql), FACTS, random.Random(0))
    assert edit is not None
    if expected_question is not None:
        assert (edit.question, edit.sql) == (expected_question, expected_sql)
    else:
        assert edit.question != question and edit.sql != sql
    assert check_sql(apply_edit(seed(question, sql), edit)).passed


def test_swap_literal_uses_the_tasks_values_and_keeps_spacing() -> None:
    edit = OPERATORS["swap_literal"](seed("What teams play in Manchester?",
                                          "SELECT name FROM teams WHERE city = 'Manchester'"), FACTS, random.Random(1))
    assert edit is not None
    city = edit.sql.split("'")[1]
    assert city in ("Leeds", "London")
    assert edit.sql == f"SELECT name FROM teams WHERE city = '{city}'"
    assert edit.question == f"What teams play in {city}?"


def test_union_values_names_both_values() -> None:
    edit = OPERATORS["union_values"](seed("Which teams play in Leeds?", "SELECT name FROM teams WHERE city = 'Leeds'"),
                                     FACTS, random.Random(0))
    assert edit is not None
    other = edit.sql.rsplit("'", 2)[-2]
    assert edit.question == f"Which teams play in Leeds or {other}?"
    assert edit.sql == ("SELECT name FROM teams WHERE city = 'Leeds' UNION "
                        f"SELECT name FROM teams WHERE city = '{other}'")


def test_an_operator_that_finds_no_unambiguous_place_gives_up() -> None:
    # two ordering words: which one flips is ambiguous
    ambiguous = seed("Who are the highest scorers of the top teams?", "SELECT name FROM players ORDER BY goals DESC")
    assert OPERATORS["flip_order"](ambiguous, FACTS, random.Random(0)) is None
    # the literal is not in the question
    unnamed = seed("Which teams are from the north?", "SELECT name FROM teams WHERE city = 'Leeds'")
    assert OPERATORS["swap_literal"](unnamed, FACTS, random.Random(0)) is None


def test_strategy_rows_are_valid_and_of_the_target_category() -> None:
    records = load_jsonl(TASK).records
    plugin = Text2SQLPlugin()
    strategy = SQLMutationStrategy(plugin, records)
    assert schema_facts(load_seeds(plugin, records[:20]))
    rng = random.Random(0)
    for category in ("filter", "aggregation", "group_by", "set_operation", "order_limit"):
        for _ in range(3):
            draft = strategy.draft(category, rng)
            done = strategy.complete(draft, None)  # type: ignore[arg-type]
            assert isinstance(done, Candidate)
            assert plugin.categorize(done.record).primary == category
            assert check_sql(done.record).passed
            assert done.provenance["seed_ids"]
