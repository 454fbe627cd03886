"""Fault injection at agent level (issue 9 item 1): the agent runs on the tiny model against its in-process FLock
simulator while the simulator injects faults (``$SYNTHGEN_SIM_FAULTS``) into the endpoints the agent and the
simulator's validator use. Every run either completes or stops with one clear, resumable error that ``resume``
completes; no revision is ever submitted twice.

To keep each case to seconds, bootstrap faults run a fresh run that stops after bootstrap, and submission-phase
faults resume a copy of one run that was stopped right after its adapter was evaluated (the next decision is to
submit). The client runs with a 1 s timeout and short retry waits (``task.timeout_s``/``retry_*``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

from agent.runner import Runner
from memory.runs import RunStore
from tests.agent_helpers import mini_task_dir, read_state, tiny_config
from tests.reliability_helpers import (
    FAST_CLIENT,
    SIM_FAULTS_ENV,
    SimulatorProbe,
    assert_one_submission_per_revision,
    assert_trace_intact,
    copy_run,
    faults_env,
    leftover_temp_files,
)
from tools.flock.client import FedLedgerClient
from tools.flock.errors import (
    FlockDownloadError,
    FlockRateLimitError,
    FlockSubmissionUncertainError,
    FlockTransportError,
)
from tools.flock.simulator import server as simulator_server
from tools.flock.simulator.faults import FaultRule

RUN_ID = "faults"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_task_dir(tmp_path_factory.mktemp("task"))


def fault_config(runs_root: Path, task_dir: Path, weights: Path) -> Any:
    return tiny_config(runs_root, task_dir, weights, overrides={"budget": {"max_iterations": 1}, "task": FAST_CLIENT})


class _QuickValidatorClient(FedLedgerClient):
    """The simulator's validator client with a 1 s timeout instead of 60 s, so slow faults pass its timeout."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["timeout"] = 1.0
        super().__init__(*args, **kwargs)


@pytest.fixture(autouse=True)
def quick_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulator_server, "FedLedgerClient", _QuickValidatorClient)


def stop_after(node_name: str) -> Any:
    def on_step(node: str, update: dict[str, Any]) -> None:
        if node == node_name:
            raise KeyboardInterrupt

    return on_step


# ----- bootstrap: task fetch and training-set download -------------------------------------------------------
BOOTSTRAP_FAULTS: dict[str, list[FaultRule]] = {
    "rate_limit": [FaultRule(endpoint="get_task", kind="rate_limit", times=2, retry_after=0.05),
                   FaultRule(endpoint="storage", kind="rate_limit", times=2, retry_after=0.05)],
    "server_error": [FaultRule(endpoint="get_task", kind="server_error", status=500),
                     FaultRule(endpoint="get_task", kind="server_error", status=503),
                     FaultRule(endpoint="storage", kind="server_error", status=502)],
    "slow": [FaultRule(endpoint="get_task", kind="slow", delay_s=1.5),  # past the 1 s API timeout
             FaultRule(endpoint="storage", kind="slow", delay_s=1.5)],  # under the 300 s download read timeout
    "drop": [FaultRule(endpoint="get_task", kind="drop", times=2), FaultRule(endpoint="storage", kind="drop", times=2)],
    "lose_response": [FaultRule(endpoint="get_task", kind="lose_response")],
    "truncate": [FaultRule(endpoint="storage", kind="truncate", times=2)],
    "expire_link": [FaultRule(endpoint="storage", kind="expire_link", times=2)],
}


