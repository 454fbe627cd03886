"""The run store: one folder per run under ``runs/`` and an index of all runs in ``runs/index.sqlite``.

Layout of a run folder::

    runs/<run_id>/
      config.json          the run's configuration (secrets never written)
      trace.jsonl          typed events (agent/trace.py)
      cassette.jsonl       recorded planner answers and tool results (agent/replay.py)
      checkpoints.sqlite   LangGraph checkpoints (thread = run id)
      task/                task JSON and downloaded data, splits
      data/                dataset versions (content-addressed shards), generation journals
      adapters/<id>/       trained adapters (adapter files + metrics.json)
      evals/               evaluation results
      report/              report.html and plots
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.fileio import atomic_write_text

#: Environment variable naming the runs folder when no ``--runs-dir`` is given.
RUNS_DIR_ENV = "SYNTHGEN_RUNS_DIR"
_COLUMNS = ("run_id", "created_at", "updated_at", "task", "planner", "status", "best_dev_bpc", "base_dev_bpc",
            "validation_bpc", "base_validation_bpc", "iterations", "submissions")


class _InRun:
    """A file or folder of a run folder, read as an attribute of :class:`RunPaths`."""

    def __init__(self, relative: str):
        self.relative = relative

    def __get__(self, paths: RunPaths, owner: type[RunPaths] | None = None) -> Path:
        return paths.root / self.relative


@dataclass(frozen=True)
class RunPaths:
    root: Path

    config = _InRun("config.json")
    trace = _InRun("trace.jsonl")
    cassette = _InRun("cassette.jsonl")
    checkpoints = _InRun("checkpoints.sqlite")
    task_dir = _InRun("task")
    data_dir = _InRun("data")
    adapters_dir = _InRun("adapters")
    evals_dir = _InRun("evals")
    report_dir = _InRun("report")

    @property
    def run_id(self) -> str:
        return self.root.name

    def make(self) -> RunPaths:
        for folder in (self.root, self.task_dir, self.data_dir, self.adapters_dir, self.evals_dir, self.report_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


class RunNotFound(LookupError):
    pass


def default_runs_dir() -> Path:
    """``$SYNTHGEN_RUNS_DIR`` when set, else ``runs`` in the current folder."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def task_label(task: dict[str, Any]) -> str:
    """How the index names a run's task, from the run configuration's ``task`` section."""
    if task.get("kind") == "flock":
        return f"flock:{task.get('task_id')}"
    if task.get("kind") == "dir":
        return f"dir:{task.get('task_dir')}"
    return str(task.get("kind"))


def index_fields(state: dict[str, Any]) -> dict[str, Any]:
    """The index's scores and counts for a run, from its checkpointed state."""
    best = min((e["bpc"] for e in state.get("evaluations", [])), default=None)
    submissions = state.get("submissions", [])
    last = submissions[-1] if submissions else {}
    return {"best_dev_bpc": best, "base_dev_bpc": (state.get("baseline") or {}).get("bpc"),
            "validation_bpc": last.get("validation_bpc"), "base_validation_bpc": last.get("base_validation_bpc"),
            "iterations": state.get("iteration", 0), "submissions": len(submissions)}


class RunStore:
    """Creates run folders and keeps the index of runs.

    Reading never writes: the folder and its index are made by the first run created in it, so looking at runs
    (``synthgen runs``, ``status``) leaves no ``runs/index.sqlite`` behind. A run folder the index does not know
    (copied from another machine) is still found by :meth:`paths` and listed by :meth:`unindexed`.
    """

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_runs_dir()
        self.index_path = self.root / "index.sqlite"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.index_path), timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def _writable_index(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        with conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, created_at REAL, updated_at REAL, "
                "task TEXT, planner TEXT, status TEXT, best_dev_bpc REAL, base_dev_bpc REAL, validation_bpc REAL, "
                "base_validation_bpc REAL, iterations INTEGER, submissions INTEGER)"
            )
        return conn

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if not self.index_path.is_file():
            return []
        with closing(self._connect()) as conn:
            try:
                rows = conn.execute(f"SELECT * FROM runs {where} ORDER BY created_at DESC", args).fetchall()
            except sqlite3.OperationalError:  # an index file without the table: nothing indexed
                return []
        return [dict(r) for r in rows]

    @staticmethod
    def new_run_id() -> str:
        return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)

    def create(self, config: dict[str, Any], *, task: str, planner: str, run_id: str | None = None) -> RunPaths:
        run_id = run_id or self.new_run_id()
        paths = RunPaths(self.root / run_id)
        if paths.root.exists() and any(paths.root.iterdir()):
            raise FileExistsError(f"run {run_id} already exists at {paths.root}")
        paths.make()
        atomic_write_text(paths.config, json.dumps(config, indent=2, sort_keys=True, default=str))
        self.adopt(run_id, task=task, planner=planner)
        return paths

    def adopt(self, run_id: str, *, task: str, planner: str) -> None:
        """Index a run folder the index does not know yet (a new run, or one copied from elsewhere)."""
        now = time.time()
        with closing(self._writable_index()) as conn, conn:
            conn.execute("INSERT OR IGNORE INTO runs (run_id, created_at, updated_at, task, planner, status, "
                         "iterations, submissions) VALUES (?, ?, ?, ?, ?, 'running', 0, 0)",
                         (run_id, now, now, task, planner))

    def remove(self, run_id: str) -> None:
        """Delete a run's folder and its index row (a start that failed before doing anything worth keeping)."""
        shutil.rmtree(self.root / run_id, ignore_errors=True)
        if self.index_path.is_file():
            with closing(self._connect()) as conn, conn:
                conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def paths(self, run_id: str) -> RunPaths:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RunNotFound(f"invalid run id {run_id!r}")
        paths = RunPaths(self.root / run_id)
        if not paths.config.is_file():
            recent = [r["run_id"] for r in self.list()[:5]] or self.unindexed()[:5]
            raise RunNotFound(f"no run {run_id!r} under {self.root} (recent runs: {', '.join(recent) or 'none'})")
        return paths

    def load_config(self, run_id: str) -> dict[str, Any]:
        config: dict[str, Any] = json.loads(self.paths(run_id).config.read_text(encoding="utf-8"))
        return config

    def update(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown run index fields {sorted(unknown)}")
        if not fields:
            return
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with closing(self._writable_index()) as conn, conn:
            conn.execute(f"UPDATE runs SET {assignments}, updated_at = ? WHERE run_id = ?",
                         (*fields.values(), time.time(), run_id))

    def unindexed(self) -> list[str]:
        """Run folders under the root that the index has no row for (copied from elsewhere), by name."""
        if not self.root.is_dir():
            return []
        known = {row["run_id"] for row in self._rows()}
        return sorted((p.name for p in self.root.iterdir()
                       if p.name not in known and not p.name.startswith(".") and (p / "config.json").is_file()),
                      reverse=True)

    def get(self, run_id: str) -> dict[str, Any]:
        rows = self._rows("WHERE run_id = ?", (run_id,))
        if not rows:
            raise RunNotFound(f"no run {run_id!r} in {self.index_path}")
        return rows[0]

    def list(self) -> list[dict[str, Any]]:
        """The indexed runs, newest first."""
        return self._rows()
