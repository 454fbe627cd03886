"""The SQL-first text-to-SQL strategy through the generation-strategy interface."""

from __future__ import annotations

import random

import pytest

from tools.data import FlockRecord, Turn
from tools.tasks.base import Candidate, Draft, Rejection
from tools.tasks.text2sql import CATEGORY_PRIORITY, Text2SQLPlugin, categorize_sql
from tools.tasks.text2sql.sql.sandbox import check_sql
from tools.tasks.text2sql.strategy import (
    SeedFormatError,
    Text2SQLStrategy,
    chat_messages,
    extract_question,
    question_of,
)

SYSTEM = "You translate questions into SQLite. Reply with SQL only."
SHOP = (
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, country TEXT);\n"
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), order_date TEXT, "
    "status TEXT, total REAL);"
)
ZOO = (
    "CREATE TABLE keepers (id INTEGER PRIMARY KEY, name TEXT, salary REAL);\n"
    "CREATE TABLE animals (id INTEGER PRIMARY KEY, name TEXT, species TEXT, keeper_id INTEGER, weight REAL);"
)
PAIRS = [
    (SHOP, "Which customers live in Berlin?", "SELECT name FROM customers WHERE city = 'Berlin'"),
    (SHOP, "How many orders are pending?", "SELECT COUNT(*) FROM orders WHERE status = 'pending'"),
    (SHOP, "Show each customer's orders.",
     "SELECT c.name, o.total FROM orders AS o JOIN customers AS c ON o.customer_id = c.id"),
    (SHOP, "How many orders per status?", "SELECT status, COUNT(*) FROM orders GROUP BY status"),
    (SHOP, "List the 3 largest orders.", "SELECT id, total FROM orders ORDER BY total DESC LIMIT 3"),
    (ZOO, "Which animals weigh more than 100?", "SELECT name FROM animals WHERE weight > 100"),
    (ZOO, "Which keepers look after lions?",
     "SELECT k.name FROM animals AS a JOIN keepers AS k ON a.keeper_id = k.id WHERE a.species = 'lion'"),
    (ZOO, "Which keepers have no animals?", "SELECT name FROM keepers WHERE id NOT IN (SELECT keeper_id FROM animals)"),
]


def _seed(schema: str, question: str, sql: str, *, in_system: bool = False) -> FlockRecord:
    if in_system:
        return FlockRecord(system=f"{SYSTEM}\nTables:\n{schema}",
                           conversations=[Turn(role="user", content=f"Q: {question}"),
                                          Turn(role="assistant", content=sql)])
    return FlockRecord(system=SYSTEM, conversations=[
        Turn(role="user", content=f"### Tables\n{schema}\n\n### Question\n{question}\n"),
        Turn(role="assistant", content=sql)])


@pytest.fixture(scope="module")
def strategy() -> Text2SQLStrategy:
    return Text2SQLStrategy(Text2SQLPlugin(), [_seed(*p) for p in PAIRS])


def test_domains_frame_and_style_come_from_the_seeds(strategy: Text2SQLStrategy) -> None:
    assert sorted(d.id for d in strategy.domains) == ["customers,orders", "keepers,animals"]
    assert strategy.frame.system == SYSTEM
    # Filling the frame with a seed's own schema and question gives the seed back, byte for byte.
    schema_block = next(d.schema_block for d in strategy.domains if d.id == "customers,orders")
    rebuilt = strategy.build_record(
        next(d for d in strategy.domains if d.id == "customers,orders"), PAIRS[0][1], PAIRS[0][2])
    assert schema_block == SHOP
    assert rebuilt == _seed(*PAIRS[0])
    assert strategy.style.alias_kind == "initials" and strategy.style.alias_keyword


@pytest.mark.parametrize("category", CATEGORY_PRIORITY)
def test_draft_then_complete_without_a_model(strategy: Text2SQLStrategy, category: str) -> None:
    rng = random.Random(CATEGORY_PRIORITY.index(category))
    draft = strategy.draft(category, rng)
    assert isinstance(draft, Draft), draft
    assert draft.prompt_id == "text2sql_question" and draft.prompt_hash
    assert draft.messages is not None
    roles = [m["role"] for m in draft.messages]
    # System instructions with the schema, then each anchor as a user (SQL) / assistant (question) pair.
    assert roles == ["system"] + ["user", "assistant"] * len(draft.seed_ids) + ["user"]
    assert "CREATE TABLE" in draft.messages[0]["content"]
    assert draft.messages[-1]["content"] == draft.state["sql"]
    assert 2 <= len(draft.seed_ids) <= 4
    candidate = strategy.complete(draft, None)
    assert isinstance(candidate, Candidate), candidate
    record = candidate.record
    assert record.system == SYSTEM
    user = record.first_user_text()
    assert user.startswith("### Tables\nCREATE TABLE") and "\n\n### Question\n" in user and user.endswith("\n")
    sql = record.assistant_texts()[-1]
    assert categorize_sql(sql)[0] == category == candidate.category
    schema = Text2SQLPlugin.prompt_of(record).schema
    assert check_sql(schema, sql).ok
    provenance = candidate.provenance
    assert provenance["strategy"] == "sql_first" and provenance["writer"] == "renderer"
    assert provenance["faithfulness"]["ok"] and provenance["faithfulness"]["llm"] is None
    assert provenance["domain"] in {"customers,orders", "keepers,animals"}
    assert provenance["sql_tags"][0] == category


