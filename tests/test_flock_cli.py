"""`flock-sim serve` as a user runs it: a real process on a free loopback port that prints its URL and key."""

from __future__ import annotations

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
