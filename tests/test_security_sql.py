"""Model-written SQL (issue 9 item 4b), beyond tests/test_sql_sandbox.py: the authorizer on its own (statements
sent straight to the locked connection, past run_query's keyword check), table-valued PRAGMA functions, file
access functions, VACUUM INTO, in-memory only, and properties over generated write statements, row caps and
time limits."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools.tasks.text2sql.sql.sandbox import check_sql, run_query, sandbox_database

SCHEMA = (
    "CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT, city TEXT, founded INTEGER);\n"
    "CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT, team_id INTEGER REFERENCES teams(id), age INTEGER);"
)


@pytest.fixture
def conn() -> sqlite3.Connection:
    return sandbox_database(SCHEMA, seed=3)


def snapshot(conn: sqlite3.Connection) -> tuple[object, ...]:
    teams = run_query(conn, "SELECT * FROM teams ORDER BY id").rows
    players = run_query(conn, "SELECT * FROM players ORDER BY id").rows
    schema = run_query(conn, "SELECT type, name, sql FROM sqlite_master ORDER BY name").rows
    return teams, players, schema


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO teams VALUES (999, 'x', 'y', 1)",
        "UPDATE players SET age = 0",
        "DELETE FROM teams",
        "DROP TABLE players",
        "CREATE TABLE t (a)",
        "ALTER TABLE teams RENAME TO t",
        "ATTACH DATABASE '{tmp}/attached.db' AS other",
        "VACUUM INTO '{tmp}/copy.db'",
        "PRAGMA query_only = OFF",
        "PRAGMA writable_schema = ON",
        "PRAGMA main.journal_mode = OFF",
        "PRAGMA user_version = 7",
        "SELECT load_extension('{tmp}/evil.so')",
        "SELECT fts3_tokenizer('simple')",
        "SELECT * FROM pragma_database_list",
        "SELECT * FROM pragma_compile_options",
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r LIMIT 5) INSERT INTO teams "
        "SELECT x + 100, 'a', 'b', 1 FROM r",
        "BEGIN IMMEDIATE",
        "SAVEPOINT s",
    ],
)
def test_the_authorizer_alone_denies_writes_attach_pragma_writes_and_extensions(
        conn: sqlite3.Connection, sql: str, tmp_path: Path) -> None:
    """Sent straight to the connection, past run_query's first-keyword check: the authorizer still says no."""
    before = snapshot(conn)
    with pytest.raises(sqlite3.DatabaseError, match="not authorized|authorization denied|prohibited|readonly"):
        conn.execute(sql.format(tmp=tmp_path)).fetchall()
    if conn.in_transaction:
        conn.rollback()
    assert snapshot(conn) == before
    assert list(tmp_path.iterdir()) == []  # no file was attached, copied or created


def test_read_only_pragmas_and_catalog_reads_are_allowed(conn: sqlite3.Connection) -> None:
    assert [row[1] for row in conn.execute("PRAGMA table_info(teams)")] == ["id", "name", "city", "founded"]
    assert run_query(conn, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").rows == (
        ("players",), ("teams",))


def test_the_sandbox_is_in_memory_and_touches_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative names would land here
    conn = sandbox_database(SCHEMA, seed=3)
    raw = sandbox_database(SCHEMA, seed=3)
    raw.set_authorizer(None)  # look behind the lock: one database, the deserialized in-memory image
    assert [name for _, name, _ in raw.execute("PRAGMA database_list")] == ["main"]
    for sql in ("SELECT readfile('/etc/passwd')", "SELECT writefile('probe', 'x')", "SELECT * FROM teams"):
        result = run_query(conn, sql)
        assert result.ok == (sql == "SELECT * FROM teams"), result.error
    assert list(tmp_path.iterdir()) == []


_WRITES = ["INSERT INTO teams VALUES (7, 'a', 'b', 1)", "UPDATE teams SET name = 'x'", "DELETE FROM players",
           "DROP TABLE teams", "CREATE TABLE z (a)", "ATTACH ':memory:' AS m", "PRAGMA query_only = 0",
           "REPLACE INTO teams VALUES (1, 'a', 'b', 1)", "ALTER TABLE teams ADD COLUMN q", "VACUUM",
           "CREATE TEMP TRIGGER t AFTER INSERT ON teams BEGIN DELETE FROM players; END"]
_PREFIXES = ["", "  ", "\n", "/* c */ ", "-- c\n", "(", "WITH x AS (SELECT 1) ", "EXPLAIN "]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(_PREFIXES), write=st.sampled_from(_WRITES),
       casing=st.sampled_from([str.lower, str.upper, str.title, lambda s: s]),
       suffix=st.sampled_from(["", ";", " ;", "; SELECT 1", " -- done"]))
def test_no_spelling_of_a_write_gets_through(conn: sqlite3.Connection, prefix: str, write: str, casing: object,
                                             suffix: str) -> None:
    before = snapshot(conn)
    sql = prefix + casing(write) + suffix  # type: ignore[operator]
    result = run_query(conn, sql, timeout_s=0.5)
    assert not result.ok, sql
    assert not check_sql(SCHEMA, sql, timeout_s=0.5).ok
    assert snapshot(conn) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_rows=st.integers(min_value=1, max_value=3000), tables=st.integers(min_value=1, max_value=4))
def test_row_cap_is_exact(conn: sqlite3.Connection, max_rows: int, tables: int) -> None:
    joined = ", ".join(f"players p{i}" for i in range(tables))
    total = run_query(conn, "SELECT COUNT(*) FROM players").rows[0][0] ** tables  # type: ignore[operator]
    result = run_query(conn, f"SELECT * FROM {joined}", max_rows=max_rows, timeout_s=5)
    assert result.ok, result.error
    assert len(result.rows) == min(max_rows, total)
    assert result.truncated == (total > max_rows)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(timeout=st.floats(min_value=0.05, max_value=0.4))
def test_time_limit_holds_for_endless_queries(conn: sqlite3.Connection, timeout: float) -> None:
    started = time.monotonic()
    result = run_query(conn, "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT SUM(x) FROM r",
                       timeout_s=timeout)
    assert result.error_kind == "timeout"
    assert time.monotonic() - started < timeout + 1.0
