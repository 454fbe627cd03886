"""Running SQL that a model wrote, safely.

The only place model-written SQL executes. Every query runs:

- on an in-memory SQLite connection (never a file), built and filled *before* it is locked;
- under an authorizer installed after the data is in, which allows only reading (SELECT, reading columns, calling
  ordinary functions, recursive CTEs) and a few read-only PRAGMAs (table_info and the like); it denies
  ATTACH/DETACH, every write (INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, REINDEX, ANALYZE, transactions,
  savepoints), ``load_extension`` and every other PRAGMA; ``PRAGMA query_only`` is also set before the
  authorizer goes in;
- with SQLite limits on string/blob length (so ``zeroblob(1e9)`` cannot take a gigabyte), expression depth and
  attached databases;
- under a wall-clock deadline checked from a progress handler (a recursive CTE that never ends is interrupted);
- with a cap on the rows fetched;
- as exactly one statement (sqlite3 refuses more, and so do we), which must be a query (SELECT, WITH or VALUES):
  statements the authorizer never sees because they have nothing to do (REINDEX on a table without indexes) are
  refused too.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import exp

from tools.tasks.text2sql.sql.database import LiteralPool, LiteralRow, build_database
from tools.tasks.text2sql.sql.schema import Schema, SchemaError, parse_schema
from tools.tasks.text2sql.sql.values import SQLValue

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_ROWS = 10_000
_PROGRESS_STEPS = 2_000
_MAX_VALUE_BYTES = 1_000_000
_MAX_SQL_BYTES = 100_000

ErrorKind = Literal["timeout", "denied", "syntax", "schema", "multiple_statements", "too_large", "empty", "runtime"]

_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_READ_ONLY_PRAGMAS = {"table_info", "table_xinfo", "index_list", "index_info", "foreign_key_list"}
_QUERY_KEYWORDS = {"SELECT", "WITH", "VALUES"}
_STATEMENT_KEYWORDS = {
    "INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "CREATE", "DROP", "ALTER", "ATTACH", "DETACH", "PRAGMA",
    "VACUUM", "REINDEX", "ANALYZE", "BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "EXPLAIN",
}
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*([A-Za-z]+)", re.DOTALL)
_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


@dataclass(frozen=True)
class QueryResult:
    """What a query returned, or why it did not."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[SQLValue, ...], ...] = ()
    error: str | None = None
    error_kind: ErrorKind | None = None
    truncated: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_ONLY_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def lock_down(conn: sqlite3.Connection) -> sqlite3.Connection:
    """Make a populated connection read-only for untrusted SQL (see the module docstring). Returns ``conn``."""
    if hasattr(conn, "enable_load_extension"):  # absent when Python was built without extension support
        conn.enable_load_extension(False)
    conn.execute("PRAGMA query_only = ON")
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, _MAX_SQL_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.setlimit(sqlite3.SQLITE_LIMIT_EXPR_DEPTH, 200)
    conn.setlimit(sqlite3.SQLITE_LIMIT_COMPOUND_SELECT, 50)
    conn.set_authorizer(_authorize)
    return conn


def sandbox_database(schema: Schema | str, *, seed: int = 0, literal_pool: LiteralPool | None = None,
                     literal_rows: Sequence[LiteralRow] = ()) -> sqlite3.Connection:
    """A synthesized database (see :func:`.database.build_database`), locked down for untrusted SQL."""
    return lock_down(build_database(schema, seed=seed, literal_pool=literal_pool, literal_rows=literal_rows))


def _first_keyword(sql: str) -> str:
    """The statement's first word after comments and opening parentheses, upper case."""
    match = _LEADING.match(sql)
    return match.group(1).upper() if match else ""


def _error_kind(message: str) -> ErrorKind:
    lowered = message.lower()
    if "interrupted" in lowered:
        return "timeout"
    if any(word in lowered for word in ("not authorized", "authorization denied", "prohibited", "readonly")):
        return "denied"
    if "one statement at a time" in lowered:
        return "multiple_statements"
    if "too big" in lowered or "too large" in lowered or "too long" in lowered or "too many" in lowered:
        return "too_large"
    if "syntax error" in lowered or "incomplete input" in lowered or "unrecognized token" in lowered:
        return "syntax"
    if "no such table" in lowered or "no such column" in lowered or "ambiguous column" in lowered:
        return "schema"
    return "runtime"


