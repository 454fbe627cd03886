"""LangGraph checkpointers: SQLite by default (one thread per run id), in memory for tests.

Checkpoints are loaded in strict msgpack mode: only LangGraph's safe built-in types are ever deserialised, so a
tampered checkpoint file cannot construct arbitrary objects. The agent's state is plain JSON values, which is all
strict mode needs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from memory.runs import RunPaths


def strict_serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=None)


def make_checkpointer(path: Path | None) -> BaseCheckpointSaver:
    """A SQLite checkpointer at ``path`` (created if missing), or an in-memory one when ``path`` is None."""
    if path is None:
        return InMemorySaver(serde=strict_serializer())
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    saver = SqliteSaver(conn, serde=strict_serializer())
    saver.setup()
    return saver


def thread_config(run_id: str, recursion_limit: int = 100) -> dict[str, object]:
    """The invoke config of a run: its checkpoint thread and the graph's loop guard."""
    return {"configurable": {"thread_id": run_id}, "recursion_limit": recursion_limit}


def load_state(paths: RunPaths) -> dict[str, Any]:
    """The run's latest checkpointed state ({} when no checkpoint exists yet), read in strict mode."""
    if not paths.checkpoints.exists():
        return {}
    with contextlib.closing(sqlite3.connect(str(paths.checkpoints), check_same_thread=False)) as conn:
        saver = SqliteSaver(conn, serde=strict_serializer())
        found = saver.get_tuple({"configurable": {"thread_id": paths.run_id}})
    if found is None:
        return {}
    values: dict[str, Any] = found.checkpoint["channel_values"]
    return {k: v for k, v in values.items() if not k.startswith("branch:")}
