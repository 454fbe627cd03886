"""Schema parsing, literal extraction and database synthesis."""

from __future__ import annotations

import re

import pytest

from tools.tasks.text2sql.sql.database import build_database, synthesize_rows
from tools.tasks.text2sql.sql.literals import literal_pool, literal_rows, parse_sql, query_literals
from tools.tasks.text2sql.sql.schema import SchemaError, parse_schema, split_statements

SHOP = (
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT, city TEXT, country TEXT);\n"
    "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL, stock INTEGER);\n"
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), order_date TEXT,"
    " status TEXT, total REAL);\n"
    "CREATE TABLE order_items (order_id INTEGER REFERENCES orders(id), product_id INTEGER, quantity INTEGER,"
    " unit_price REAL);"
)


def test_parse_schema_types_keys_and_foreign_keys() -> None:
    schema = parse_schema(SHOP)
    assert schema.table_names == ("customers", "products", "orders", "order_items")
    orders = schema.require_table("orders")
    assert orders.primary_key == ("id",)
    assert orders.column("total") is not None and orders.column("total").kind == "real"  # type: ignore[union-attr]
    assert orders.column("status").kind == "text"  # type: ignore[union-attr]
    fks = {(fk.table, fk.column, fk.ref_table, fk.ref_column, fk.declared) for fk in schema.foreign_keys}
    assert ("orders", "customer_id", "customers", "id", True) in fks
    assert ("order_items", "order_id", "orders", "id", True) in fks
    # product_id has no REFERENCES: inferred from the name.
    assert ("order_items", "product_id", "products", "id", False) in fks
    assert [t.name for t in schema.fill_order()][:2] == ["customers", "products"]


def test_parse_schema_table_constraints_and_untyped_columns() -> None:
    schema = parse_schema(
        'CREATE TABLE "Dept" (dept_no TEXT, name, PRIMARY KEY (dept_no));\n'
        "CREATE TABLE emp (id INT, dept_no TEXT, boss INT, CONSTRAINT fk FOREIGN KEY (boss) REFERENCES emp (id), "
        "UNIQUE (id));"
    )
    dept = schema.require_table("dept")
    assert dept.primary_key == ("dept_no",)
    assert dept.column("name").declared_type == ""  # type: ignore[union-attr]
    fks = {(fk.table, fk.column, fk.ref_table, fk.declared) for fk in schema.foreign_keys}
    assert ("emp", "boss", "emp", True) in fks
    assert ("emp", "dept_no", "Dept", False) in fks  # same name as Dept's single-column key


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("CREATE TABLE a (id INTEGER);\nCREATE TABLE (x INT);", "schema statement 2"),
        ("CREATE TABLE a (id INTEGER);\nSELECT 1;", "not a CREATE TABLE"),
        ("CREATE TABLE a (id INTEGER,, b);", "SQLite refuses it"),
        ("CREATE TABLE a (id INTEGER); CREATE TABLE A (x INT);", "defined twice"),
        ("   ", "no CREATE TABLE"),
    ],
)
def test_bad_schema_names_the_statement(text: str, fragment: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(fragment)):
        parse_schema(text)


def test_split_statements_respects_quotes_and_comments() -> None:
    text = "CREATE TABLE a (x TEXT DEFAULT 'a;b'); -- c;d\nCREATE TABLE \"b;\" (y INT)"
    assert split_statements(text) == ["CREATE TABLE a (x TEXT DEFAULT 'a;b')", 'CREATE TABLE "b;" (y INT)']


def test_database_is_seeded_realistic_and_referentially_sound() -> None:
    schema = parse_schema(SHOP)
    first = synthesize_rows(schema, seed=7)
    assert first == synthesize_rows(schema, seed=7)
    assert first != synthesize_rows(schema, seed=8)
    conn = build_database(schema, seed=7)
    emails = [r[0] for r in conn.execute("SELECT email FROM customers")]
    assert emails and all(e.endswith("@example.com") for e in emails)
    names = [r[0] for r in conn.execute("SELECT name FROM customers")]
    assert all(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n) for n in names)
    prices = [r[0] for r in conn.execute("SELECT price FROM products")]
    assert all(isinstance(p, float) and p > 0 for p in prices)
    dates = [r[0] for r in conn.execute("SELECT order_date FROM orders")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", d) for d in dates)
    orphans = conn.execute(
        "SELECT COUNT(*) FROM orders WHERE customer_id NOT IN (SELECT id FROM customers)").fetchone()[0]
    assert orphans == 0
    orphan_items = conn.execute(
        "SELECT COUNT(*) FROM order_items WHERE product_id NOT IN (SELECT id FROM products)").fetchone()[0]
    assert orphan_items == 0
    statuses = {r[0] for r in conn.execute("SELECT status FROM orders")}
    assert 1 < len(statuses) <= 5  # categorical: a few repeated values


def test_literal_pool_puts_real_filter_values_into_the_data() -> None:
    schema = parse_schema(SHOP)
    queries = [
        "SELECT name FROM customers WHERE city = 'Reykjavik'",
        "SELECT c.name FROM customers AS c JOIN orders AS o ON o.customer_id = c.id WHERE o.total > 5000",
        "SELECT p.name FROM order_items AS oi JOIN products AS p ON oi.product_id = p.id WHERE oi.order_id = 1042",
        "SELECT name FROM products WHERE name LIKE '%Quantum%'",
    ]
    pool = literal_pool(schema, queries)
    assert pool["customers.city"] == ["Reykjavik"]
    assert pool["orders.total"] == [5000]
    assert pool["order_items.order_id"] == [1042]
    assert pool["products.name"] == ["Quantum"]
    conn = build_database(schema, seed=1, literal_pool=pool)
    for sql in queries:
        assert conn.execute(sql).fetchall(), sql


def test_query_literals_marks_what_a_question_must_name() -> None:
    tree = parse_sql(
        "SELECT name FROM t AS x WHERE EXISTS (SELECT 1 FROM u WHERE u.a = x.id AND u.flag = 1) "
        "AND x.city IN ('Oslo', 'Rome') AND x.n BETWEEN 3 AND 9 ORDER BY x.n DESC LIMIT 5"
    )
    assert tree is not None
    must = sorted(u.text for u in query_literals(tree) if u.must_mention)
    assert must == ["3", "5", "9", "Oslo", "Rome"]


def test_literal_rows_put_a_conjunction_in_one_row() -> None:
    schema = parse_schema(SHOP)
    query = "SELECT id FROM orders WHERE status = 'lost' AND total < 2.5 AND order_date >= '2031-01-01'"
    rows = literal_rows(schema, [query])
    assert rows == [{"orders.status": "lost", "orders.total": 2.47, "orders.order_date": "2031-01-01"}]
    for seed in range(3):
        conn = build_database(schema, seed=seed, literal_rows=rows)
        assert conn.execute(query).fetchall(), seed
