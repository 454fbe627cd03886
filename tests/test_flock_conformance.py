"""Reference conformance: the requests FLock's own scripts send, replayed against the simulator over HTTP.

The request shapes are transcribed from FLock-io/testnet-training-node-quickstart ``utils/flock_api.py`` and
``full_automation.py`` (QS), FLock-io/llm-loss-validator ``src/client/fed_ledger.py`` and ``src/validate.py``
``loop`` (LV), FLock-io/FLock-validator (FV) and the community SDK flocky (FLOCKY), as FLOCK_API.md cites them.
They use ``requests`` the way those scripts do, so nothing of the project's client is involved.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests

from tools.flock.simulator import SimulatorConfig, SimulatorServer
from tools.flock.simulator.testing import ManualClock

LOOKUP_RATE_LIMIT = {"detail": "Rate limit reached for validation assignment lookup: 1 per 3 minutes"}
NOTHING_TO_VALIDATE = {"detail": "No task submissions available to validate"}
NOT_VALIDATING = {"detail": "Validation assignment is not in validating status"}


@pytest.fixture
def clock() -> ManualClock:
    # 01:00 UTC today: tests move hours forward and must stay within one UTC day (the two-a-day limit)
    return ManualClock(datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0, tzinfo=None))


@pytest.fixture
def sim(clock):
    # The demo task with the real network's rule of one assignment lookup per 3 minutes.
    with SimulatorServer(clock=clock, config=SimulatorConfig(assignment_interval_s=180)) as server:
        yield server


@pytest.fixture
def task_id(sim) -> str:
    """QS reads TASK_ID from the environment, so it travels as a string."""
    return str(sim.task_ids[0])


class QuickstartNode:
    """The training node's calls as QS main makes them."""

    def __init__(self, base_url: str, api_key: str):
        self.base_url, self.api_key = base_url, api_key

    def get_task(self, task_id: str) -> dict:
        return requests.request("GET", f"{self.base_url}/tasks/get?task_id={task_id}", timeout=30).json()

    def submit_task(self, task_id: str, data: dict) -> requests.Response:
        payload = json.dumps({"task_id": task_id, "data": data})
        headers = {"flock-api-key": self.api_key, "Content-Type": "application/json"}
        return requests.request("POST", f"{self.base_url}/tasks/submit-result", headers=headers, data=payload,
                                timeout=30)


class FedLedger:
    """LV's client: raw responses back to the loop, which compares error bodies as dicts."""

    def __init__(self, base_url: str, api_key: str):
        self.url = base_url
        self.headers = {"flock-api-key": api_key, "Content-Type": "application/json"}

    def request_validation_assignment(self, task_id: str) -> requests.Response:
        return requests.post(f"{self.url}/tasks/request-validation-assignment/{task_id}", headers=self.headers,
                             timeout=30)

    def submit_validation_result(self, assignment_id: int, loss: float, gpu_type: str) -> requests.Response:
        return requests.post(f"{self.url}/tasks/update-validation-assignment/{assignment_id}", headers=self.headers,
                             json={"status": "completed", "data": {"loss": loss, "gpu_type": gpu_type}}, timeout=30)

    def mark_assignment_as_failed(self, assignment_id: int) -> requests.Response:
        return requests.post(f"{self.url}/tasks/update-validation-assignment/{assignment_id}", headers=self.headers,
                             json={"status": "failed"}, timeout=30)


def full_submission(n: int = 1) -> dict:
    return {"hg_repo_id": f"alice/task-1-Qwen-Qwen2.5-0.5B-Instruct-{n}", "base_model": "qwen1.5",
            "gpu_type": "NVIDIA H100 80GB HBM3", "revision": f"{n:x}" * 40}


# ----- training node (QS) --------------------------------------------------------------------------------------
def test_quickstart_node_fetches_downloads_and_submits(sim, task_id, tmp_path):
    node = QuickstartNode(sim.base_url, sim.node_api_key)
    task = node.get_task(task_id)  # no flock-api-key header, no status check, as QS does
    assert task["status"] == "submission_phase"
    context_length, max_params = task["data"]["context_length"], task["data"]["max_params"]
    assert isinstance(context_length, int) and isinstance(max_params, int)

    response = requests.get(task["data"]["training_set_url"], stream=True, timeout=30)
    with (tmp_path / "demo_data.jsonl").open("wb") as handle:
        for chunk in response.iter_content(chunk_size=8192):
            handle.write(chunk)
    source = sim.store.folder(int(task_id)).files["training_set"]
    assert (tmp_path / "demo_data.jsonl").read_bytes() == source.read_bytes()

    response = node.submit_task(task_id, full_submission())
    assert response.status_code == 200, response.text
    assert isinstance(response.json(), dict)


@pytest.mark.parametrize("data", [
    {"hg_repo_id": "alice/repo"},                                   # 2024-04 DOC
    {"hg_repo_id": "alice/repo", "base_model": "gemma"},            # QS-old a71db29
    {"hg_repo_id": "alice/repo", "base_model": "qwen1.5", "gpu_type": "Error retrieving GPU type: no CUDA"},
])
def test_older_submission_shapes_are_accepted(sim, task_id, data):
    assert QuickstartNode(sim.base_url, sim.node_api_key).submit_task(task_id, data).status_code == 200