@pytest.mark.parametrize("kind", sorted(BOOTSTRAP_FAULTS))
def test_bootstrap_survives_fault(kind: str, tmp_path: Path, task_dir: Path, tiny_model_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rules = BOOTSTRAP_FAULTS[kind]
    monkeypatch.setenv(SIM_FAULTS_ENV, faults_env(*rules))
    config = fault_config(tmp_path, task_dir, tiny_model_dir)
    probe = SimulatorProbe()
    outcome = Runner(RunStore(config.runs_dir), toolbox_factory=probe, on_step=stop_after("bootstrap")).start(
        config, run_id=RUN_ID)
    assert outcome.interrupted  # stopped by the test after bootstrap, not by the fault
    assert sorted(probe.injected) == sorted((r.endpoint, r.kind) for r in rules for _ in range(r.times))
    assert probe.pending == []
    state = outcome.state
    assert state["status"] == "running" and state["baseline"]["bpc"] > 0
    downloaded = outcome.paths.task_dir / "training_set.jsonl"
    source = task_dir / "training_set.jsonl"
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()
    assert leftover_temp_files(outcome.paths.root) == []
    assert_trace_intact(outcome.paths.trace)


@pytest.mark.parametrize(
    ("rules", "error", "says"),
    [
        ([FaultRule(endpoint="get_task", kind="drop", times=8)], FlockTransportError, "GET /tasks/get"),
        ([FaultRule(endpoint="storage", kind="truncate", times=8)], FlockDownloadError,
         "training set of task 1: gave up after 4 attempts"),
    ],
    ids=["api-down", "downloads-always-truncated"],
)
def test_bootstrap_stops_clearly_then_resumes(rules: list[FaultRule], error: type[Exception], says: str,
                                              tmp_path: Path, task_dir: Path, tiny_model_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIM_FAULTS_ENV, faults_env(*rules))
    config = fault_config(tmp_path, task_dir, tiny_model_dir)
    store = RunStore(config.runs_dir)
    with pytest.raises(error) as failure:
        Runner(store).start(config, run_id=RUN_ID)
    assert says in str(failure.value)
    assert store.get(RUN_ID)["status"] == "failed"
    paths = store.paths(RUN_ID)
    assert not (paths.task_dir / "training_set.jsonl").exists()  # nothing half-downloaded in place
    assert leftover_temp_files(paths.root) == []
    errors = [e for e in assert_trace_intact(paths.trace) if e["type"] == "error"]
    assert errors and says in errors[-1]["data"]["error"]

    monkeypatch.delenv(SIM_FAULTS_ENV)
    resumed = Runner(store, on_step=stop_after("bootstrap")).resume(RUN_ID)
    assert resumed.state["baseline"]["bpc"] > 0
    assert_trace_intact(paths.trace, resumes=1)


# ----- submission phase: submit-result, wallet-submissions, the validator's endpoints ------------------------
@pytest.fixture(scope="module")
def before_submit(tmp_path_factory: pytest.TempPathFactory, task_dir: Path, tiny_model_dir: Path) -> Path:
    """A runs folder holding one run stopped after its adapter's evaluation: resuming it plans a submission."""
    runs_root = tmp_path_factory.mktemp("before_submit")
    config = fault_config(runs_root, task_dir, tiny_model_dir)
    outcome = Runner(RunStore(config.runs_dir), on_step=stop_after("evaluate")).start(config, run_id=RUN_ID)
    assert outcome.interrupted and outcome.state["best_adapter"]
    return config.runs_dir


def resume_copy(before_submit: Path, dest: Path, rules: list[FaultRule],
                monkeypatch: pytest.MonkeyPatch) -> tuple[RunStore, SimulatorProbe]:
    copy_run(before_submit, RUN_ID, dest)
    monkeypatch.setenv(SIM_FAULTS_ENV, faults_env(*rules))
    return RunStore(dest), SimulatorProbe()


def finished_with_one_submission(store: RunStore, scored: bool) -> dict[str, Any]:
    state = read_state(store.root, RUN_ID)
    assert state["status"] == "finished"
    assert [d["decision"]["action"] for d in state["decisions"]] == ["generate", "train", "submit", "stop"]
    assert len(state["submissions"]) == 1
    submission = state["submissions"][0]
    [recorded] = assert_one_submission_per_revision(store.root / RUN_ID)
    assert (recorded["hg_repo_id"], recorded["revision"]) == (submission["repo_id"], submission["revision"])
    assert (submission["validation_bpc"] is not None) == scored, submission
    assert leftover_temp_files(store.root / RUN_ID) == []
    return state


_SUBMIT_ENDPOINTS = ("get_task", "submit_result", "wallet_submissions", "request_assignment", "update_assignment")
SUBMIT_FAULTS: dict[str, tuple[list[FaultRule], bool]] = {
    # kind -> (rules, whether the simulator's validator still scores the submission)
    "rate_limit": ([FaultRule(endpoint=e, kind="rate_limit", retry_after=0.05) for e in _SUBMIT_ENDPOINTS], True),
    "server_error": ([FaultRule(endpoint=e, kind="server_error", status=503) for e in _SUBMIT_ENDPOINTS], True),
    "slow": ([FaultRule(endpoint=e, kind="slow", delay_s=1.5) for e in ("get_task", "submit_result",
                                                                        "wallet_submissions")]
             + [FaultRule(endpoint=e, kind="slow", delay_s=3.0) for e in ("request_assignment",
                                                                          "update_assignment")], True),
    "drop": ([FaultRule(endpoint=e, kind="drop") for e in _SUBMIT_ENDPOINTS], True),
    # The submission is recorded and its answer lost: reconciled from wallet-submissions, never resent.
    "lose_response": ([FaultRule(endpoint=e, kind="lose_response") for e in ("submit_result", "wallet_submissions",
                                                                            "update_assignment")], True),
    "validation-set-truncated": ([FaultRule(endpoint="storage", kind="truncate")], True),
    # As FLock's validator does, an expired validation-set link fails the assignment: the run ends unscored.
    "validation-link-expired": ([FaultRule(endpoint="storage", kind="expire_link")], False),
    # The validator's assignment is made and its answer lost: it lapses on the server, unscored for now.
    "assignment-answer-lost": ([FaultRule(endpoint="request_assignment", kind="lose_response")], False),
}


@pytest.mark.parametrize("kind", list(SUBMIT_FAULTS))
def test_submission_survives_fault(kind: str, tmp_path: Path, before_submit: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rules, scored = SUBMIT_FAULTS[kind]
    store, probe = resume_copy(before_submit, tmp_path / "runs", rules, monkeypatch)
    outcome = Runner(store, toolbox_factory=probe).resume(RUN_ID)
    assert not outcome.interrupted
    assert sorted(probe.injected) == sorted((r.endpoint, r.kind) for r in rules)
    assert probe.pending == []
    finished_with_one_submission(store, scored)
    assert_trace_intact(store.paths(RUN_ID).trace, resumes=1)


STOPPING_FAULTS: dict[str, tuple[list[FaultRule], type[Exception], str]] = {
    "submit-rate-limited-past-retries": (
        [FaultRule(endpoint="submit_result", kind="rate_limit", times=8, retry_after=0.05)],
        FlockRateLimitError, "POST /tasks/submit-result failed with HTTP 429"),
    "submit-retry-after-an-hour": (
        [FaultRule(endpoint="submit_result", kind="rate_limit", retry_after=3600)],
        FlockRateLimitError, "POST /tasks/submit-result failed with HTTP 429"),
    "validator-endpoint-down": (
        [FaultRule(endpoint="request_assignment", kind="drop", times=8)],
        FlockTransportError, "/tasks/request-validation-assignment/1"),
    "answer-lost-and-submission-list-down": (
        [FaultRule(endpoint="submit_result", kind="lose_response"),
         FaultRule(endpoint="wallet_submissions", kind="server_error", times=40)],
        FlockSubmissionUncertainError, "may have reached the server"),
}


@pytest.mark.parametrize("kind", list(STOPPING_FAULTS))
def test_submission_stops_clearly_then_resumes_without_resubmitting(kind: str, tmp_path: Path, before_submit: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rules, error, says = STOPPING_FAULTS[kind]
    store, probe = resume_copy(before_submit, tmp_path / "runs", rules, monkeypatch)
    with pytest.raises(error) as failure:
        Runner(store, toolbox_factory=probe).resume(RUN_ID)
    assert says in str(failure.value)
    assert store.get(RUN_ID)["status"] == "failed"
    assert probe.injected
    events = assert_trace_intact(store.paths(RUN_ID).trace, resumes=1)
    assert says in events[-1]["data"]["error"]

    monkeypatch.delenv(SIM_FAULTS_ENV)
    outcome = Runner(store).resume(RUN_ID)
    assert not outcome.interrupted
    finished_with_one_submission(store, scored=True)
    assert_trace_intact(store.paths(RUN_ID).trace, resumes=2)


def test_slow_submit_past_timeout_and_settle_is_never_sent_twice(tmp_path: Path, before_submit: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The server takes the submission 3 s after it arrived, when the client (1 s timeout) has given up and
    watched wallet-submissions for another second. Sending again then would submit the revision twice; the agent
    stops with a resumable error instead, and the resume finds the submission on the server."""
    rules = [FaultRule(endpoint="submit_result", kind="slow", delay_s=3.0)]
    store, probe = resume_copy(before_submit, tmp_path / "runs", rules, monkeypatch)
    with pytest.raises(FlockSubmissionUncertainError, match="may still be working on it"):
        Runner(store, toolbox_factory=probe).resume(RUN_ID)
    assert probe.injected == [("submit_result", "slow")]
    monkeypatch.delenv(SIM_FAULTS_ENV)
    Runner(store).resume(RUN_ID)
    finished_with_one_submission(store, scored=True)


def test_submit_once_never_resends_a_request_the_server_may_still_be_processing(tmp_path: Path) -> None:
    """The same at the ledger level, against a simulator that outlives the call: the late submission lands
    while the caller has stopped, and the next call reconciles it instead of sending it again."""
    from tools.flock.ledger import SubmissionLedger, submit_once
    from tools.flock.simulator import SimulatorServer
    from tools.flock.simulator.testing import FAST_RETRY, write_task_folder

    revision = "b" * 40
    with SimulatorServer([write_task_folder(tmp_path / "task", task_id=3)]) as sim, \
            sim.client(timeout=0.5, retry=FAST_RETRY) as client:
        ledger = SubmissionLedger.in_run_dir(tmp_path / "run")
        sim.add_faults(FaultRule(endpoint="submit_result", kind="slow", delay_s=2.0))
        with pytest.raises(FlockSubmissionUncertainError, match="'sending'"):
            submit_once(client, ledger, 3, "me/task-3-x", "qwen1.5", "CPU", revision, settle_s=0.5)
        deadline = time.monotonic() + 10
        while not sim.store.submissions(3) and time.monotonic() < deadline:
            time.sleep(0.1)
        receipt = submit_once(client, ledger, 3, "me/task-3-x", "qwen1.5", "CPU", revision, settle_s=0.5)
        assert receipt.source == "reconciled"
        assert [s["revision"] for s in sim.store.submissions(3)] == [revision]


def test_fault_plan_from_the_environment_is_checked(tmp_path: Path, task_dir: Path, tiny_model_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIM_FAULTS_ENV, json.dumps([{"endpoint": "nowhere", "kind": "drop"}]))
    config = fault_config(tmp_path, task_dir, tiny_model_dir)
    with pytest.raises(Exception, match=r"SYNTHGEN_SIM_FAULTS: 0\.endpoint: Input should be"):
        Runner(RunStore(config.runs_dir)).start(config, run_id=RUN_ID)


# ----- one whole run through all of it ---------------------------------------------------------------------------
STORM = [
    *(FaultRule(endpoint="get_task", kind=k, status=503, retry_after=0.05, delay_s=1.5)
      for k in ("rate_limit", "server_error", "slow", "drop", "lose_response")),
    *(FaultRule(endpoint="storage", kind=k, status=502, retry_after=0.05, delay_s=1.5)
      for k in ("rate_limit", "server_error", "drop", "truncate", "expire_link", "slow")),
    *(FaultRule(endpoint="submit_result", kind=k, retry_after=0.05) for k in ("rate_limit", "server_error",
                                                                              "lose_response")),
    *(FaultRule(endpoint="wallet_submissions", kind=k, retry_after=0.05, delay_s=1.5)
      for k in ("rate_limit", "server_error", "drop", "slow", "lose_response")),
    FaultRule(endpoint="request_assignment", kind="rate_limit", retry_after=0.05),
    FaultRule(endpoint="request_assignment", kind="drop"),
    FaultRule(endpoint="update_assignment", kind="server_error"),
    FaultRule(endpoint="update_assignment", kind="lose_response"),
]


@pytest.mark.slow
def test_a_whole_run_through_every_fault_at_once(tmp_path: Path, task_dir: Path, tiny_model_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIM_FAULTS_ENV, faults_env(*STORM))
    config = tiny_config(tmp_path, task_dir, tiny_model_dir, overrides={
        "budget": {"max_iterations": 1}, "task": {**FAST_CLIENT, "retry_attempts": 8}})
    probe = SimulatorProbe()
    store = RunStore(config.runs_dir)
    outcome = Runner(store, toolbox_factory=probe).start(config, run_id=RUN_ID)
    assert not outcome.interrupted
    assert sorted(probe.injected) == sorted((r.endpoint, r.kind) for r in STORM)
    assert probe.pending == []
    finished_with_one_submission(store, scored=True)
    assert_trace_intact(outcome.paths.trace, resumes=0)


def test_a_test_comparison_that_fails_after_the_submission_leaves_the_result_standing(
        tmp_path: Path, before_submit: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: a prediction that crashed sqlglot in the finish stage failed a 71-minute run after its
    submission. The submission stands: the run finishes, with the failure in its state and trace."""
    from agent.pipeline.evaluation import Evaluator

    def crash(self: Evaluator, adapter_id: str | None, max_seconds: float | None = None) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    copy_run(before_submit, RUN_ID, tmp_path / "runs")
    monkeypatch.setattr(Evaluator, "compare_on_test", crash)
    store = RunStore(tmp_path / "runs")
    outcome = Runner(store).resume(RUN_ID)
    assert not outcome.interrupted
    state = finished_with_one_submission(store, scored=True)
    assert state["test_report"] is None
    assert "the test comparison failed after the submission: RecursionError" in state["error"]
    events = assert_trace_intact(store.paths(RUN_ID).trace, resumes=1)
    assert any(e["type"] == "error" and e["data"].get("tool") == "compare_on_test" for e in events)
    assert store.get(RUN_ID)["status"] == "finished"
