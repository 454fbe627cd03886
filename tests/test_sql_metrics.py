"""SQL execution accuracy and SQL exact match, in process and through evaluate.load (offline)."""

from __future__ import annotations

import time

import pytest

from tools.metrics import compute_metric, load_metric
from tools.tasks.text2sql.metrics.sql_exact_match.sql_exact_match import exact_match, normalize_sql
from tools.tasks.text2sql.metrics.sql_execution.sql_execution import execution_accuracy, results_equal
from tools.tasks.text2sql.sql.database import build_database

SHOP = (
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, city TEXT, country TEXT);\n"
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), status TEXT,"
    " total REAL);"
)
GOLD = "SELECT name, total FROM orders AS o JOIN customers AS c ON o.customer_id = c.id WHERE c.country = 'Spain'"


def _score(prediction: str, gold: str = GOLD, **options: object) -> tuple[float, str]:
    report = execution_accuracy([prediction], [gold], [SHOP], **options)  # type: ignore[arg-type]
    return report.accuracy, report.examples[0].reason


def test_identical_and_equivalent_queries_score_one() -> None:
    assert _score(GOLD) == (1.0, "match")
    # Aliases, keyword case, join direction and quoting do not matter; the rows do.
    assert _score('select c."name" AS who, o.total as amount FROM customers c JOIN orders o ON c.id = o.customer_id '
                  "WHERE c.country = 'Spain';")[0] == 1.0
    assert _score("SELECT name, total FROM customers, orders WHERE customers.id = orders.customer_id "
                  "AND country IN ('Spain')")[0] == 1.0


def test_wrong_filter_scores_zero() -> None:
    assert _score(GOLD.replace("'Spain'", "'France'")) == (0.0, "mismatch")
    assert _score(GOLD.replace("= 'Spain'", "!= 'Spain'")) == (0.0, "mismatch")
    assert _score("SELECT name, total FROM orders AS o JOIN customers AS c ON o.customer_id = c.id") == (0.0,
                                                                                                         "mismatch")


def test_integer_literals_beyond_64_bits_are_scored_not_crashed() -> None:
    """A model wrote a 30-digit number; the literal seeds the synthesized rows, where SQLite cannot store it as an
    integer (it reads such literals as REAL, and so do we). Found by the learning-gain benchmark."""
    huge = "123456789012345678901234567890"
    for condition in (f"o.id = {huge}", f"o.customer_id = -{huge}", f"c.id = {huge} AND c.country = 'Spain'",
                      f"o.total > {huge}"):
        assert _score(GOLD.replace("c.country = 'Spain'", condition)) == (0.0, "mismatch"), condition


def test_column_order_rule_is_configurable() -> None:
    swapped = GOLD.replace("SELECT name, total", "SELECT total, name")
    assert _score(swapped) == (0.0, "mismatch")
    assert _score(swapped, column_order="any") == (1.0, "match")


def test_row_order_counts_only_when_the_gold_sorts() -> None:
    gold = "SELECT total FROM orders ORDER BY total DESC"
    assert _score("SELECT total FROM orders ORDER BY total DESC", gold)[0] == 1.0
    assert _score("SELECT total FROM orders ORDER BY total ASC", gold) == (0.0, "mismatch")
    assert _score("SELECT total FROM orders ORDER BY total ASC", "SELECT total FROM orders")[0] == 1.0
    assert results_equal([(1,), (2,)], [(2,), (1,)], ordered=False)
    assert not results_equal([(1,), (2,)], [(2,), (1,)], ordered=True)
    assert results_equal([(3, 1.0000000001)], [(3.0, 1)], ordered=True)


def test_looping_and_writing_predictions_are_stopped_without_harm() -> None:
    before = build_database(SHOP, seed=0).execute("SELECT COUNT(*) FROM orders").fetchone()
    loop = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"
    start = time.monotonic()
    assert _score(loop, timeout_s=0.3) == (0.0, "pred_timeout")
    assert time.monotonic() - start < 3
    for harmful in ("DELETE FROM orders", "DROP TABLE customers", "ATTACH DATABASE '/tmp/x.db' AS x",
                    "PRAGMA query_only = OFF", "SELECT 1; DELETE FROM orders", "UPDATE orders SET total = 0"):
        score, reason = _score(harmful)
        assert score == 0.0 and reason in ("pred_denied", "pred_multiple_statements"), (harmful, reason)
    assert build_database(SHOP, seed=0).execute("SELECT COUNT(*) FROM orders").fetchone() == before
    assert _score(GOLD) == (1.0, "match")


