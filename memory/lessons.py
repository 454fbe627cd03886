"""Cross-run lessons in a LangGraph store: what each strategy gained per task type and category.

After a run, the agent records for every targeted category the dev-BPC change it observed after generating data
for it. The planner of the next run on the same task type reads a short summary of these lessons.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

NAMESPACE = "lessons"


def make_store(path: Path | None) -> BaseStore:
    """A SQLite store at ``path`` (shared by all runs), or an in-memory one when ``path`` is None."""
    if path is None:
        return InMemoryStore()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn)
    store.setup()
    return store


def record_gain(store: BaseStore, *, task_type: str, strategy: str, category: str, examples: int,
                bpc_before: float, bpc_after: float, run_id: str) -> None:
    """Add one observation: ``examples`` synthetic rows for ``category`` moved its dev BPC from before to after."""
    key = f"{strategy}:{category}"
    item = store.get((NAMESPACE, task_type), key)
    history: list[dict[str, Any]] = list(item.value.get("history", [])) if item else []
    history.append({"run_id": run_id, "examples": examples, "before": round(bpc_before, 5),
                    "after": round(bpc_after, 5), "at": time.time()})
    store.put((NAMESPACE, task_type), key, {"strategy": strategy, "category": category, "history": history[-20:]})


def lessons_for(store: BaseStore, task_type: str, limit: int = 5) -> list[str]:
    """Short sentences about past gains, strongest evidence first."""
    lines: list[tuple[float, str]] = []
    for item in store.search((NAMESPACE, task_type), limit=100):
        history = item.value.get("history", [])
        if not history:
            continue
        gains = [(h["before"] - h["after"]) / max(h["before"], 1e-9) for h in history]
        mean_gain = sum(gains) / len(gains)
        examples = sum(h["examples"] for h in history)
        lines.append((abs(mean_gain), f"{item.value['strategy']} data for '{item.value['category']}': "
                      f"dev BPC changed {-mean_gain:+.1%} per round on average over {len(history)} rounds "
                      f"({examples} examples)"))
    return [text for _, text in sorted(lines, reverse=True)[:limit]]
