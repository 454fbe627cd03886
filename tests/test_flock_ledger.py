"""submit_once: at most one submission per repo and revision, through faults, lost responses and crashes."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

from tools.flock.client import FedLedgerClient
from tools.flock.errors import FlockSubmissionLimitError, FlockSubmissionUncertainError
from tools.flock.ledger import SubmissionLedger, SubmissionState, match_submission, submit_once
from tools.flock.schemas import WalletSubmission
from tools.flock.simulator import FaultRule, SimulatorServer
from tools.flock.simulator.testing import FAST_RETRY, fresh_node_client, write_task_folder

TASK = 7
REPO = "alice/task-7-HuggingFaceTB-SmolLM2-135M-Instruct"
REV = "1" * 40


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimulatorServer([write_task_folder(tmp_path_factory.mktemp("task"), task_id=TASK)]) as server:
        yield server


@pytest.fixture
def client(sim):
    with fresh_node_client(sim) as c:
        yield c


@pytest.fixture
def ledger(tmp_path) -> SubmissionLedger:
    return SubmissionLedger.in_run_dir(tmp_path / "run")


def on_server(sim, client, revision: str = REV) -> int:
    return sum(1 for item in client.wallet_submissions(TASK) if item.revision == revision)


def submit(client, ledger, revision: str = REV, settle_s: float = 0.2):
    return submit_once(client, ledger, TASK, REPO, "qwen1.5", "CPU", revision, settle_s=settle_s)


def test_second_call_answers_from_the_ledger(sim, client, ledger):
    first = submit(client, ledger)
    second = submit(client, ledger)
    assert (first.source, second.source) == ("sent", "ledger")
    assert first.response and first.response["data"]["revision"] == REV
    assert on_server(sim, client) == 1
    (entry,) = ledger.entries()
    assert entry.state == SubmissionState.SENT and entry.task_id == TASK


def test_lost_response_is_reconciled_not_resent(sim, client, ledger):
    sim.add_faults(FaultRule(endpoint="submit_result", kind="lose_response"))
    receipt = submit(client, ledger)
    assert receipt.source == "reconciled"
    assert on_server(sim, client) == 1
    assert ledger.get(REPO, REV).state == SubmissionState.SENT  # type: ignore[union-attr]


@pytest.mark.parametrize(("kind", "status"), [("server_error", 500), ("server_error", 503), ("drop", 503)])
def test_failed_sends_are_checked_then_resent_once(sim, client, ledger, kind, status):
    sim.add_faults(FaultRule(endpoint="submit_result", kind=kind, status=status))
    assert submit(client, ledger).source == "sent"
    assert on_server(sim, client) == 1


def test_timed_out_send_that_lands_late_is_not_resent(sim, ledger):
    # The server is still working on the request when the client gives up: waiting a settle window finds it.
    sim.add_faults(FaultRule(endpoint="submit_result", kind="slow", delay_s=0.8))
    with FedLedgerClient(sim.base_url, sim.create_api_key("node"), timeout=0.5, retry=FAST_RETRY) as impatient:
        receipt = submit_once(impatient, ledger, TASK, REPO, "qwen1.5", "CPU", REV)
        assert receipt.source == "reconciled"
        assert on_server(sim, impatient) == 1


def test_rate_limited_submit_is_retried(sim, client, ledger):
    sim.add_faults(FaultRule(endpoint="submit_result", kind="rate_limit", retry_after=0.05))
    assert submit(client, ledger).source == "sent"
    assert on_server(sim, client) == 1


def test_crash_after_the_server_accepted_is_reconciled_on_resume(sim, client, ledger):
    # A previous process wrote "sending", the server took the submission, and the process died.
    ledger.mark_sending(TASK, REPO, REV, "qwen1.5", "CPU")
    client.submit_result(TASK, REPO, "qwen1.5", "CPU", REV)
    resumed = SubmissionLedger(ledger.path)
    assert submit(client, resumed).source == "reconciled"
    assert on_server(sim, client) == 1


def test_crash_before_the_request_left_sends_on_resume(sim, client, ledger):
    ledger.mark_sending(TASK, REPO, REV, "qwen1.5", "CPU")
    assert submit(client, SubmissionLedger(ledger.path)).source == "sent"
    assert on_server(sim, client) == 1


def test_unreadable_server_list_on_resume_refuses_to_guess(sim, client, ledger):
    ledger.mark_sending(TASK, REPO, REV, "qwen1.5", "CPU")
    sim.add_faults(FaultRule(endpoint="wallet_submissions", kind="server_error", status=503, times=10))
    with pytest.raises(FlockSubmissionUncertainError, match="not sending again"):
        submit(client, ledger)
    sim.faults.clear()
    assert on_server(sim, client) == 0
    assert ledger.get(REPO, REV).state == SubmissionState.SENDING  # type: ignore[union-attr]


def test_unconfirmable_send_stays_sending_and_resumes_without_duplicates(sim, client, ledger):
    sim.add_faults(FaultRule(endpoint="submit_result", kind="lose_response", times=10),
                   FaultRule(endpoint="wallet_submissions", kind="server_error", status=502, times=100))
    with pytest.raises(FlockSubmissionUncertainError, match="'sending'"):
        submit(client, ledger)
    sim.faults.clear()
    assert ledger.get(REPO, REV).state == SubmissionState.SENDING  # type: ignore[union-attr]
    assert submit(client, ledger).source == "reconciled"
    assert on_server(sim, client) == 1


def test_third_submission_of_the_day_is_refused_and_recorded(sim, client, ledger):
    submit(client, ledger, "a" * 40)
    submit(client, ledger, "b" * 40)
    with pytest.raises(FlockSubmissionLimitError, match="twice a day") as info:
        submit(client, ledger, "c" * 40)
    assert info.value.status_code == 429 and info.value.retry_after and info.value.retry_after <= 86400
    assert ledger.get(REPO, "c" * 40).state == SubmissionState.REFUSED  # type: ignore[union-attr]
    assert on_server(sim, client, "c" * 40) == 0


def test_same_revision_for_another_task_is_refused(sim, client, ledger):
    submit(client, ledger)
    with pytest.raises(ValueError, match="in the ledger for task 7, not 8"):
        submit_once(client, ledger, 8, REPO, "qwen1.5", "CPU", REV)


def test_concurrent_callers_send_once(sim, client, ledger):
    outcomes: list[str] = []

    def worker() -> None:
        outcomes.append(submit(client, SubmissionLedger(ledger.path)).source)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ledger", "ledger", "ledger", "sent"]
    assert on_server(sim, client) == 1


def test_real_api_items_match_by_link_and_time():
    since = datetime(2025, 4, 1, 12, 0)
    old = WalletSubmission(link=f"https://huggingface.co/{REPO}", submitted_at=since - timedelta(hours=5))
    new = WalletSubmission(link=f"https://huggingface.co/{REPO}", submitted_at=since + timedelta(seconds=3))
    other = WalletSubmission(link="https://huggingface.co/bob/x", submitted_at=since + timedelta(seconds=3))
    assert match_submission([old, other], REPO, REV, since) is None
    assert match_submission([old, new, other], REPO, REV, since) is new


def test_revision_bearing_items_match_exactly():
    since = datetime(2025, 4, 1, 12, 0)
    item = WalletSubmission(hg_repo_id=REPO, revision="f" * 40, submitted_at=since + timedelta(seconds=1))
    assert match_submission([item], REPO, REV, since) is None
    assert match_submission([item], REPO, "f" * 40, since) is item
