"""Shared pieces of the reliability suites (issue 9): fault plans for a run's in-process simulator, copies of a
run folder to resume from, and the checks every surviving run must pass (one submission per revision, an intact
trace, no temporary files left behind)."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.pipeline import SIM_FAULTS_ENV, open_pipeline
from agent.trace import Redactor
from memory.runs import RunPaths
from tools.flock.simulator.faults import FaultRule
from tools.flock.simulator.store import SimulatorStore

#: FedLedger client settings for fault runs: a 1 s timeout (so a 1.5 s "slow" fault is past it) and short waits.
FAST_CLIENT = {"timeout_s": 1.0, "retry_attempts": 4, "retry_wait_s": 0.02}


def faults_env(*rules: FaultRule) -> str:
    """The value of ``$SYNTHGEN_SIM_FAULTS`` for these rules."""
    return json.dumps([rule.model_dump() for rule in rules])


class SimulatorProbe:
    """A toolbox factory on the real pipeline that keeps a handle on the run's simulator, so a test can see which
    faults were injected and what the simulator recorded."""

    def __init__(self) -> None:
        self.simulators: list[Any] = []

    def __call__(self, config: Any, paths: RunPaths, redactor: Redactor) -> contextlib.AbstractContextManager[Any]:
        @contextlib.contextmanager
        def opened() -> Iterator[Any]:
            with open_pipeline(config, paths, redactor) as toolbox:
                self.simulators.append(toolbox.env.simulator)
                yield toolbox

        return opened()

    @property
    def injected(self) -> list[tuple[str, str]]:
        return [pair for sim in self.simulators for pair in sim.faults.injected]

    @property
    def pending(self) -> list[FaultRule]:
        return [rule for sim in self.simulators for rule in sim.faults.pending()]


def sim_submissions(run_root: Path) -> list[dict[str, Any]]:
    """Every submission the run's simulator recorded (its SQLite state in the run folder)."""
    store = SimulatorStore(run_root / "flock-sim" / "state.sqlite")
    return store.submissions()


def assert_one_submission_per_revision(run_root: Path, expected: int | None = 1) -> list[dict[str, Any]]:
    submissions = sim_submissions(run_root)
    repeated = {key: n for key, n in Counter((s["hg_repo_id"], s["revision"]) for s in submissions).items() if n > 1}
    assert not repeated, f"submitted more than once: {repeated}"
    if expected is not None:
        assert len(submissions) == expected, submissions
    return submissions


def trace_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a trace, each of which must parse (a torn tail is dropped by the next writer)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path}: last line is torn"
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def assert_trace_intact(path: Path, *, resumes: int | None = None) -> list[dict[str, Any]]:
    events = trace_lines(path)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(len(events))), f"{path}: seq not strictly increasing from 0"
    assert events[0]["type"] == "run_start"
    if resumes is not None:
        assert sum(e["type"] == "run_resume" for e in events) == resumes
    return events


def leftover_temp_files(root: Path) -> list[Path]:
    """Temporary files that atomic writers use (``.name.XXXX.tmp``, ``.part`` downloads, staging folders)."""
    patterns = (".*.tmp", "*.part", ".adapter-*", ".step-*", "*.tmp")
    found = {p for pattern in patterns for p in root.rglob(pattern)}
    return sorted(found)


def copy_run(runs_dir: Path, run_id: str, dest_runs_dir: Path) -> Path:
    """A copy of a runs folder (index, run folder, simulator state) whose config points at the copy."""
    shutil.copytree(runs_dir, dest_runs_dir)
    config_path = dest_runs_dir / run_id / "config.json"
    config = json.loads(config_path.read_text())
    config["runs_dir"] = str(dest_runs_dir)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return dest_runs_dir / run_id


class FakeFlock(ThreadingHTTPServer):
    """A stand-in for a hostile or broken FLock deployment on loopback: ``/api/v1/tasks/get`` answers ``task``
    with its training-set link pointing here, and ``storage(handler)`` writes the storage host's answer."""

    def __init__(self, task: dict[str, Any], storage: Callable[[Any], None], link_path: str = "/storage/data.jsonl"):
        super().__init__(("127.0.0.1", 0), _FakeFlockHandler)
        self.task = {**task, "id": task.get("id", 1), "status": "submission_phase"}
        self.storage = storage
        self.link_path = link_path
        self.body_bytes_sent = 0
        self.requests: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeFlock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _FakeFlockHandler(BaseHTTPRequestHandler):
    server: FakeFlock

    def log_message(self, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if self.path.startswith("/api/v1/tasks/get"):
            task = dict(self.server.task)
            task["data"] = {**task["data"], "training_set_url": self.server.url + self.server.link_path}
            body = json.dumps(task).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with contextlib.suppress(OSError):  # the client hung up, as it should when it refuses an answer
            self.server.storage(self)


__all__ = ["FAST_CLIENT", "SIM_FAULTS_ENV", "FakeFlock", "SimulatorProbe", "assert_one_submission_per_revision",
           "assert_trace_intact", "copy_run", "faults_env", "leftover_temp_files", "sim_submissions",
           "trace_lines"]
