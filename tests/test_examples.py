"""The configurations in examples/ load through the real configuration loader and say what their comments say;
the README's commands point at them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.config import RunConfig, build_config, check_environment
from tools.models import BASE_MODELS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads_with_a_known_base_model(path: Path) -> None:
    config = build_config(path)
    assert config.base_model in BASE_MODELS
    assert path.read_text().startswith("#")  # each says what it is for and how to run it
    assert f"--config examples/{path.name}" in path.read_text()


def test_the_demo_example_is_the_embedded_default() -> None:
    assert build_config(EXAMPLES / "demo.yaml").model_dump() == RunConfig().model_dump()


def test_the_live_example_trains_a_base_model_flock_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config(EXAMPLES / "live-qwen2.5-0.5b-gpu.yaml", {"task": {"task_id": 42}})
    assert config.task.kind == "flock" and config.task.task_id == 42
    assert config.base_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert BASE_MODELS[config.base_model].flock_whitelisted
    assert config.train.qlora is True and config.publishes_to_hub
    for name in ("FLOCK_API_KEY", "HF_TOKEN", "HF_USERNAME"):
        monkeypatch.setenv(name, "set-for-the-check")
    check_environment(config)


def test_the_live_example_needs_the_task_id_and_keys_through_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOCK_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["run", "--config", str(EXAMPLES / "live-qwen2.5-0.5b-gpu.yaml")])
    assert result.exit_code == 2 and "task.task_id: required for the live FLock API (--task-id N)" in result.output
    result = CliRunner().invoke(app, ["run", "--config", str(EXAMPLES / "live-qwen2.5-0.5b-gpu.yaml"),
                                      "--task-id", "42"])
    assert result.exit_code == 2 and "needs an API key in $FLOCK_API_KEY" in result.output


def test_the_endpoint_example_uses_openai_compatible_generator_and_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config(EXAMPLES / "openai-endpoints.yaml")
    assert config.generator.backend == "openai" and config.planner.kind == "llm"
    assert config.generator.base_url == config.planner.base_url == "http://127.0.0.1:8000/v1"
    monkeypatch.setenv("SYNTHGEN_LLM_API_KEY", "set-for-the-check")
    check_environment(config)


def test_the_readme_points_at_the_examples() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"examples/[\w.\-]+\.yaml", readme))
    assert "examples/live-qwen2.5-0.5b-gpu.yaml" in named
    assert "my-run.yaml" not in readme
    for name in named:
        assert (ROOT / name).is_file(), name
