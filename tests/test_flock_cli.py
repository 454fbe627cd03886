"""`flock-sim serve` as a user runs it: a real process on a free loopback port that prints its URL and key."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from agent.cli.flock_sim import app

ROOT = Path(__file__).resolve().parent.parent


def test_serve_prints_url_and_key_and_serves_the_demo_task(tmp_path):
    state = tmp_path / "state.sqlite"
    process = subprocess.Popen(
        [sys.executable, "-c", "from agent.cli.flock_sim import app; app()", "serve", "--state", str(state),
         "--validate-every", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(line.startswith("export FLOCK_API_KEY=") for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        output = "\n".join(lines)
        base_url = re.search(r"export FLOCK_API_BASE_URL=(\S+)", output)
        key = re.search(r"export FLOCK_API_KEY=(\S+)", output)
        assert base_url and key, output
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1", base_url.group(1))
        with httpx.Client(base_url=base_url.group(1)) as http:
            task = http.get("/tasks/get", params={"task_id": 1}).json()
            assert task["status"] == "submission_phase" and task["data"]["training_set_url"]
            mine = http.get("/tasks/wallet-submissions", params={"task_id": 1},
                            headers={"flock-api-key": key.group(1)})
            assert mine.status_code == 200 and mine.json()["items"] == []
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
    assert state.exists() and (tmp_path / "publisher").exists() is False  # nothing published yet


def test_serve_reports_a_bad_task_folder(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--task-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "task.json: missing" in result.output


def test_serve_rejects_a_malformed_base_model_option():
    result = CliRunner().invoke(app, ["serve", "--base-model", "no-equals-sign"])
    assert result.exit_code == 2 and "expected HUB_ID=PATH" in result.output


def test_serve_help_explains_keys_admin_routes_and_task_folders():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for needed in ("--validate-every 0", "every submission is left to outside validators", "--validations 2",
                   "x-admin-token", "POST /admin/api-keys", "GET /admin/submissions", "/admin/faults",
                   "task.json", "context_length", "max_params", "training_set_key", "validation_set_key",
                   "synthgen flock-sim publish"):
        assert needed in text, needed


def test_builtin_validator_leaves_the_printed_validator_key_alone(tiny_model_dir, tmp_path):
    """The built-in validator took assignments with the printed key, so an outside validator using it got 429."""
    from tools.flock.client import FedLedgerClient
    from tools.flock.ledger import SubmissionLedger, submit_once
    from tools.flock.simulator import SimulatorConfig, SimulatorServer
    from tools.flock.simulator.testing import FAST_RETRY, make_lora_adapter, write_task_folder

    smol = "HuggingFaceTB/SmolLM2-135M-Instruct"
    folder = write_task_folder(tmp_path / "task", task_id=3, data={"supported_base_models": [smol]})
    lines = (folder / "validation_set.jsonl").read_text().splitlines(keepends=True)
    (folder / "validation_set.jsonl").write_text("".join(lines[:3]))
    config = SimulatorConfig(assignment_interval_s=180)  # FLock's lookup limit, as `serve` has it
    with SimulatorServer([folder], base_model_paths={smol: tiny_model_dir}, config=config) as sim, \
            sim.client(retry=FAST_RETRY) as node:
        assert sim.builtin_validator_api_key not in (sim.validator_api_key, sim.node_api_key)
        for seed in (0, 1):
            adapter = make_lora_adapter(tiny_model_dir, tmp_path / f"a{seed}", seed=seed,
                                        base_model_name_or_path=smol)
            published = sim.publisher.publish(adapter, f"local/a{seed}")
            submit_once(node, SubmissionLedger.in_run_dir(tmp_path / f"run{seed}"), 3, published.repo_id,
                        "qwen1.5", "CPU", published.revision)
        (builtin,) = sim.validate_pending()  # one, then its own lookup limit stops it
        assert builtin.status == "completed"
        with FedLedgerClient(sim.base_url, sim.validator_api_key, retry=FAST_RETRY) as outside:
            assignment = outside.request_validation_assignment(3)  # no 429: the printed key was never used
        assert assignment.task_submission.id != builtin.submission_id


def test_publish_puts_an_adapter_into_the_simulators_store(tiny_model_dir, tmp_path):
    from tools.flock.simulator.testing import make_lora_adapter
    from tools.publish import LocalPublisher

    adapter = make_lora_adapter(tiny_model_dir, tmp_path / "adapter",
                                base_model_name_or_path="HuggingFaceTB/SmolLM2-135M-Instruct")
    state = tmp_path / "sim" / "state.sqlite"
    args = ["publish", str(adapter), "--repo-id", "me/task-1-smol", "--state", str(state), "--task-id", "7"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    body = json.loads(result.output.strip().splitlines()[-1])
    revision = body["data"]["revision"]
    assert body == {"task_id": 7, "data": {"hg_repo_id": "me/task-1-smol", "base_model": "qwen1.5",
                                           "gpu_type": "CPU", "revision": revision}}
    store = LocalPublisher(tmp_path / "sim" / "publisher")  # where `serve --state` reads adapters from
    assert store.resolve("me/task-1-smol") == revision
    fetched = store.fetch("me/task-1-smol", revision, tmp_path / "fetched")
    assert (fetched / "adapter_model.safetensors").read_bytes() == (adapter / "adapter_model.safetensors").read_bytes()
    again = CliRunner().invoke(app, args)
    assert json.loads(again.output.strip().splitlines()[-1])["data"]["revision"] == revision


def test_publish_refuses_a_folder_that_is_no_adapter_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["publish", str(tmp_path), "--repo-id", "me/x", "--publisher-root",
                                      str(tmp_path / "store")])
    assert result.exit_code == 2
    assert result.output.startswith("error:") and "adapter_config.json: missing" in result.output
    missing_store = CliRunner().invoke(app, ["publish", str(tmp_path), "--repo-id", "me/x"])
    assert missing_store.exit_code == 2 and "--state" in missing_store.output