def run_query(conn: sqlite3.Connection, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
              max_rows: int = DEFAULT_MAX_ROWS) -> QueryResult:
    """Run one untrusted statement on a locked-down connection; never raises for anything the SQL does.

    ``truncated`` is True when more than ``max_rows`` rows were available (only ``max_rows`` are returned).
    """
    start = time.monotonic()
    if not isinstance(sql, str) or not sql.strip().rstrip(";").strip():
        return QueryResult(error="empty query", error_kind="empty")
    if len(sql.encode("utf-8", "surrogatepass")) > _MAX_SQL_BYTES:
        return QueryResult(error=f"query longer than {_MAX_SQL_BYTES} bytes", error_kind="too_large")
    if "\x00" in sql:
        return QueryResult(error="query contains a NUL character", error_kind="syntax")
    keyword = _first_keyword(sql)
    if keyword in _STATEMENT_KEYWORDS:
        return QueryResult(error=f"only queries may run here, not {keyword}", error_kind="denied")
    if keyword not in _QUERY_KEYWORDS:
        return QueryResult(error=f"not a query: it starts with {keyword or sql.strip()[:20]!r}", error_kind="syntax")
    deadline = start + timeout_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    cursor: sqlite3.Cursor | None = None
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(max_rows + 1)
        columns = tuple(d[0] for d in cursor.description or ())
    except (sqlite3.Error, sqlite3.Warning, OverflowError, ValueError, MemoryError, UnicodeError) as exc:
        message = str(exc) or type(exc).__name__
        return QueryResult(error=message, error_kind=_error_kind(message), elapsed_s=time.monotonic() - start)
    finally:
        if cursor is not None:
            cursor.close()
        conn.set_progress_handler(None, 0)
        if conn.in_transaction:
            conn.rollback()
    truncated = len(rows) > max_rows
    return QueryResult(columns=columns, rows=tuple(tuple(r) for r in rows[:max_rows]), truncated=truncated,
                       elapsed_s=time.monotonic() - start)


@dataclass(frozen=True)
class SQLCheck:
    """The verdict of the SQL validity gate: ``reason_code`` is ``"ok"`` or why the SQL was refused."""

    ok: bool
    reason_code: str
    detail: str = ""
    result: QueryResult | None = field(default=None, compare=False, repr=False)


@lru_cache(maxsize=256)
def _gate_database(schema_text: str) -> tuple[sqlite3.Connection, threading.Lock]:
    """One locked-down database per schema for the gate; the lock keeps concurrent callers from sharing its
    progress handler."""
    return sandbox_database(schema_text, seed=0), threading.Lock()


def check_sql(schema: Schema | str, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> SQLCheck:
    """Quality gate for generated SQL: one SELECT statement that sqlglot parses and that runs without error on a
    database synthesized from ``schema``. Never raises for bad SQL; a schema that does not parse gives
    ``bad_schema``.

    Reason codes: ok, empty, unparsable, multiple_statements, not_select, bad_schema, and the sandbox's error kinds
    prefixed ``exec_`` (exec_timeout, exec_denied, exec_schema, exec_syntax, exec_runtime, ...).
    """
    if not isinstance(sql, str) or not sql.strip().rstrip(";").strip():
        return SQLCheck(False, "empty", "no SQL")
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as exc:
        return SQLCheck(False, "unparsable", str(exc).splitlines()[0][:300])
    except (ValueError, RecursionError) as exc:
        return SQLCheck(False, "unparsable", f"{type(exc).__name__}: {str(exc)[:300]}")
    if len(statements) != 1:
        return SQLCheck(False, "multiple_statements" if statements else "empty", f"{len(statements)} statements")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        return SQLCheck(False, "not_select", f"a {tree.key.upper()} statement, not a SELECT")
    try:
        text = schema.text if isinstance(schema, Schema) else parse_schema(schema).text
        conn, lock = _gate_database(text)
    except SchemaError as exc:
        return SQLCheck(False, "bad_schema", str(exc))
    with lock:
        result = run_query(conn, sql, timeout_s=timeout_s, max_rows=1000)
    if not result.ok:
        return SQLCheck(False, f"exec_{result.error_kind}", result.error or "", result)
    return SQLCheck(True, "ok", f"{len(result.rows)} rows", result)
