"""The SQL-first sampler: every query has the requested category, runs, returns rows, and varies."""

from __future__ import annotations

import random
from collections import Counter
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.tasks.text2sql import CATEGORY_PRIORITY, categorize_sql
from tools.tasks.text2sql.sql.sampler import QuerySampler, SamplerError
from tools.tasks.text2sql.sql.sandbox import run_query, sandbox_database
from tools.tasks.text2sql.sql.schema import parse_schema
from tools.tasks.text2sql.sql.style import SQLStyle, infer_style

SCHEMAS = {
    "shop": (
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, city TEXT, country TEXT);\n"
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL, stock INTEGER);\n"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), "
        "order_date TEXT, status TEXT, total REAL);\n"
        "CREATE TABLE order_items (order_id INTEGER REFERENCES orders(id), product_id INTEGER REFERENCES "
        "products(id), quantity INTEGER, unit_price REAL);"
    ),
    # No REFERENCES at all: joins must come from inferred keys (team_id -> teams.id).
    "league": (
        "CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT, city TEXT, founded INTEGER);\n"
        "CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT, team_id INTEGER, position TEXT, age INTEGER, "
        "goals INTEGER);\n"
        "CREATE TABLE coaches (id INTEGER PRIMARY KEY, name TEXT, team_id INTEGER, salary REAL, city TEXT);"
    ),
}


@cache
def sampler_for(name: str, style: SQLStyle = SQLStyle()) -> QuerySampler:
    schema = parse_schema(SCHEMAS[name])
    return QuerySampler(schema, sandbox_database(schema, seed=3), style)


def _check(sampler: QuerySampler, category: str, seed: int) -> str:
    query = sampler.sample(category, random.Random(seed))
    assert categorize_sql(query.sql)[0] == category, query.sql
    assert query.category == category
    result = run_query(sampler.conn, query.sql)
    assert result.ok, (query.sql, result.error)
    assert result.rows, query.sql
    return query.sql


@pytest.mark.parametrize("domain", sorted(SCHEMAS))
@pytest.mark.parametrize("category", CATEGORY_PRIORITY)
def test_every_category_for_every_schema(domain: str, category: str) -> None:
    for seed in range(6):
        _check(sampler_for(domain), category, seed)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), category=st.sampled_from(CATEGORY_PRIORITY),
       domain=st.sampled_from(sorted(SCHEMAS)))
def test_random_seeds_always_give_the_category_and_run(seed: int, category: str, domain: str) -> None:
    _check(sampler_for(domain), category, seed)


def test_same_rng_same_query_and_many_shapes() -> None:
    sampler = sampler_for("shop")
    first = [sampler.sample("nested", random.Random(s)).sql for s in range(5)]
    assert first == [sampler.sample("nested", random.Random(s)).sql for s in range(5)]
    rng = random.Random(11)
    for category in CATEGORY_PRIORITY:
        queries = [sampler.sample(category, rng) for _ in range(30)]
        shapes = Counter(q.shape for q in queries)
        assert len(shapes) >= 3, (category, shapes)
        assert len({q.sql for q in queries}) >= 20, category


def test_joins_follow_foreign_keys_and_style() -> None:
    rng = random.Random(5)
    sampler = sampler_for("league")
    joins = [sampler.sample("join", rng).sql for _ in range(20)]
    assert all(" ON " in sql and "team_id" in sql for sql in joins)
    assert any(" AS " in sql for sql in joins)
    numbered = sampler_for("league", SQLStyle(alias_kind="numbered", alias_keyword=False))
    sql = numbered.sample("join", random.Random(1)).sql
    assert "T1" in sql and " AS " not in sql


def test_filter_values_come_from_the_data() -> None:
    sampler = sampler_for("shop")
    rng = random.Random(2)
    for _ in range(20):
        query = sampler.sample("filter", rng)
        assert query.row_count >= 1


def test_unsupported_category_is_a_clear_error() -> None:
    schema = parse_schema("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);")
    sampler = QuerySampler(schema, sandbox_database(schema), SQLStyle())
    with pytest.raises(SamplerError, match=r"join query over tables notes"):
        sampler.sample("join", random.Random(0), attempts=10)
    with pytest.raises(SamplerError, match="unknown category"):
        sampler.sample("joins", random.Random(0))


def test_infer_style_reads_the_seeds_habits() -> None:
    numbered = infer_style([
        "SELECT T1.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.a_id WHERE T2.x <> 3",
        "SELECT T2.y, COUNT(*) FROM a AS T1 JOIN b AS T2 ON T1.id = T2.a_id GROUP BY T2.y",
    ])
    assert numbered.alias_kind == "numbered" and numbered.not_equal == "<>"
    plain = infer_style(["SELECT name FROM a JOIN b ON a.id = b.a_id", "SELECT x FROM a WHERE y != 1"])
    assert plain.alias_kind == "none" and plain.not_equal == "!="
    assert infer_style(["not sql at all ((("]) == SQLStyle()
