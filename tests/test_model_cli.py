"""``synthgen model train`` and ``model score`` as a user runs them: a model that cannot be found is one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from tests.test_models import offline  # noqa: F401 - the fixture


@pytest.fixture
def training_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    row = {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    path.write_text(json.dumps(row) + "\n")
    return path


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("template", [[], ["--template", "qwen1.5"]])
def test_train_with_a_model_nobody_has_is_one_error_line(training_file, tmp_path, template):
    result = CliRunner().invoke(app, ["model", "train", str(training_file), "-o", str(tmp_path / "out"),
                                      "--model", "nobody/x", *template])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model 'nobody/x' is not available"), result.output
    assert "Traceback" not in result.output and "hf download nobody/x" in lines[0]


@pytest.mark.usefixtures("offline")
def test_score_with_a_model_nobody_has_is_one_error_line(training_file):
    result = CliRunner().invoke(app, ["model", "score", str(training_file), "--model", "nobody/x"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith("error: model 'nobody/x' is not available")
    assert len(result.output.strip().splitlines()) == 1
