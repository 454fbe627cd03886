"""The simulator under load (issue 9 item 5): 50 concurrent clients, all through the real FedLedger client, with
faults sprinkled in. Twenty nodes each fetch the task, download the training set, submit three revisions through
their own submission ledger and read their submissions back; five more threads share one node's ledger and all
submit the same revision; twenty-five validators take assignments, download validation sets and post results.
Afterwards the state must be exact: no lost or duplicated submission, the two-a-day limit enforced to the
submission, every submission validated at most ``validations_per_submission`` times, by validators only."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools.flock.client import FedLedgerClient, RetryPolicy
from tools.flock.errors import FlockError, FlockNoAssignmentError, FlockSubmissionLimitError
from tools.flock.ledger import SubmissionLedger, submit_once
from tools.flock.simulator import FaultRule, SimulatorConfig, SimulatorServer
from tools.flock.simulator.testing import write_task_folder

TASK = 11
NODES, SHARED, VALIDATORS = 20, 5, 25
#: More attempts than faults per endpoint (nine), since under load one client may meet them all in a row.
PATIENT = RetryPolicy(max_attempts=12, initial_wait_s=0.01, max_wait_s=0.05, jitter_s=0.01, max_retry_after_s=5)


@dataclass
class NodeOutcome:
    sha: str = ""
    sent: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatorServer]:
    folder = write_task_folder(tmp_path / "task", task_id=TASK)
    config = SimulatorConfig(assignment_interval_s=0, validations_per_submission=2)
    with SimulatorServer([folder], state_path=tmp_path / "state.sqlite", publisher_root=tmp_path / "pub",
                         config=config) as server:
        yield server


def test_fifty_clients_with_faults_keep_the_simulator_exact(sim: SimulatorServer, tmp_path: Path) -> None:
    nodes = [sim.create_api_key("node") for _ in range(NODES)]
    shared_key = sim.create_api_key("node")
    validators = [sim.create_api_key("validator") for _ in range(VALIDATORS)]
    training = sim.store.folder(TASK).files["training_set"].read_bytes()
    # Transient faults on every endpoint the clients use; retries (and the ledger) must absorb them.
    sim.add_faults(*(FaultRule(endpoint=e, kind=k, times=3, retry_after=0.01, status=503)
                     for e in ("get_task", "wallet_submissions", "request_assignment", "update_assignment", "storage")
                     for k in ("rate_limit", "server_error", "drop")),
                   FaultRule(endpoint="submit_result", kind="lose_response", times=4),
                   FaultRule(endpoint="submit_result", kind="rate_limit", times=4, retry_after=0.01))
    barrier = threading.Barrier(NODES + SHARED + VALIDATORS, timeout=60)
    shared_ledger = SubmissionLedger(tmp_path / "shared" / "submissions.sqlite")
    submitting_done = threading.Event()

    def client(key: str) -> FedLedgerClient:
        return FedLedgerClient(sim.base_url, key, timeout=10, retry=PATIENT)

    def node(index: int) -> NodeOutcome:
        ledger = SubmissionLedger(tmp_path / f"node-{index}" / "submissions.sqlite")
        outcome = NodeOutcome()
        with client(nodes[index]) as api:
            barrier.wait()
            assert api.get_task(TASK).id == TASK
            outcome.sha = api.download_training_set(TASK, tmp_path / f"node-{index}" / "train.jsonl").sha256
            for n in range(3):
                revision = hashlib.sha1(f"{index}-{n}".encode()).hexdigest()
                try:
                    submit_once(api, ledger, TASK, f"node{index}/task-{TASK}-m", "qwen1.5", "CPU", revision,
                                settle_s=0.5)
                    outcome.sent.append(revision)
                except FlockSubmissionLimitError:
                    outcome.refused.append(revision)
            outcome.listed = sorted(item.revision or "" for item in api.wallet_submissions(TASK))
        return outcome

    def shared(index: int) -> str:
        with client(shared_key) as api:
            barrier.wait()
            receipt = submit_once(api, shared_ledger, TASK, f"shared/task-{TASK}-m", "qwen1.5", "CPU", "f" * 40,
                                  settle_s=0.5)
            return receipt.source

    def validator(index: int) -> list[int]:
        taken: list[int] = []
        rng = random.Random(index)
        with client(validators[index]) as api:
            barrier.wait()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    assignment = api.request_validation_assignment(TASK)
                except FlockNoAssignmentError:
                    if submitting_done.is_set():
                        break
                    time.sleep(0.05)
                    continue
                except FlockError:  # a fault that outlasted the retries: ask again
                    continue
                api.download_validation_set(assignment, tmp_path / f"val-{index}-{assignment.id}.jsonl")
                api.update_validation_assignment(assignment.id, "completed", {"loss": rng.uniform(0.5, 2.0)})
                taken.append(assignment.task_submission.id)
        return taken

    with ThreadPoolExecutor(NODES + SHARED + VALIDATORS) as pool:
        validator_jobs = [pool.submit(validator, i) for i in range(VALIDATORS)]
        node_jobs = [pool.submit(node, i) for i in range(NODES)]
        shared_jobs = [pool.submit(shared, i) for i in range(SHARED)]
        node_results = [job.result(timeout=120) for job in node_jobs]
        shared_sources = sorted(job.result(timeout=120) for job in shared_jobs)
        submitting_done.set()
        validated = [sid for job in validator_jobs for sid in job.result(timeout=120)]

    assert not sim.faults.pending(), "every injected fault was hit"
    submissions = sim.store.submissions(TASK)
    by_wallet = Counter(s["wallet"] for s in submissions)
    assert len(submissions) == NODES * 2 + 1
    assert len({(s["wallet"], s["revision"]) for s in submissions}) == len(submissions)  # no duplicate
    assert max(by_wallet.values()) == 2  # the daily limit, exactly
    for result in node_results:
        assert result.sha == hashlib.sha256(training).hexdigest()
        assert len(result.sent) == 2 and len(result.refused) == 1
        assert result.listed == sorted(result.sent)
    assert shared_sources.count("sent") + shared_sources.count("reconciled") == 1  # one sender, four from the ledger
    assert shared_sources.count("ledger") == SHARED - 1
    per_submission = Counter(validated)
    assert max(per_submission.values()) <= 2  # validations_per_submission
    assert set(per_submission) <= {s["id"] for s in submissions}
    scored = [s for s in submissions if s["validation_status"] == "validated"]
    assert len(scored) == sum(1 for n in per_submission.values() if n == 2)
