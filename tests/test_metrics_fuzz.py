"""Model-like garbage never crashes a metric (issue 14): a prediction that cannot be parsed or run is a wrong
answer. Deep nesting, thousands of repeated tokens, unbalanced quotes and brackets, control characters and
half-written calls, against every metric the task plugins use."""

from __future__ import annotations

import json

import pytest

from tools.metrics import available_metrics, compute_metric
from tools.tasks.text2sql.metrics.sql_execution.sql_execution import execution_accuracy

SHOP = ("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT);\n"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), total REAL);")
GOLD_SQL = "SELECT name FROM customers WHERE country = 'Spain'"
GOLD_CALL = json.dumps({"name": "search", "arguments": {"q": "rice"}})

GARBAGE = [
    "(" * 5000 + "SELECT 1" + ")" * 5000,  # deep nesting: sqlglot recurses past Python's limit
    "SELECT " + "(" * 3000,  # unbalanced
    "[" * 100_000,  # JSON nested past the recursion limit
    '{"name": "search", "arguments": ' + '{"a": ' * 20_000,
    "Action: search\nAction Input: " + "[" * 50_000,
    "SELECT " + "name, " * 5000 + "name FROM customers",  # thousands of repeated tokens
    "SELECT SELECT SELECT " * 2000,
    "SELECT name FROM customers WHERE country = 'Spain",  # unbalanced quote
    'SELECT "name FROM customers',
    "'" * 999,
    "SELECT 1 -- \x00\x01\x02 \udcff",
    "SELECT " + " CASE WHEN 1 THEN" * 2000,
    " ".join(["NOT"] * 20_000) + " 1",
    "",
]


@pytest.mark.parametrize("prediction", GARBAGE, ids=range(len(GARBAGE)))
def test_sql_execution_scores_garbage_as_wrong(prediction: str) -> None:
    report = execution_accuracy([prediction], [GOLD_SQL], [SHOP], databases=1)
    assert report.accuracy == 0.0


@pytest.mark.parametrize("name", sorted(set(available_metrics()) - {"sql_execution"}))
def test_every_other_metric_scores_garbage_without_crashing(name: str) -> None:
    reference = {"function_call_accuracy": GOLD_CALL}.get(name, GOLD_SQL)
    result = compute_metric(name, GARBAGE, [reference] * len(GARBAGE))
    assert 0.0 <= result[name] < 0.5, result  # scored, and nothing in the garbage is right
