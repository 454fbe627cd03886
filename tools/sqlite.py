"""SQLite state shared by threads and processes (the submission ledger, the simulator's store): WAL, a busy
timeout, and transactions that take the write lock at ``BEGIN IMMEDIATE``, so a rule checked inside one (two
submissions a day, never send twice) still holds when it commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Literal


def connect(path: str | Path, *, timeout_s: float, synchronous: Literal["NORMAL", "FULL"]) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows by column name, WAL journal; writers wait
    up to ``timeout_s`` for the lock. ``synchronous="FULL"`` where a commit must be on disk before going on."""
    db = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db


@contextmanager
def transaction(path: str | Path, *, timeout_s: float, synchronous: Literal["NORMAL", "FULL"],
                write: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction on a fresh connection: committed when the block ends, rolled back when it raises. A write
    transaction holds the write lock from its start; a read one sees one snapshot throughout."""
    with closing(connect(path, timeout_s=timeout_s, synchronous=synchronous)) as db:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
