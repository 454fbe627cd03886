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
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.fileio import atomic_write_text

DEFAULT_RUNS_DIR = Path(os.environ.get("SYNTHGEN_RUNS_DIR", "runs"))
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


class RunStore:
    """Creates run folders and keeps the index of runs."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or DEFAULT_RUNS_DIR)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / "index.sqlite"
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, created_at REAL, updated_at REAL, "
                "task TEXT, planner TEXT, status TEXT, best_dev_bpc REAL, base_dev_bpc REAL, validation_bpc REAL, "
                "base_validation_bpc REAL, iterations INTEGER, submissions INTEGER)"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.index_path), timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

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
        now = time.time()
        with closing(self._connect()) as conn, conn:
            conn.execute("INSERT INTO runs (run_id, created_at, updated_at, task, planner, status, iterations, "
                         "submissions) VALUES (?, ?, ?, ?, ?, 'running', 0, 0)", (run_id, now, now, task, planner))
        return paths

    def paths(self, run_id: str) -> RunPaths:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RunNotFound(f"invalid run id {run_id!r}")
        paths = RunPaths(self.root / run_id)
        if not paths.config.is_file():
            known = ", ".join(r["run_id"] for r in self.list()[:5]) or "none"
            raise RunNotFound(f"no run {run_id!r} under {self.root} (recent runs: {known})")
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
        with closing(self._connect()) as conn, conn:
            conn.execute(f"UPDATE runs SET {assignments}, updated_at = ? WHERE run_id = ?",
                         (*fields.values(), time.time(), run_id))

    def list(self) -> list[dict[str, Any]]:
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT * FROM runs ORDER BY created_at DESC").fetchall()
        return [dict(r) for r in rows]

    def get(self, run_id: str) -> dict[str, Any]:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in {self.index_path}")
        return dict(row)