def test_anchors_are_real_seeds_of_the_category(strategy: Text2SQLStrategy) -> None:
    draft = strategy.draft("group_by", random.Random(4))
    assert isinstance(draft, Draft)
    group_seed = _seed(*PAIRS[3])
    assert group_seed.record_id in draft.seed_ids
    assert draft.messages is not None
    assert {"role": "assistant", "content": "How many orders per status?"} in draft.messages


def test_model_text_kept_when_faithful_replaced_when_not(strategy: Text2SQLStrategy) -> None:
    draft = strategy.draft("filter", random.Random(8))
    assert isinstance(draft, Draft)
    rendered = draft.state["rendered_question"]
    kept = strategy.complete(draft, f'Question: "{rendered}"\nThis question asks for...')
    assert isinstance(kept, Candidate) and kept.provenance["writer"] == "llm"
    assert question_of(kept.record) == rendered
    for bad in ("The answer to this question is: SELECT * FROM orders", "What is the weather like today?", ""):
        replaced = strategy.complete(draft, bad)
        assert isinstance(replaced, Candidate)
        assert replaced.provenance["writer"] == "renderer"
        assert replaced.provenance["faithfulness"]["llm"]["ok"] is False
        assert question_of(replaced.record) == rendered


def test_schema_in_the_system_prompt_is_supported() -> None:
    seeds = [_seed(*p, in_system=True) for p in PAIRS]
    strategy = Text2SQLStrategy(Text2SQLPlugin(), seeds)
    draft = strategy.draft("join", random.Random(2))
    assert isinstance(draft, Draft)
    candidate = strategy.complete(draft, None)
    assert isinstance(candidate, Candidate)
    assert candidate.record.system is not None and "CREATE TABLE" in candidate.record.system
    assert candidate.record.first_user_text().startswith("Q: ")


def test_unknown_category_and_foreign_draft_are_rejections(strategy: Text2SQLStrategy) -> None:
    rejection = strategy.draft("window_functions", random.Random(0))
    assert isinstance(rejection, Rejection) and rejection.reason == "unknown_category"
    foreign = strategy.complete(Draft(category="filter", messages=None, state={}), None)
    assert isinstance(foreign, Rejection) and foreign.reason == "bad_draft"


def test_no_usable_seed_is_a_clear_error() -> None:
    broken = FlockRecord(conversations=[Turn(role="user", content="Schema:\nCREATE TABLE (x INT);\n\nQuestion: hi?"),
                                        Turn(role="assistant", content="SELECT 1")])
    chat = FlockRecord(conversations=[Turn(role="user", content="hello"), Turn(role="assistant", content="hi")])
    with pytest.raises(SeedFormatError, match="no usable text-to-SQL seed among 2 records"):
        Text2SQLStrategy(Text2SQLPlugin(), [broken, chat])


def test_chat_messages_split_on_role_lines() -> None:
    rendered = "[system]\nRules.\n\n[user]\nSELECT 1\n[assistant]\nWhat is one?\n[user]\nSELECT 2"
    assert chat_messages(rendered) == [
        {"role": "system", "content": "Rules."}, {"role": "user", "content": "SELECT 1"},
        {"role": "assistant", "content": "What is one?"}, {"role": "user", "content": "SELECT 2"}]
    assert chat_messages("no markers") == [{"role": "user", "content": "no markers"}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Question: Which customers live in Rome?", "Which customers live in Rome?"),
        ('"How many orders are there?" is the question.', "How many orders are there?"),
        ("\n\n**Question:** which keepers earn more than 3000? Explanation follows",
         "Which keepers earn more than 3000?"),
        ("1. List the animals.\n2. Something else", "List the animals."),
        ("   ", ""),
    ],
)
def test_extract_question(text: str, expected: str) -> None:
    assert extract_question(text) == expected
