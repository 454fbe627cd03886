"""The SQL sandbox: model-written SQL runs read-only, bounded in time and rows, one statement at a time."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.tasks.text2sql.sql.sandbox import check_sql, run_query, sandbox_database

SCHEMA = (
    "CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT, city TEXT, founded INTEGER);\n"
    "CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT, team_id INTEGER REFERENCES teams(id), age INTEGER,"
    " goals INTEGER);"
)


@pytest.fixture
def conn() -> sqlite3.Connection:
    return sandbox_database(SCHEMA, seed=5)


def _counts(conn: sqlite3.Connection) -> tuple[int, int]:
    return (run_query(conn, "SELECT COUNT(*) FROM teams").rows[0][0],  # type: ignore[return-value]
            run_query(conn, "SELECT COUNT(*) FROM players").rows[0][0])


def test_reads_work(conn: sqlite3.Connection) -> None:
    result = run_query(conn, "SELECT name, goals FROM players WHERE goals >= 0 ORDER BY goals DESC;")
    assert result.ok and result.columns == ("name", "goals") and result.rows
    assert [r[1] for r in result.rows] == sorted((r[1] for r in result.rows), reverse=True)


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM players",
        "UPDATE teams SET name = 'x'",
        "INSERT INTO teams VALUES (999, 'x', 'y', 1)",
        "REPLACE INTO teams VALUES (1, 'x', 'y', 1)",
        "DROP TABLE players",
        "ALTER TABLE teams ADD COLUMN z INT",
        "CREATE TABLE evil (a)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE INDEX i ON teams(name)",
        "ATTACH DATABASE ':memory:' AS other",
        "ATTACH DATABASE '/tmp/synthgen_sandbox_probe.db' AS other",
        "DETACH DATABASE main",
        "PRAGMA query_only = OFF",
        "PRAGMA writable_schema = ON",
        "PRAGMA journal_mode = DELETE",
        "SELECT load_extension('/tmp/evil.so')",
        "BEGIN",
        "SAVEPOINT s1",
        "VACUUM",
        "REINDEX",
        "ANALYZE",
        "WITH x AS (SELECT 1) DELETE FROM players",
        "/* hidden */ (DROP TABLE players)",
    ],
)
def test_writes_attach_pragmas_and_extensions_are_denied(conn: sqlite3.Connection, sql: str) -> None:
    before = _counts(conn)
    result = run_query(conn, sql)
    assert not result.ok
    assert result.error_kind == "denied", result.error
    assert _counts(conn) == before
    assert run_query(conn, "SELECT name FROM teams LIMIT 1").ok


def test_second_statement_is_refused(conn: sqlite3.Connection) -> None:
    before = _counts(conn)
    result = run_query(conn, "SELECT 1; DROP TABLE players")
    assert result.error_kind == "multiple_statements"
    assert _counts(conn) == before


def test_endless_recursive_cte_is_stopped(conn: sqlite3.Connection) -> None:
    sql = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT COUNT(*) FROM r"
    result = run_query(conn, sql, timeout_s=0.3)
    assert result.error_kind == "timeout"
    assert result.elapsed_s < 2.0
    assert run_query(conn, "SELECT COUNT(*) FROM teams").ok  # the connection still works


def test_huge_cross_join_hits_the_row_cap_or_the_clock(conn: sqlite3.Connection) -> None:
    capped = run_query(conn, "SELECT * FROM players a, players b, players c, players d", max_rows=500)
    assert capped.ok and capped.truncated and len(capped.rows) == 500
    sorted_join = "SELECT a.id FROM players a, players b, players c, players d, players e ORDER BY random()"
    timed = run_query(conn, sorted_join, timeout_s=0.3)
    assert timed.error_kind == "timeout"


def test_giant_values_are_refused(conn: sqlite3.Connection) -> None:
    assert run_query(conn, "SELECT zeroblob(1000000000)").error_kind == "too_large"


def test_check_sql_reason_codes() -> None:
    assert check_sql(SCHEMA, "SELECT name FROM teams WHERE founded > 1900").ok
    assert check_sql(SCHEMA, "").reason_code == "empty"
    assert check_sql(SCHEMA, "SELEC name FROM").reason_code in ("unparsable", "exec_syntax")
    assert check_sql(SCHEMA, "SELECT 1; SELECT 2").reason_code == "multiple_statements"
    assert check_sql(SCHEMA, "DELETE FROM teams").reason_code == "not_select"
    assert check_sql(SCHEMA, "SELECT nope FROM teams").reason_code == "exec_schema"
    assert check_sql("CREATE TABLE (", "SELECT 1").reason_code == "bad_schema"
    loop = "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT MAX(x) FROM r"
    assert check_sql(SCHEMA, loop, timeout_s=0.2).reason_code == "exec_timeout"


_SQLISH = st.lists(
    st.sampled_from(["SELECT", "FROM", "WHERE", "teams", "players", "name", "*", ",", "(", ")", "'x'", "1", ";",
                     "UNION", "JOIN", "ON", "=", "DROP", "ATTACH", "PRAGMA", "WITH", "RECURSIVE", "GROUP BY",
                     "--", "/*", "\x00", "é", '"']),
    max_size=14,
).map(" ".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), _SQLISH))
def test_random_text_never_crashes_the_gate(conn: sqlite3.Connection, text: str) -> None:
    before = _counts(conn)
    result = run_query(conn, text, timeout_s=0.5)
    assert result.ok or (result.error and result.error_kind)
    check = check_sql(SCHEMA, text, timeout_s=0.5)
    assert check.ok or check.reason_code != "ok"
    assert _counts(conn) == before
