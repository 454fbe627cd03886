"""Secrets never reach disk or output (issue 9 item 4a): full tiny runs with FLOCK_API_KEY, HF_TOKEN and the
endpoint key SYNTHGEN_LLM_API_KEY set to fresh random values; then every file the run wrote (trace, cassette,
checkpoints, config, index, report, datasets, adapters, simulator state, ledger), a DEBUG log of every logger and
the command's own output are searched for those values and for the simulator's node and validator keys.

The endpoint key is really used: the planner (LangChain's OpenAI client) and the generator (the project's
OpenAI-compatible backend) both call the project's own OpenAI-compatible server on the tiny model, which records
the Authorization header it receives."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from agent.cli import app
from tests.agent_helpers import SMOL, mini_task_dir
from tools.backends import BackendSpec, make_backend
from tools.flock.simulator import SimulatorServer
from tools.flock.simulator.store import SimulatorStore
from tools.openai_server import create_app
from tools.threaded_server import ThreadedServer


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_task_dir(tmp_path_factory.mktemp("task"))


class HeaderRecorder:
    """ASGI wrapper that keeps the Authorization header of every request, then passes it on untouched."""

    def __init__(self, app: Any):
        self.app = app
        self.authorizations: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            self.authorizations.append(headers.get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


@contextmanager
def debug_log(path: Path) -> Iterator[None]:
    """Every logger at DEBUG into ``path`` (httpx, openai, langchain, the agent's own) for the run's duration."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def fresh_secrets() -> dict[str, str]:
    return {name: f"{name.lower()}-{secrets.token_hex(16)}" for name in
            ("FLOCK_API_KEY", "HF_TOKEN", "SYNTHGEN_LLM_API_KEY")}


def leaks(root: Path, output: str, values: dict[str, str]) -> list[str]:
    """Where any of the values appears, as 'name in file' (or 'in the command output')."""
    found = []
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 20  # the run really wrote its folder
    for name, value in values.items():
        needle = value.encode()
        found += [f"{name} in {p.relative_to(root)}" for p in files if needle in p.read_bytes()]
        if value in output:
            found.append(f"{name} in the command output")
    return found


def run_cli(settings: dict[str, Any], workdir: Path, env: dict[str, str]) -> Any:
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    with debug_log(workdir / "debug.log"):
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--run-id", "secret-run",
                                          "--runs-dir", str(workdir / "runs")], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_no_secret_in_any_file_or_output_of_a_full_local_run(task_dir: Path, tiny_model_dir: Path,
                                                             tmp_path: Path) -> None:
    values = fresh_secrets()
    backend = make_backend(BackendSpec(kind="local", model=str(tiny_model_dir), batch_size=4, precision="float32"))
    recorder = HeaderRecorder(create_app(backend, served_name="tiny", default_max_tokens=16))
    with ThreadedServer(recorder, lifespan="on") as server:
        url = server.url
        settings = {
            "task": {"kind": "dir", "task_dir": str(task_dir), "timeout_s": 5, "retry_wait_s": 0.05},
            "base_model": SMOL, "base_model_weights": str(tiny_model_dir),
            "generator": {"backend": "openai", "model": "tiny", "base_url": url + "/v1", "batch_size": 4,
                          "max_new_tokens": 8, "concurrency": 2},
            "planner": {"kind": "llm", "model": "tiny", "base_url": url + "/v1"},
            "budget": {"max_iterations": 1, "max_synthetic_examples": 8, "max_wall_seconds": 3600},
            "train": {"epochs": 1, "lora_rank": 4, "lora_alpha": 8, "batch_tokens": 2048},
            "eval": {"task_metric": False, "dev_fraction": 0.15, "test_fraction": 0.15},
        }
        result = run_cli(settings, tmp_path, values)
    # The endpoint key was sent, by the planner and by the generator.
    assert recorder.authorizations and set(recorder.authorizations) == {f"Bearer {values['SYNTHGEN_LLM_API_KEY']}"}
    assert len(recorder.authorizations) >= 3
    run_root = tmp_path / "runs" / "secret-run"
    assert (run_root / "report").is_dir() and (run_root / "flock-sim" / "state.sqlite").is_file()
    store = SimulatorStore(run_root / "flock-sim" / "state.sqlite")
    values["simulator node key"] = store.default_api_key("default-node")
    values["simulator validator key"] = store.default_api_key("default-validator")
    assert store.submissions(), "the run should have submitted with the node key"
    assert leaks(tmp_path, result.output, values) == []


def test_no_secret_in_any_file_or_output_of_a_run_on_the_live_api_path(task_dir: Path, tiny_model_dir: Path,
                                                                       tmp_path: Path) -> None:
    """The live FedLedger path (task.kind flock) against a simulator standing for FLock: the real key is the
    simulator's node key, given as FLOCK_API_KEY."""
    with SimulatorServer([task_dir], state_path=tmp_path / "flock" / "state.sqlite",
                         publisher_root=tmp_path / "flock" / "pub") as flock:
        values = fresh_secrets()
        values["FLOCK_API_KEY"] = flock.create_api_key("node")
        settings = {
            "task": {"kind": "flock", "task_id": flock.task_ids[0], "api_base_url": flock.base_url,
                     "retry_wait_s": 0.05},
            # A live task takes only a base model FLock's validators accept (the tiny weights stand in for it).
            "base_model": "Qwen/Qwen2.5-0.5B-Instruct", "base_model_weights": str(tiny_model_dir),
            "generator": {"backend": "none", "batch_size": 8},
            "planner": {"kind": "policy"},
            # No submission: the Hub is not reachable from here.
            "budget": {"max_iterations": 1, "max_synthetic_examples": 8, "max_submissions": 0},
            "train": {"epochs": 1, "lora_rank": 4, "lora_alpha": 8, "batch_tokens": 2048},
            "eval": {"task_metric": False, "dev_fraction": 0.15, "test_fraction": 0.15},
        }
        workdir = tmp_path / "agent"
        workdir.mkdir()
        result = run_cli(settings, workdir, values)
    assert leaks(workdir, result.output, values) == []