def test_quickstart_error_text_carries_the_reason(sim, task_id):
    node = QuickstartNode(sim.base_url, sim.node_api_key)
    for n in (1, 2):
        assert node.submit_task(task_id, full_submission(n)).status_code == 200
    third = node.submit_task(task_id, full_submission(3))
    assert third.status_code != 200
    # QS raises Exception(f"Failed to submit task: {response.text}"): the text must say why.
    assert "only allowed to submit models twice a day" in f"Failed to submit task: {third.text}"


# ----- validator (LV loop) -------------------------------------------------------------------------------------
def test_validator_loop_round(sim, task_id, clock, tmp_path):
    ledger = FedLedger(sim.base_url, sim.validator_api_key)
    resp = ledger.request_validation_assignment(task_id)
    assert resp.status_code != 200 and resp.json() == NOTHING_TO_VALIDATE

    data = full_submission()
    del data["revision"]  # a 2024 submission: LV falls back to "main"
    QuickstartNode(sim.base_url, sim.node_api_key).submit_task(task_id, data)
    resp = ledger.request_validation_assignment(task_id)
    assert resp.status_code == 200
    resp = resp.json()
    # Every field the loop reads.
    validation_set_url = resp["data"]["validation_set_url"]
    assert resp["data"]["base_model"] == "qwen1.5"
    assert resp["data"]["context_length"] > 0 and resp["data"]["max_params"] > 0
    assert resp["task_submission"]["data"]["hg_repo_id"] == data["hg_repo_id"]
    assert resp["task_submission"]["data"].get("revision", "main") == "main"
    assignment_id = resp["id"]

    download = requests.get(validation_set_url, stream=True, timeout=30)
    download.raise_for_status()
    assert download.content == sim.store.folder(int(task_id)).files["validation_set"].read_bytes()

    again = ledger.request_validation_assignment(task_id)
    assert again.status_code != 200 and again.json() == LOOKUP_RATE_LIMIT
    assert ledger.submit_validation_result(assignment_id, 0.4321, "NVIDIA H100").status_code == 200

    late = ledger.submit_validation_result(assignment_id, 0.5, "NVIDIA H100")
    assert late.status_code != 200 and late.json() == NOT_VALIDATING
    assert ledger.mark_assignment_as_failed(assignment_id).json() == NOT_VALIDATING  # LV's follow-up call

    clock.advance(minutes=3)
    assert ledger.request_validation_assignment(task_id).json() == NOTHING_TO_VALIDATE
    board = requests.get(f"{sim.base_url}/stats/models", params={"task_id": task_id, "page": 1, "size": 10},
                         timeout=30).json()
    assert board["items"][0]["rank"] == 1 and board["items"][0]["submission_phase_score"] == 0.4321


def test_validator_marks_failed(sim, task_id):
    QuickstartNode(sim.base_url, sim.node_api_key).submit_task(task_id, full_submission())
    ledger = FedLedger(sim.base_url, sim.validator_api_key)
    assignment_id = ledger.request_validation_assignment(task_id).json()["id"]
    assert ledger.mark_assignment_as_failed(assignment_id).status_code == 200


def test_every_validator_error_body_is_json(sim, task_id):
    """LV calls resp.json() on every non-200 answer: none may be HTML or empty."""
    stranger = FedLedger(sim.base_url, "flk_not_a_key")
    for response in (stranger.request_validation_assignment(task_id),
                     FedLedger(sim.base_url, sim.validator_api_key).submit_validation_result(999, 1.0, "x"),
                     FedLedger(sim.base_url, sim.validator_api_key).request_validation_assignment("999"),
                     FedLedger(sim.base_url, sim.node_api_key).request_validation_assignment(task_id)):
        assert response.status_code >= 400 and isinstance(response.json()["detail"], str)


# ----- newer validator and community tools (FV, FLOCKY) --------------------------------------------------------
def test_modular_validator_view(sim, task_id):
    headers = {"flock-api-key": sim.validator_api_key}
    tasks = requests.get(f"{sim.base_url}/tasks/list", headers=headers, timeout=30).json()
    assert isinstance(tasks, list) and tasks[0]["task_type"] == "training" and tasks[0]["id"] == int(task_id)
    QuickstartNode(sim.base_url, sim.node_api_key).submit_task(task_id, full_submission())
    resp = requests.post(f"{sim.base_url}/tasks/request-validation-assignment/{task_id}", headers=headers,
                         timeout=30).json()
    merged = {**resp["task_submission"]["data"], **resp["data"]}  # FV validation_runner
    assert {"hg_repo_id", "revision", "base_model", "context_length", "max_params", "validation_set_url",
            "gpu_type"} <= set(merged)


def test_community_sdk_reads(sim):
    assert requests.get(f"{sim.base_url}/health", timeout=30).ok
    listed = requests.get(f"{sim.base_url}/tasks/list?status=submission_phase", timeout=30).json()
    assert [t["status"] for t in listed] == ["submission_phase"]
    assert requests.get(f"{sim.base_url}/tasks/list?status=finalized", timeout=30).json() == []
    board = requests.get(f"{sim.base_url}/stats/models?task_id={listed[0]['id']}&page=1&size=50", timeout=30).json()
    assert {"items", "total", "page", "size", "pages"} <= set(board)
