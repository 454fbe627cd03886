"""The base model of a run: chosen for a live task from its max_params and this machine, explained in the trace,
and a base FLock's validators would reject refused before any training. The simulator stands in for the live API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import build_config
from agent.pipeline import open_pipeline, resolve_base_model
from agent.pipeline.environment import PipelineError
from agent.runner import Runner
from agent.trace import Redactor, read_trace
from memory.runs import RunPaths, RunStore
from tools.flock.errors import BaseModelRejectedError
from tools.flock.simulator import SimulatorServer
from tools.flock.simulator.testing import write_task_folder
from tools.models import DEFAULT_MODEL

QWEN_SMALL = "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.fixture
def live(tmp_path, monkeypatch) -> Iterator[SimulatorServer]:
    """A simulator serving task 42 (max_params 8e9), with the keys a live run needs in the environment."""
    folder = write_task_folder(tmp_path / "task", task_id=42, data={"max_params": 8_000_000_000})
    with SimulatorServer([folder], state_path=tmp_path / "sim" / "state.sqlite",
                         publisher_root=tmp_path / "sim" / "pub") as sim:
        monkeypatch.setenv("FLOCK_API_KEY", sim.node_api_key)
        monkeypatch.setenv("HF_TOKEN", "hf_test")
        monkeypatch.setenv("HF_USERNAME", "tester")
        monkeypatch.setattr("agent.pipeline.base_model.detect_machine", _cpu)  # whatever machine runs the test
        yield sim


def _cpu():
    from tools.models import MachineResources

    return MachineResources(cpu_count=2, memory_bytes=24 * 2**30)


def _live_config(sim: SimulatorServer, tmp_path: Path, **settings):
    return build_config(None, {"task": {"kind": "flock", "task_id": 42, "api_base_url": sim.base_url,
                                        "retry_attempts": 1}, "runs_dir": str(tmp_path / "runs"), **settings})


def test_a_live_task_left_on_the_demo_default_gets_a_model_flock_accepts(live, tmp_path):
    config = _live_config(live, tmp_path)
    assert config.base_model == DEFAULT_MODEL  # what `synthgen run --task-id 42` has without --base-model
    resolved, choice = resolve_base_model(config)
    assert choice is not None and resolved.base_model == choice.hub_id == QWEN_SMALL
    assert choice.max_params == 8_000_000_000 and "no GPU" in choice.reason
    auto, again = resolve_base_model(_live_config(live, tmp_path, base_model="auto"))
    assert auto.base_model == QWEN_SMALL and again == choice
    named, none = resolve_base_model(_live_config(live, tmp_path, base_model="Qwen/Qwen2.5-1.5B-Instruct"))
    assert (named.base_model, none) == ("Qwen/Qwen2.5-1.5B-Instruct", None)  # a named model is kept
    weights, kept = resolve_base_model(_live_config(live, tmp_path, base_model_weights=str(tmp_path)))
    assert (weights.base_model, kept) == (DEFAULT_MODEL, None)  # weights for it: named, and refused at bootstrap


def test_auto_on_a_local_task_is_the_offline_demo_model(tmp_path):
    resolved, choice = resolve_base_model(build_config(None, {"base_model": "auto"}))
    assert resolved.base_model == DEFAULT_MODEL and choice is not None and "Q4_1 GGUF" in choice.reason
    with pytest.raises(PipelineError, match="base_model_weights names weights for one model"):
        resolve_base_model(build_config(None, {"base_model": "auto", "base_model_weights": str(tmp_path)}))


def test_the_choice_is_recorded_in_the_config_and_the_trace(live, tmp_path):
    class Stop(Exception):
        pass

    @contextlib.contextmanager
    def no_pipeline(config, paths, redactor):
        raise Stop
        yield

    runner = Runner(RunStore(tmp_path / "runs"), toolbox_factory=no_pipeline)
    with pytest.raises(Stop):
        runner.start(_live_config(live, tmp_path), run_id="chosen")
    assert RunStore(tmp_path / "runs").load_config("chosen")["base_model"] == QWEN_SMALL  # resume keeps it
    events = read_trace(RunPaths(tmp_path / "runs" / "chosen").trace)
    (choice,) = [e for e in events if e.type == "metrics" and e.data.get("scope") == "base_model_choice"]
    assert choice.data["hub_id"] == QWEN_SMALL and "max_params 8,000,000,000" in choice.data["reason"]
    assert QWEN_SMALL in choice.data["fitting"] and DEFAULT_MODEL not in choice.data["fitting"]


def test_a_base_real_validators_reject_is_refused_before_download(live, tmp_path):
    config = _live_config(live, tmp_path, base_model="HuggingFaceTB/SmolLM2-360M-Instruct")
    paths = RunPaths(tmp_path / "runs" / "refused").make()
    with open_pipeline(config, paths, Redactor()) as toolbox, \
            pytest.raises(BaseModelRejectedError, match="not in FLock's validators' supported list"):
        toolbox.prepare_task()
    assert not any(paths.task_dir.iterdir())  # nothing downloaded, nothing trained
