"""The FLock simulator: task folders, the spec's rules and error bodies, persistence, faults, concurrency."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tools.flock.errors import (
    ASSIGNMENT_RATE_LIMIT_DETAIL,
    NO_SUBMISSIONS_DETAIL,
    NOT_VALIDATING_DETAIL,
    SUBMISSION_LIMIT_DETAIL,
)
from tools.flock.simulator import (
    DEMO_TASK_DIR,
    FaultRule,
    SimulatorConfig,
    SimulatorServer,
    TaskFolderError,
    load_task_folder,
)
from tools.flock.simulator.testing import ManualClock, write_task_folder

TASK = 7
SUBMISSION = {"hg_repo_id": "alice/task-7-x", "base_model": "qwen1.5", "gpu_type": "CPU", "revision": "a" * 40}


@pytest.fixture
def clock() -> ManualClock:
    # 01:00 UTC today: the tests move a few hours forward and must stay within one UTC day (the two-a-day limit)
    return ManualClock(datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0, tzinfo=None))


@pytest.fixture
def sim(tmp_path, clock):
    folder = write_task_folder(tmp_path / "task", task_id=TASK)
    config = SimulatorConfig(assignment_interval_s=180)
    with SimulatorServer([folder], state_path=tmp_path / "state.sqlite", publisher_root=tmp_path / "pub",
                         clock=clock, config=config) as server:
        yield server


@pytest.fixture
def http(sim):
    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        yield client


def submit(http, key: str, **data) -> httpx.Response:
    return http.post("/tasks/submit-result", json={"task_id": TASK, "data": {**SUBMISSION, **data}},
                     headers={"flock-api-key": key})


def assign(http, key: str, task_id: int | str = TASK) -> httpx.Response:
    return http.post(f"/tasks/request-validation-assignment/{task_id}", headers={"flock-api-key": key})


def update(http, key: str, assignment_id: int, body: dict) -> httpx.Response:
    return http.post(f"/tasks/update-validation-assignment/{assignment_id}", json=body,
                     headers={"flock-api-key": key})


# ----- task folders --------------------------------------------------------------------------------------------
def test_demo_task_folder_loads():
    folder = load_task_folder(DEMO_TASK_DIR)
    assert folder.files["training_set"].name == "training_set.jsonl"
    assert folder.task_json["data"]["context_length"] > 0


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: (d / "task.json").unlink(), "task.json: missing"),
    (lambda d: (d / "task.json").write_text('{"id": 7,\n "data": }'), "task.json:2:10: bad JSON"),
    (lambda d: _edit(d, lambda t: t.pop("data")), "field data: missing or not an object"),
    (lambda d: _edit(d, lambda t: t["data"].update(context_length="big")),
     "field data.context_length: must be a positive integer, got 'big'"),
    (lambda d: _edit(d, lambda t: t["data"].pop("validation_set_key")), "field data.validation_set_key: missing"),
    (lambda d: _edit(d, lambda t: t["data"].update(training_set_key="../../etc/passwd")),
     "field data.training_set_key: '../../etc/passwd' is not a file inside"),
    (lambda d: _edit(d, lambda t: t.update(id=-1)), "field id: must be a positive integer"),
    (lambda d: _edit(d, lambda t: t.update(submission_phase_ends_at="soon")),
     "field submission_phase_ends_at: not an ISO-8601 time"),
])
def test_bad_task_folders_are_refused_with_file_and_field(tmp_path, mutate, message):
    folder = write_task_folder(tmp_path / "t")
    mutate(folder)
    with pytest.raises(TaskFolderError, match="task.json") as info:
        load_task_folder(folder)
    assert message in str(info.value)


def _edit(folder: Path, change) -> None:
    task = json.loads((folder / "task.json").read_text())
    change(task)
    (folder / "task.json").write_text(json.dumps(task))


def test_flock_style_keys_resolve_to_the_file_name(tmp_path):
    folder = write_task_folder(tmp_path / "t", data={"training_set_key": "7/training_set.jsonl"})
    assert load_task_folder(folder).files["training_set"] == (folder / "training_set.jsonl").resolve()


# ----- task object and phases ----------------------------------------------------------------------------------
def test_task_object_has_the_section_5_shape(http):
    task = http.get("/tasks/get", params={"task_id": str(TASK)}).json()
    assert {"title", "description", "task_type", "data", "duration_in_seconds", "id", "status", "initialized_at",
            "submission_phase_ends_at", "final_validation_ends_at", "final_link"} <= set(task)
    assert task["status"] == "submission_phase" and task["final_link"] is None
    assert set(task["data"]) >= {"training_set_url", "max_params", "context_length"}
    assert not any(key.endswith("_key") for key in task["data"])  # the validation file stays hidden
    listed = http.get("/tasks/list").json()
    assert listed[0]["data"]["validation_set_key"] == "validation_set.jsonl"
    assert "training_set_url" not in listed[0]["data"]


def test_phases_follow_the_deadlines(sim, http, clock):
    key = sim.create_api_key("node")
    clock.advance(days=7, seconds=1)
    assert http.get("/tasks/get", params={"task_id": TASK}).json()["status"] == "final_validation"
    refused = submit(http, key)
    assert refused.status_code == 400
    assert refused.json() == {"detail": "Task 7 is not in submission phase (status: final_validation)"}
    clock.advance(days=2)
    assert http.get("/tasks/list", params={"status": "finalized"}).json()[0]["id"] == TASK


def test_unknown_task_and_route_errors_are_json(http):
    assert http.get("/tasks/get", params={"task_id": 99}).json() == {"detail": "Task not found"}
    assert http.get("/nope").json() == {"detail": "Not Found"}
    assert http.get("/tasks/get", params={"task_id": "seven"}).status_code == 422


# ----- submissions ---------------------------------------------------------------------------------------------
def test_submit_accepts_a_string_task_id_and_returns_the_submission(sim, http):
    response = http.post("/tasks/submit-result", json={"task_id": "7", "data": SUBMISSION},
                         headers={"flock-api-key": sim.node_api_key})
    assert response.status_code == 200
    body = response.json()
    assert body["task_id"] == TASK and body["data"] == SUBMISSION and body["id"] >= 1


@pytest.mark.parametrize(("headers", "status", "detail"), [
    ({}, 401, "Missing flock-api-key header"),
    ({"flock-api-key": "flk_unknown"}, 401, "Invalid API key"),
])
def test_submit_needs_a_known_key(http, headers, status, detail):
    response = http.post("/tasks/submit-result", json={"task_id": TASK, "data": SUBMISSION}, headers=headers)
    assert (response.status_code, response.json()) == (status, {"detail": detail})


def test_submit_needs_a_node_stake_on_that_task(tmp_path, clock):
    folders = [write_task_folder(tmp_path / "a", task_id=1), write_task_folder(tmp_path / "b", task_id=2)]
    with SimulatorServer(folders, clock=clock) as server, httpx.Client(base_url=server.base_url) as http:
        only_task_2 = server.create_api_key("node", [2])
        response = http.post("/tasks/submit-result", json={"task_id": 1, "data": SUBMISSION},
                             headers={"flock-api-key": only_task_2})
        assert response.json() == {"detail": "API key is not staked as a training node on task 1"}
        with pytest.raises(ValueError, match="exactly one role"):
            server.store.create_api_key("validator", [2], api_key=only_task_2)


def test_two_submissions_a_day(sim, http, clock):
    key = sim.create_api_key("node")
    assert [submit(http, key, revision=f"{n}" * 40).status_code for n in range(2)] == [200, 200]
    third = submit(http, key, revision="3" * 40)
    assert third.status_code == 429 and third.json() == {"detail": SUBMISSION_LIMIT_DETAIL}
    assert 0 < int(third.headers["retry-after"]) <= 86400
    assert submit(http, sim.create_api_key("node")).status_code == 200  # the limit is per wallet
    clock.now = clock.now.replace(hour=0, minute=0) + __import__("datetime").timedelta(days=1)
    assert submit(http, key, revision="3" * 40).status_code == 200


def test_wallet_submissions_are_per_wallet_and_paginated(sim, http):
    mine, theirs = sim.create_api_key("node"), sim.create_api_key("node")
    submit(http, mine, revision="1" * 40)
    submit(http, mine, revision="2" * 40)
    submit(http, theirs)
    page = http.get("/tasks/wallet-submissions", params={"task_id": TASK, "page": 2, "size": 1},
                    headers={"flock-api-key": mine}).json()
    assert (page["total"], page["page"], page["size"], page["pages"]) == (2, 2, 1, 2)
    (item,) = page["items"]
    assert item["revision"] == "1" * 40 and item["link"] == "https://huggingface.co/alice/task-7-x"
    assert item["submission_phase_score"] is None and item["validation_status"] == "pending"


# ----- validation protocol -------------------------------------------------------------------------------------
def test_assignment_protocol_and_exact_error_strings(sim, http, clock):
    node, validator = sim.node_api_key, sim.validator_api_key
    assert assign(http, validator).json() == {"detail": NO_SUBMISSIONS_DETAIL}
    assert assign(http, node).json() == {"detail": "API key is not staked as a validator on task 7"}
    submission_id = submit(http, node).json()["id"]
    response = assign(http, validator, task_id=str(TASK))
    assert response.status_code == 200
    assignment = response.json()
    assert assignment["status"] == "validating"
    assert assignment["task_submission"] == {"task_id": TASK, "data": SUBMISSION, "id": submission_id}
    assert assignment["data"]["base_model"] == "qwen1.5"
    assert (assignment["data"]["context_length"], assignment["data"]["max_params"]) == (1024, 1_000_000_000)
    assert "/storage/7/validation_set.jsonl?" in assignment["data"]["validation_set_url"]

    limited = assign(http, validator)
    assert limited.status_code == 429 and limited.json() == {"detail": ASSIGNMENT_RATE_LIMIT_DETAIL}
    other = sim.create_api_key("validator")
    assert update(http, other, assignment["id"], {"status": "failed"}).json() == {
        "detail": "Validation assignment belongs to another validator"}
    assert update(http, validator, assignment["id"], {"status": "completed", "data": {"loss": "low"}}).json() == {
        "detail": "data.loss must be a finite number, got 'low'"}
    done = update(http, validator, assignment["id"], {"status": "completed", "data": {"loss": 0.5, "gpu_type": "x"}})
    assert done.status_code == 200
    again = update(http, validator, assignment["id"], {"status": "failed"})
    assert again.status_code == 400 and again.json() == {"detail": NOT_VALIDATING_DETAIL}
    scored = http.get("/tasks/wallet-submissions", params={"task_id": TASK},
                      headers={"flock-api-key": node}).json()["items"][0]
    assert scored["submission_phase_score"] == 0.5 and scored["validation_status"] == "validated"
    clock.advance(minutes=3)
    assert assign(http, validator).json() == {"detail": NO_SUBMISSIONS_DETAIL}


def test_a_lapsed_assignment_is_offered_again(sim, http, clock):
    submit(http, sim.node_api_key)
    first = assign(http, sim.validator_api_key).json()
    clock.advance(hours=1, seconds=1)
    assert update(http, sim.validator_api_key, first["id"], {"status": "completed", "data": {"loss": 1.0}}).json() \
        == {"detail": NOT_VALIDATING_DETAIL}
    second = assign(http, sim.create_api_key("validator")).json()
    assert second["task_submission"]["id"] == first["task_submission"]["id"]


def test_leaderboard_ranks_each_wallets_best_score_ascending(sim, http, clock):
    wallets = {}
    for name, losses in {"a": [0.9, 0.4], "b": [0.6], "c": [0.7]}.items():
        key = sim.create_api_key("node")
        wallets[name] = sim.store.wallet_for(key)
        for n, loss in enumerate(losses):
            sid = submit(http, key, hg_repo_id=f"{name}/repo", revision=f"{n}" * 40).json()["id"]
            validator = sim.create_api_key("validator")
            assignment = assign(http, validator).json()
            assert assignment["task_submission"]["id"] == sid
            update(http, validator, assignment["id"], {"status": "completed", "data": {"loss": loss}})
    board = http.get("/stats/models", params={"task_id": TASK, "page": 1, "size": 10}).json()
    ranked = [(i["rank"], i["wallet"], i["submission_phase_score"], i["revision"]) for i in board["items"]]
    assert ranked == [(1, wallets["a"], 0.4, "1" * 40), (2, wallets["b"], 0.6, "0" * 40),
                      (3, wallets["c"], 0.7, "0" * 40)]
    clock.advance(days=10)
    assert http.get("/tasks/get", params={"task_id": TASK}).json()["final_link"] == \
        "https://huggingface.co/a/repo"


# ----- storage links -------------------------------------------------------------------------------------------
def test_storage_links_are_signed_and_expire(sim, http, clock):
    url = http.get("/tasks/get", params={"task_id": TASK}).json()["data"]["training_set_url"]
    with httpx.Client() as raw:
        ok = raw.get(url)
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/octet-stream"
        forged = raw.get(url.replace("training_set", "validation_set"))
        assert forged.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in forged.content
        bare = raw.get(url.split("?")[0])
        assert bare.status_code == 403 and forged.headers["content-type"] == "application/xml"
        clock.advance(seconds=3601)
        expired = raw.get(url)
        assert expired.status_code == 403 and b"<Message>Request has expired</Message>" in expired.content


# ----- persistence ---------------------------------------------------------------------------------------------
def test_restart_loses_nothing(tmp_path, clock):
    folder = write_task_folder(tmp_path / "task", task_id=TASK)
    state = tmp_path / "state.sqlite"
    with SimulatorServer([folder], state_path=state, publisher_root=tmp_path / "pub", clock=clock) as first, \
            httpx.Client(base_url=first.base_url) as http:
        key = first.node_api_key
        submit(http, key)
        before = http.get("/tasks/get", params={"task_id": TASK}).json()
    clock.advance(hours=5)
    with SimulatorServer([folder], state_path=state, publisher_root=tmp_path / "pub", clock=clock) as second, \
            httpx.Client(base_url=second.base_url) as http:
        items = http.get("/tasks/wallet-submissions", params={"task_id": TASK},
                         headers={"flock-api-key": key}).json()["items"]
        assert [i["revision"] for i in items] == [SUBMISSION["revision"]]
        after = http.get("/tasks/get", params={"task_id": TASK}).json()
        assert after["submission_phase_ends_at"] == before["submission_phase_ends_at"]
        assert submit(http, key, revision="b" * 40).status_code == 200
        assert submit(http, key, revision="c" * 40).status_code == 429  # yesterday's count survived


# ----- faults and admin ----------------------------------------------------------------------------------------
def test_admin_routes_need_the_token(sim):
    with httpx.Client(base_url=sim.url) as http:
        assert http.get("/admin/faults").status_code == 401
        rule = {"endpoint": "health", "kind": "server_error", "status": 502}
        added = http.post("/admin/faults", json=[rule], headers={"x-admin-token": sim.admin_token})
        assert added.json() == {"pending": 1}
        proxy_page = http.get("/api/v1/health")
        assert proxy_page.status_code == 502 and proxy_page.headers["content-type"] == "text/html"
        assert http.get("/api/v1/health").json() == {"status": "ok"}
        made = http.post("/admin/api-keys", json={"role": "node"}, headers={"x-admin-token": sim.admin_token})
        assert made.json()["wallet"].startswith("0x")
        bad = http.post("/admin/faults", json=[{"endpoint": "nowhere", "kind": "drop"}],
                        headers={"x-admin-token": sim.admin_token})
        assert bad.status_code == 422


def test_lose_response_records_the_submission(sim, http):
    sim.add_faults(FaultRule(endpoint="submit_result", kind="lose_response"))
    with pytest.raises(httpx.RemoteProtocolError):
        submit(http, sim.node_api_key)
    assert len(sim.store.submissions(TASK)) == 1


def test_truncate_cuts_mid_line_without_a_length(sim, http):
    url = http.get("/tasks/get", params={"task_id": TASK}).json()["data"]["training_set_url"]
    full = sim.store.folder(TASK).files["training_set"].read_bytes()
    sim.add_faults(FaultRule(endpoint="storage", kind="truncate"))
    with httpx.Client() as raw:
        cut = raw.get(url)
    assert cut.status_code == 200 and "content-length" not in cut.headers
    assert 0 < len(cut.content) < len(full) and full.startswith(cut.content) and not cut.content.endswith(b"\n")


# ----- concurrency (issue 9 item 5) ----------------------------------------------------------------------------
def test_fifty_concurrent_clients_keep_state_consistent(sim):
    """25 nodes submit three times each while 25 validators ask for assignments, all at once."""
    nodes = [sim.create_api_key("node") for _ in range(25)]
    validators = [sim.create_api_key("validator") for _ in range(25)]
    barrier = threading.Barrier(50, timeout=30)

    def node(key: str) -> list[int]:
        with httpx.Client(base_url=sim.base_url, timeout=30) as http:
            barrier.wait()
            return [submit(http, key, revision=f"{n}" * 40).status_code for n in range(3)] + \
                [http.get("/tasks/get", params={"task_id": TASK}).status_code]

    def validator(key: str) -> list[int]:
        with httpx.Client(base_url=sim.base_url, timeout=30) as http:
            barrier.wait()
            taken = []
            for _ in range(2):
                response = assign(http, key)
                if response.status_code == 200:
                    taken.append(response.json()["task_submission"]["id"])
                else:
                    assert response.json()["detail"] in (NO_SUBMISSIONS_DETAIL, ASSIGNMENT_RATE_LIMIT_DETAIL)
            return taken

    with ThreadPoolExecutor(50) as pool:
        node_jobs = [pool.submit(node, key) for key in nodes]
        validator_jobs = [pool.submit(validator, key) for key in validators]
        node_codes = [job.result() for job in node_jobs]
        taken = [sid for job in validator_jobs for sid in job.result()]
    for codes in node_codes:
        assert sorted(codes[:3]) == [200, 200, 429] and codes[3] == 200
    submissions = sim.store.submissions(TASK)
    assert len(submissions) == 50
    assert len({(s["wallet"], s["revision"]) for s in submissions}) == 50
    assert len(taken) == len(set(taken))  # one validation per submission, never handed out twice
    assert len(taken) <= len(validators)  # at most one per validator: 1 per 3 minutes


def test_concurrent_validators_never_share_a_submission(sim, http):
    nodes = [sim.create_api_key("node") for _ in range(10)]
    for key in nodes:
        submit(http, key)
    validators = [sim.create_api_key("validator") for _ in range(30)]
    barrier = threading.Barrier(len(validators), timeout=30)

    def take(key: str) -> int | None:
        with httpx.Client(base_url=sim.base_url, timeout=30) as client:
            barrier.wait()
            response = assign(client, key)
            return response.json()["task_submission"]["id"] if response.status_code == 200 else None

    with ThreadPoolExecutor(len(validators)) as pool:
        taken = [sid for sid in pool.map(take, validators) if sid is not None]
    assert len(taken) == 10 and len(set(taken)) == 10
