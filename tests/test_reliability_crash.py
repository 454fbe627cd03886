"""Crash suite (issue 9 item 2): a real agent process killed with SIGKILL at seeded, randomized points, then
resumed in a fresh process, again and again; every run must end exactly like an uninterrupted reference run.

Each kill point waits for an event in the run's trace (or a state of its submission ledger or of its simulator),
adds a random delay drawn from a fixed seed, and kills the process. The next launch is ``synthgen resume``. Runs
use the tiny model as the local generator (several journaled batches) and train for several optimizer steps, so
generation and training are killed midway. Two kill points hold the submission open with simulator faults: one
kills the process while the request is in flight (the server never records it), one after the server recorded
it but before the agent heard back.

Children are forked from a zygote that imported the agent once (tests/crash_child.py); the reference run and one
final resume are plain ``python -m agent.cli`` processes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.runner import Runner
from memory.checkpoint import load_state
from memory.runs import RunStore
from tests.agent_helpers import SMOL, mini_task_dir
from tests.reliability_helpers import (
    SIM_FAULTS_ENV,
    assert_one_submission_per_revision,
    assert_trace_intact,
    faults_env,
    leftover_temp_files,
)
from tools.flock.simulator.faults import FaultRule

pytestmark = [pytest.mark.crash, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
SEED = 20251128
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ----- the zygote ------------------------------------------------------------------------------------------------
class Zygote:
    """Talks to tests/crash_child.py: fork a ``synthgen`` command, reap it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "crash_child.py")], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **CHILD_ENV})
        ready = self._read()
        assert "ready" in ready, ready

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"crash_child.py exited with {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        return int(self._ask({"argv": argv, "env": env, "log": str(log)})["pid"])

    def poll(self, pid: int, timeout: float = 0.0) -> int | None:
        code = self._ask({"wait": pid, "timeout": timeout})["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# ----- kill points -----------------------------------------------------------------------------------------------
Trigger = Callable[[Path, list[dict[str, Any]]], bool]


def on_event(type_: str, node: str | None = None, tool: str | None = None) -> Trigger:
    def ready(run_root: Path, events: list[dict[str, Any]]) -> bool:
        return any(e["type"] == type_ and (node is None or e["node"] == node)
                   and (tool is None or e["data"].get("tool") == tool) for e in events)

    return ready


def _count(database: Path, sql: str) -> int:
    if not database.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


def ledger_sending(run_root: Path, events: list[dict[str, Any]]) -> bool:
    """The submission ledger holds the intent to send: the request is about to leave or has left."""
    return _count(run_root / "submissions.sqlite", "SELECT COUNT(*) FROM submissions WHERE state='sending'") > 0


def server_recorded(run_root: Path, events: list[dict[str, Any]]) -> bool:
    """The simulator has recorded the submission."""
    return _count(run_root / "flock-sim" / "state.sqlite", "SELECT COUNT(*) FROM submissions") > 0


def unrecorded_send(run_root: Path) -> bool:
    """After the kill: the ledger says 'sending' and the server has nothing."""
    return ledger_sending(run_root, []) and not server_recorded(run_root, [])


def recorded_unconfirmed(run_root: Path) -> bool:
    """After the kill: the server has the submission, the ledger still says 'sending'."""
    return ledger_sending(run_root, []) and server_recorded(run_root, [])


@dataclass
class KillPoint:
    aim: str
    trigger: Trigger
    delay: tuple[float, float]
    faults: list[FaultRule] = field(default_factory=list)
    #: What must hold in the run folder right after the kill (the window the point aims at was hit).
    after: Callable[[Path], bool] | None = None
    #: When set, ``delay`` is a range of shares of this tool's duration in the uninterrupted reference run, so
    #: the kill lands inside the call however fast the machine is.
    share_of: str | None = None


@dataclass
class KillRecord:
    run_id: str
    aim: str
    delay: float
    landed: str
    returncode: int | None


# The server holds the submission 4 s, then never answers: the process dies with the request in flight.
IN_FLIGHT = [FaultRule(endpoint="submit_result", kind="slow", delay_s=4.0)]
# The server records the submission and drops the answer; the agent's look at its submission list is slow.
RECORDED_UNANSWERED = [FaultRule(endpoint="submit_result", kind="lose_response"),
                       FaultRule(endpoint="wallet_submissions", kind="slow", delay_s=5.0, times=3)]

SCHEDULES: dict[str, list[KillPoint]] = {
    "crash-a": [
        KillPoint("bootstrap: download and split", on_event("tool_call", tool="prepare_task"), (0.0, 0.1)),
        KillPoint("bootstrap: base-model evaluation", on_event("tool_call", "bootstrap", "evaluate"), (0.3, 1.5)),
        KillPoint("generation", on_event("tool_call", tool="generate"), (0.2, 0.7), share_of="generate"),
        KillPoint("training", on_event("tool_call", tool="train"), (0.2, 0.7), share_of="train"),
        KillPoint("evaluation of the adapter", on_event("tool_call", "evaluate", "evaluate"), (0.1, 0.8),
                  share_of="evaluate/evaluate"),
        KillPoint("submission in flight, not recorded by the server", ledger_sending, (0.2, 1.0), IN_FLIGHT,
                  unrecorded_send),
    ],
    "crash-b": [
        KillPoint("bootstrap: first node", on_event("node_start", "bootstrap"), (0.0, 0.2)),
        KillPoint("generation, later batches", on_event("tool_call", tool="generate"), (0.6, 0.85),
                  share_of="generate"),
        KillPoint("training, later steps", on_event("tool_call", tool="train"), (0.6, 0.85), share_of="train"),
        KillPoint("submission recorded by the server, answer lost", server_recorded, (0.0, 0.3),
                  RECORDED_UNANSWERED, recorded_unconfirmed),
        KillPoint("submit node: reconcile, publish, validation", on_event("tool_call", tool="submit"), (0.2, 1.5)),
        KillPoint("finish: test comparison", on_event("tool_call", tool="compare_on_test"), (0.0, 0.5)),
        KillPoint("resume itself", on_event("run_resume"), (0.0, 0.3)),
    ],
}


def new_events(trace: Path, start: int) -> list[dict[str, Any]]:
    """Complete trace lines from line ``start`` on."""
    if not trace.is_file():
        return []
    lines = trace.read_bytes().split(b"\n")[:-1]  # the last piece is empty or a line still being written
    events = []
    for line in lines[start:]:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return events


def landed_in(trace: Path) -> str:
    """Where the process was when it died: the node open last, and the tool it was in."""
    open_nodes: list[str] = []
    tool = None
    for event in new_events(trace, 0):
        if event["type"] == "node_start":
            open_nodes.append(event["node"])
        elif event["type"] == "node_end" and event["node"] in open_nodes:
            open_nodes.remove(event["node"])
        if event["type"] == "tool_call":
            tool = event["data"]["tool"]
        elif event["type"] == "tool_result":
            tool = None
    if not open_nodes:
        return "between nodes"
    return open_nodes[-1] + (f" / {tool}" if tool else "")


def count_lines(trace: Path) -> int:
    return trace.read_bytes().count(b"\n") if trace.is_file() else 0


# ----- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crash_config(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("crash")
    task_dir = mini_task_dir(root)
    settings = {
        "task": {"kind": "dir", "task_dir": str(task_dir)},
        "base_model": SMOL,
        "base_model_weights": str(tiny_model_dir),
        # The tiny model writes drafts in several journaled batches (the deterministic writers finish them).
        "generator": {"backend": "local", "model": SMOL, "batch_size": 4, "max_new_tokens": 16},
        "planner": {"kind": "policy"},
        "budget": {"max_iterations": 1, "max_synthetic_examples": 16, "no_gain_patience": 5,
                   "max_wall_seconds": 3600},
        "train": {"epochs": 1, "lora_rank": 4, "lora_alpha": 8, "batch_tokens": 2048},
        "eval": {"task_metric": False, "dev_fraction": 0.15, "test_fraction": 0.15},
    }
    path = root / "crash.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def forget_lessons(runs_dir: Path) -> None:
    """Remove the runs folder's cross-run memory (lessons.sqlite and its journal files)."""
    for path in runs_dir.glob("lessons.sqlite*"):
        path.unlink()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **CHILD_ENV})


