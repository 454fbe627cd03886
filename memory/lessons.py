"""Cross-run lessons in a LangGraph store: a bandit's memory of what synthetic data was worth, per task type.

An arm is a (category, generation strategy) pair of a task type. After a run, the agent adds one observation per
arm it generated rows for and measured on dev: how many rows, the relative dev-BPC gain of the category credited
to them, and the generation seconds they cost. The next run on the same task type starts from these statistics
(:func:`arm_memory`): the policy ranks arms by them and the planner sees them (:func:`lessons_for`).
"""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path
from typing import Any

from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore
from pydantic import BaseModel, Field

NAMESPACE = "lessons"
#: Observations kept per arm (the oldest are dropped).
HISTORY = 50


class ArmObservation(BaseModel):
    """One measurement of an arm in one run."""

    run_id: str
    rows: int = Field(ge=0)
    gain: float = Field(description="relative dev-BPC improvement of the category credited to the rows")
    seconds: float = 0.0
    method: str = "estimate"
    at: float = 0.0

    @property
    def reward(self) -> float:
        """Gain per 100 synthetic rows: the bandit's reward."""
        return 100 * self.gain / max(1, self.rows)


class ArmStats(BaseModel):
    """What the memory knows about one arm."""

    category: str
    strategy: str
    observations: list[ArmObservation] = Field(default_factory=list)

    @property
    def pulls(self) -> int:
        return len(self.observations)

    @property
    def rows(self) -> int:
        return sum(o.rows for o in self.observations)

    @property
    def mean_reward(self) -> float:
        """Mean gain per 100 rows over the observations (0 when there are none)."""
        return sum(o.reward for o in self.observations) / self.pulls if self.observations else 0.0

    @property
    def gain_per_minute(self) -> float | None:
        """Gain per minute of generation, over every observation that took time."""
        seconds = sum(o.seconds for o in self.observations)
        return 60 * sum(o.gain for o in self.observations) / seconds if seconds > 0 else None


def make_store(path: Path | None) -> BaseStore:
    """A SQLite store at ``path`` (shared by all runs), or an in-memory one when ``path`` is None."""
    if path is None:
        return InMemoryStore()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    store = SqliteStore(conn)
    store.setup()
    return store


def _observations(value: dict[str, Any]) -> list[ArmObservation]:
    """An arm's stored observations; entries of the earlier format ({examples, before, after}) are converted."""
    found = []
    for entry in value.get("history", []):
        if "before" in entry:
            before = float(entry["before"])
            entry = {"run_id": entry.get("run_id", ""), "rows": entry.get("examples", 0), "at": entry.get("at", 0.0),
                     "gain": (before - float(entry["after"])) / max(before, 1e-9), "method": "round_delta"}
        found.append(ArmObservation.model_validate(entry))
    return found


def record_arm(store: BaseStore, *, task_type: str, category: str, strategy: str,
               observation: ArmObservation) -> None:
    """Add one observation of the arm (``category``, ``strategy``) of ``task_type``."""
    key = f"{strategy}:{category}"
    item = store.get((NAMESPACE, task_type), key)
    history = _observations(item.value) if item else []
    history.append(observation.model_copy(update={"at": observation.at or time.time()}))
    store.put((NAMESPACE, task_type), key, {"strategy": strategy, "category": category,
                                            "history": [o.model_dump() for o in history[-HISTORY:]]})


def arm_memory(store: BaseStore, task_type: str) -> list[ArmStats]:
    """Every arm of ``task_type`` the store has observations of, sorted by category and strategy."""
    arms = [ArmStats(category=item.value["category"], strategy=item.value["strategy"],
                     observations=_observations(item.value))
            for item in store.search((NAMESPACE, task_type), limit=1000)]
    return sorted((a for a in arms if a.observations), key=lambda a: (a.category, a.strategy))


def lessons_for(arms: list[ArmStats], limit: int = 8) -> list[str]:
    """Short sentences about the arms, strongest evidence first (most rows, then largest mean reward)."""
    ranked = sorted(arms, key=lambda a: (-a.rows, -abs(a.mean_reward), a.category, a.strategy))[:limit]
    lines = []
    for arm in ranked:
        per_minute = arm.gain_per_minute
        speed = f", {-per_minute:+.2%} per minute of generation" if per_minute is not None and math.isfinite(
            per_minute) else ""
        rounds = f"{arm.pulls} round{'s' if arm.pulls != 1 else ''}"
        lines.append(f"{arm.strategy} rows for '{arm.category}': dev BPC {-arm.mean_reward:+.2%} per 100 rows on "
                     f"average over {rounds} ({arm.rows} rows){speed}")
    return lines
