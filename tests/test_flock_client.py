"""The FedLedger client against the simulator over real HTTP on loopback, with injected faults."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tools.flock.client import FedLedgerClient, RetryPolicy, _check_response, jsonl_sanity_problem, redact_url
from tools.flock.errors import (
    FlockAuthError,
    FlockBadRequestError,
    FlockDownloadError,
    FlockNotFoundError,
    FlockRateLimitError,
    FlockServerError,
    FlockTransportError,
)
from tools.flock.simulator import FaultRule, SimulatorConfig, SimulatorServer
from tools.flock.simulator.testing import FAST_RETRY, ManualClock, fresh_node_client, write_task_folder

TASK = 7


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    # 01:00 UTC today: tests move hours forward and must stay within one UTC day (the two-a-day limit)
    return ManualClock(datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0, tzinfo=None))


@pytest.fixture(scope="module")
def sim(tmp_path_factory, clock):
    folder = write_task_folder(tmp_path_factory.mktemp("task"), task_id=TASK)
    with SimulatorServer([folder], clock=clock, config=SimulatorConfig(assignment_interval_s=0)) as server:
        yield server


@pytest.fixture
def client(sim):
    """A fresh wallet per test, so daily limits and submissions never leak between tests."""
    with fresh_node_client(sim) as c:
        yield c


def test_get_task_accepts_int_and_string_ids_without_a_key(sim):
    with FedLedgerClient(sim.base_url, api_key="", retry=FAST_RETRY) as anonymous:
        assert not anonymous.has_api_key
        by_int, by_str = anonymous.get_task(TASK), anonymous.get_task(str(TASK))
    assert by_int.id == by_str.id == TASK
    assert by_int.status == "submission_phase"
    assert by_int.data.context_length == 1024 and by_int.data.max_params == 1_000_000_000
    assert by_int.data.training_set_url and "/storage/7/training_set.jsonl?" in by_int.data.training_set_url
    assert by_int.data.training_set_key is None  # /tasks/get replaces keys with the presigned link


def test_unknown_task_is_a_typed_not_found(client):
    with pytest.raises(FlockNotFoundError) as info:
        client.get_task(999)
    assert info.value.status_code == 404 and info.value.detail == "Task not found"
    assert "GET /tasks/get failed with HTTP 404: Task not found" in str(info.value)


def test_list_tasks_returns_raw_keys(client):
    (task,) = client.list_tasks()
    assert task.data.training_set_key == "training_set.jsonl" and task.data.training_set_url is None
    assert client.list_tasks(status="finalized") == []


def test_429_with_retry_after_is_honoured(sim, client):
    sim.add_faults(FaultRule(endpoint="get_task", kind="rate_limit", retry_after=0.3))
    start = time.monotonic()
    assert client.get_task(TASK).id == TASK
    assert time.monotonic() - start >= 0.3
    assert sim.faults.injected[-1] == ("get_task", "rate_limit")


def test_retry_after_beyond_the_cap_is_raised_not_waited(sim, client):
    sim.add_faults(FaultRule(endpoint="get_task", kind="rate_limit", retry_after=3600))
    start = time.monotonic()
    with pytest.raises(FlockRateLimitError) as info:
        client.get_task(TASK)
    assert info.value.retry_after == 3600 and time.monotonic() - start < 1.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_to_success(sim, client, status):
    sim.add_faults(FaultRule(endpoint="wallet_submissions", kind="server_error", status=status, times=2))
    assert client.wallet_submissions(TASK) == []
    assert sim.faults.pending() == []


def test_persistent_server_error_ends_in_a_typed_error(sim, client):
    sim.add_faults(FaultRule(endpoint="get_task", kind="server_error", status=502, times=10))
    with pytest.raises(FlockServerError) as info:
        client.get_task(TASK)
    assert info.value.status_code == 502 and "502" in str(info.value)
    assert len(sim.faults.pending()) == 1 and sim.faults.pending()[0].times == 10 - FAST_RETRY.max_attempts


def test_read_timeout_is_retried(sim, client):
    sim.add_faults(FaultRule(endpoint="get_task", kind="slow", delay_s=1.5))
    with FedLedgerClient(sim.base_url, retry=FAST_RETRY, timeout=0.4) as impatient:
        assert impatient.get_task(TASK).id == TASK


def test_dropped_connection_is_retried(sim, client):
    sim.add_faults(FaultRule(endpoint="list_tasks", kind="drop", times=2))
    assert len(client.list_tasks()) == 1


def test_dropped_connections_everywhere_end_in_a_transport_error(sim, client):
    sim.add_faults(FaultRule(endpoint="list_tasks", kind="drop", times=10))
    with pytest.raises(FlockTransportError, match="GET /tasks/list: RemoteProtocolError"):
        client.list_tasks()


def test_connection_refused_is_a_transport_error():
    with FedLedgerClient("http://127.0.0.1:9/api/v1", retry=RetryPolicy(max_attempts=2, initial_wait_s=0,
                                                                       jitter_s=0)) as nowhere:
        with pytest.raises(FlockTransportError, match="ConnectError"):
            nowhere.get_task(1)
        assert nowhere.health() is False


def test_missing_key_fails_before_sending(sim, monkeypatch):
    monkeypatch.delenv("FLOCK_API_KEY", raising=False)
    with FedLedgerClient(sim.base_url, retry=FAST_RETRY) as keyless, \
            pytest.raises(FlockAuthError, match="FLOCK_API_KEY"):
        keyless.wallet_submissions(TASK)


def test_key_comes_from_the_environment(sim, monkeypatch):
    monkeypatch.setenv("FLOCK_API_KEY", sim.node_api_key)
    monkeypatch.setenv("FLOCK_API_BASE_URL", sim.base_url)
    with FedLedgerClient(retry=FAST_RETRY) as from_env:
        assert from_env.base_url == sim.base_url
        assert from_env.wallet_submissions(TASK) is not None


def test_default_base_url_is_production(monkeypatch):
    monkeypatch.delenv("FLOCK_API_BASE_URL", raising=False)
    with FedLedgerClient() as default:
        assert default.base_url == "https://fed-ledger-prod.flock.io/api/v1"


def test_auth_errors_are_typed_and_never_leak_the_key(sim, caplog):
    secret = "flk_super_secret_value_123"
    caplog.set_level(logging.DEBUG)
    with FedLedgerClient(sim.base_url, secret, retry=FAST_RETRY) as wrong:
        assert secret not in repr(wrong)
        with pytest.raises(FlockAuthError) as info:
            wrong.submit_result(TASK, "me/repo", "qwen1.5", "CPU", "a" * 40)
    assert info.value.status_code == 401 and info.value.detail == "Invalid API key"
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in caplog.text


def test_a_validator_key_cannot_submit(sim):
    with FedLedgerClient(sim.base_url, sim.validator_api_key, retry=FAST_RETRY) as validator, \
            pytest.raises(FlockAuthError, match="not staked as a training node on task 7"):
        validator.submit_result(TASK, "me/repo", "qwen1.5", "CPU", "a" * 40)


def test_bad_request_is_not_retried(sim, client):
    with pytest.raises(FlockBadRequestError) as info:
        client.submit_result(TASK, "", "qwen1.5", "CPU", "a" * 40)
    assert info.value.status_code == 422 and "hg_repo_id" in info.value.detail


def test_wallet_submissions_walks_every_page(sim, client):
    for n in range(2):
        client.submit_result(TASK, f"me/repo-{n}", "qwen1.5", "CPU", f"{n}" * 40)
    assert client.wallet_submissions_page(TASK, page=1, size=1).pages == 2
    items = client.wallet_submissions(TASK, size=1)
    assert {i.hg_repo_id for i in items} == {"me/repo-0", "me/repo-1"}
    assert all(i.link and i.link.startswith("https://huggingface.co/me/repo-") for i in items)


# ----- downloads ---------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_is_atomic_and_records_sha256(sim, client, tmp_path):
    dest = tmp_path / "data" / "train.jsonl"
    result = client.download_training_set(TASK, dest)
    source = sim.store.folder(TASK).files["training_set"]
    assert dest.read_bytes() == source.read_bytes()
    assert result.sha256 == _sha256(dest) and result.size == dest.stat().st_size and result.attempts == 1
    assert (tmp_path / "data" / "train.jsonl.sha256").read_text() == f"{result.sha256}  train.jsonl\n"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["train.jsonl", "train.jsonl.sha256"]


@pytest.mark.parametrize("kind", ["truncate", "drop", "server_error", "rate_limit"])
def test_download_faults_are_retried_to_a_complete_file(sim, client, tmp_path, kind):
    sim.add_faults(FaultRule(endpoint="storage", kind=kind, retry_after=0.05))
    dest = tmp_path / "train.jsonl"
    result = client.download_training_set(TASK, dest)
    assert result.attempts == 2
    assert _sha256(dest) == _sha256(sim.store.folder(TASK).files["training_set"])


def test_expired_link_fault_fetches_the_task_again(sim, client, tmp_path):
    task = client.get_task(TASK)
    sim.add_faults(FaultRule(endpoint="storage", kind="expire_link"))
    before = len(sim.faults.injected)
    result = client.download_training_set(TASK, tmp_path / "train.jsonl", task=task)
    assert result.attempts == 2 and sim.faults.injected[before:] == [("storage", "expire_link")]


def test_naturally_expired_link_is_refreshed(sim, client, clock, tmp_path):
    stale = client.get_task(TASK)
    clock.advance(hours=2)  # past the 1 h link lifetime
    try:
        with httpx.Client() as raw:
            expired = raw.get(stale.data.training_set_url or "")
        assert expired.status_code == 403 and b"Request has expired" in expired.content
        result = client.download_training_set(TASK, tmp_path / "train.jsonl", task=stale)
        assert result.attempts == 2
    finally:
        clock.advance(hours=-2)


def test_persistent_truncation_fails_without_touching_the_destination(sim, client, tmp_path):
    dest = tmp_path / "train.jsonl"
    dest.write_text("previous version\n")
    sim.add_faults(FaultRule(endpoint="storage", kind="truncate", times=10))
    with pytest.raises(FlockDownloadError, match="cut off"):
        client.download_training_set(TASK, dest)
    assert dest.read_text() == "previous version\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # no temp file left behind


def test_size_cap_refuses_before_reading(sim, client, tmp_path):
    with pytest.raises(FlockDownloadError, match="over the 1000-byte download cap"):
        client.download_training_set(TASK, tmp_path / "train.jsonl", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_error_messages_hide_presigned_signatures(sim, client, tmp_path):
    sim.add_faults(FaultRule(endpoint="storage", kind="server_error", status=503, times=10))
    with pytest.raises(FlockDownloadError) as info:
        client.download_training_set(TASK, tmp_path / "train.jsonl")
    assert "X-Flock-Signature" not in str(info.value) and "/storage/7/training_set.jsonl?…" in str(info.value)


def test_html_content_type_is_refused():
    response = httpx.Response(200, headers={"content-type": "text/html; charset=utf-8"})
    with pytest.raises(FlockDownloadError, match="content type 'text/html' is not a JSONL dataset"):
        _check_response(response, "https://host/x", 1000)


def test_redact_url_drops_the_query():
    assert redact_url("https://b.s3.amazonaws.com/7/t.jsonl?X-Amz-Signature=abc") == \
        "https://b.s3.amazonaws.com/7/t.jsonl?…"


@pytest.mark.parametrize(("content", "problem"), [
    (b"", "empty"),
    (b"\n\n", "blank"),
    (b"<html>oops</html>\n", "line 1 is not a JSON object"),
    (b'{"a": 1}\n{"b": 2', "cut off"),
    (b"[1, 2]\n", "got a JSON list"),
    (b'{"a": 1}\n{"b": 2}\n', None),
    (b'{"a": 1}', None),
])
def test_jsonl_sanity(tmp_path, content, problem):
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    found = jsonl_sanity_problem(path)
    assert (found is None) if problem is None else (problem in (found or ""))