def tool_seconds(trace: Path) -> dict[str, float]:
    """Each tool's longest call in a finished run's trace, by tool and by ``node/tool``."""
    seconds: dict[str, float] = {}
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "tool_result":
            tool = event["data"]["tool"]
            for key in (tool, f"{event['node']}/{tool}"):
                seconds[key] = max(seconds.get(key, 0.0), float(event["data"]["seconds"]))
    return seconds


def drive(zygote: Zygote, runs_dir: Path, run_id: str, config: Path, schedule: list[KillPoint],
          rng: random.Random, logs: Path, reference_seconds: dict[str, float]) -> list[KillRecord]:
    """Start the run, kill it at each point of the schedule, resuming after each kill."""
    run_root = runs_dir / run_id
    trace = run_root / "trace.jsonl"
    records = []
    for index, point in enumerate(schedule):
        argv = (["run", "--config", str(config), "--run-id", run_id] if index == 0 else ["resume", run_id]) + \
            ["--runs-dir", str(runs_dir)]
        env = {SIM_FAULTS_ENV: faults_env(*point.faults)} if point.faults else {}
        delay = rng.uniform(*point.delay)
        delay = round(delay * reference_seconds[point.share_of] if point.share_of else delay, 3)
        start = count_lines(trace)
        pid = zygote.spawn(argv, env, logs / f"{run_id}-{index}.log")
        deadline = time.monotonic() + 300
        while not point.trigger(run_root, new_events(trace, start)):
            code = zygote.poll(pid)
            assert code is None, (f"{run_id}: the process exited ({code}) before kill point {point.aim!r}; "
                                  f"see {logs / f'{run_id}-{index}.log'}")
            assert time.monotonic() < deadline, f"{run_id}: kill point {point.aim!r} never came"
            time.sleep(0.05)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        code = zygote.poll(pid, timeout=30)
        records.append(KillRecord(run_id, point.aim, delay, landed_in(trace), code))
        if point.after is not None:
            assert point.after(run_root), f"{run_id}: kill point {point.aim!r} missed its window"
    return records