def test_broken_predictions_golds_and_schemas_are_reported() -> None:
    assert _score("SELEC name FROM") == (0.0, "pred_syntax")
    assert _score("SELECT nope FROM orders") == (0.0, "pred_schema")
    assert _score("") == (0.0, "pred_empty")
    assert _score(GOLD, "SELECT nope FROM orders") == (0.0, "gold_error")
    report = execution_accuracy([GOLD], [GOLD], ["CREATE TABLE (x"])
    assert report.examples[0].reason == "bad_schema"


def test_per_category_breakdown_and_input_checks() -> None:
    golds = [GOLD, "SELECT COUNT(*) FROM orders", "SELECT status, COUNT(*) FROM orders GROUP BY status"]
    predictions = [GOLD, "SELECT COUNT(*) FROM orders WHERE total > 0 AND total < 0", golds[2]]
    report = execution_accuracy(predictions, golds, [SHOP] * 3)
    assert report.per_category == {"aggregation": 0.0, "group_by": 1.0, "join": 1.0}
    assert report.category_counts == {"aggregation": 1, "group_by": 1, "join": 1}
    assert report.accuracy == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one of each per example"):
        execution_accuracy([GOLD], [GOLD, GOLD], [SHOP])
    with pytest.raises(ValueError, match="schemas="):
        compute_metric("sql_execution", [GOLD], [GOLD])


def test_compute_forms_agree() -> None:
    references = [{"sql": GOLD, "schema": SHOP, "category": ""}, {"sql": "SELECT COUNT(*) FROM orders",
                                                                 "schema": SHOP, "category": "custom"}]
    predictions = [GOLD, "SELECT COUNT(id) FROM orders"]
    by_mapping = compute_metric("sql_execution", predictions, references)
    by_strings = compute_metric("sql_execution", predictions, [r["sql"] for r in references], schemas=[SHOP, SHOP])
    assert by_mapping["execution_accuracy"] == by_strings["execution_accuracy"] == 1.0
    assert by_mapping["per_category"] == {"custom": 1.0, "join": 1.0}


def test_evaluate_load_offline_matches_in_process() -> None:
    references = [{"sql": GOLD, "schema": SHOP, "category": ""},
                  {"sql": "SELECT COUNT(*) FROM orders", "schema": SHOP, "category": ""}]
    predictions = [GOLD, "SELECT COUNT(*) FROM customers"]
    module = load_metric("sql_execution")
    loaded = module.compute(predictions=predictions, references=references)
    assert loaded == compute_metric("sql_execution", predictions, references)
    assert loaded["execution_accuracy"] == 0.5
    exact = load_metric("sql_exact_match").compute(predictions=["select count(*) from Orders;", "SELECT 1"],
                                                   references=["SELECT COUNT(*) FROM orders", "SELECT 2"])
    assert exact["sql_exact_match"] == 0.5


@pytest.mark.parametrize(
    ("prediction", "gold", "same"),
    [
        ("select Name from Customers where City != 'Berlin';", "SELECT name FROM customers WHERE city <> 'Berlin'",
         True),
        ('SELECT "name" FROM "customers" c', "SELECT name FROM customers AS c", True),
        ("```sql\nSELECT  COUNT(*)\nFROM orders\n```", "SELECT COUNT(*) FROM orders", True),
        ("SELECT name FROM customers WHERE city = 'berlin'", "SELECT name FROM customers WHERE city = 'Berlin'",
         False),
        ("SELECT COUNT(id) FROM orders", "SELECT COUNT(*) FROM orders", False),
        ("SELECT city, name FROM customers", "SELECT name, city FROM customers", False),
        ("not sql at all ((", "SELECT 1", False),
    ],
)
def test_exact_match_normalization(prediction: str, gold: str, same: bool) -> None:
    assert exact_match([prediction], [gold]) == [same]
    assert (normalize_sql(prediction) == normalize_sql(gold)) is same