def test_sigkill_at_random_points_then_resume_ends_like_an_uninterrupted_run(
        crash_config: Path, tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    logs = tmp_path / "logs"
    logs.mkdir()
    started = time.monotonic()
    reference = cli("run", "--config", str(crash_config), "--run-id", "reference", "--runs-dir", str(runs_dir))
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-3000:]
    store = RunStore(runs_dir)
    expected = load_state(store.paths("reference"))
    assert expected["status"] == "finished"
    expected_versions = [d["version"] for d in expected["datasets"]]
    expected_submissions = len(assert_one_submission_per_revision(runs_dir / "reference"))
    assert expected_submissions == 1 and len(expected_versions) == 2

    rng = random.Random(SEED)
    zygote = Zygote()
    records: list[KillRecord] = []
    try:
        for run_id, schedule in SCHEDULES.items():
            # Each run starts from the empty cross-run memory the reference started from: what a finished run
            # learned (memory/lessons.py) rightly changes the next run's choices.
            forget_lessons(runs_dir)
            records += drive(zygote, runs_dir, run_id, crash_config, schedule, rng, logs,
                             tool_seconds(runs_dir / "reference" / "trace.jsonl"))
            if run_id == "crash-a":  # the real command line, in a fresh interpreter
                final = cli("resume", run_id, "--runs-dir", str(runs_dir))
                assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
            else:
                pid = zygote.spawn(["resume", run_id, "--runs-dir", str(runs_dir)], {}, logs / f"{run_id}-end.log")
                code = zygote.poll(pid, timeout=600)
                assert code == 0, (logs / f"{run_id}-end.log").read_text()[-3000:]
    finally:
        zygote.close()

    print(f"\n{len(records)} kills in {time.monotonic() - started:.0f}s (seed {SEED}):")
    for record in records:
        print(f"| {record.run_id} | {record.aim} | +{record.delay:.2f}s | {record.landed} | {record.returncode} |")
    assert len(records) >= 10
    assert all(r.returncode == -signal.SIGKILL for r in records), records
    landed = {r.landed.split(" / ")[0] for r in records}
    assert {"bootstrap", "generate", "train", "submit"} <= landed, landed

    for run_id, schedule in SCHEDULES.items():
        paths = store.paths(run_id)
        state = load_state(paths)
        assert state["status"] == "finished", run_id
        assert [d["version"] for d in state["datasets"]] == expected_versions, run_id
        assert len(assert_one_submission_per_revision(paths.root, expected=None)) == expected_submissions
        assert len(state["submissions"]) == expected_submissions
        ledger = sqlite3.connect(paths.root / "submissions.sqlite")
        assert [row[0] for row in ledger.execute("SELECT state FROM submissions")] == ["sent"]
        ledger.close()
        events = assert_trace_intact(paths.trace, resumes=len(schedule))
        assert events[-1]["type"] == "run_end"
        replay = Runner(store).replay(run_id)
        assert replay.ok, (run_id, replay.problems)
        print(f"{run_id}: leftover temporary files after kills: "
              f"{[str(p.relative_to(paths.root)) for p in leftover_temp_files(paths.root)]}")
