"""Nothing is deserialised into code (issue 9 item 4e): checkpoints load in LangGraph's strict msgpack mode, so a
tampered checkpoint file cannot construct objects or call functions; adapters are accepted only as safetensors
(a pickled ``adapter_model.bin`` is refused before anything would unpickle it)."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ormsgpack
import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import EXT_CONSTRUCTOR_POS_ARGS, JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from memory.checkpoint import load_state, make_checkpointer, strict_serializer, thread_config
from memory.runs import RunPaths
from tools.publish import LocalPublisher, PublishError, read_adapter_config

CONSTRUCTED: list[str] = []


@dataclass
class Detonator:
    """A type no checkpoint of ours holds: building it has a visible side effect."""

    payload: str

    def __post_init__(self) -> None:
        CONSTRUCTED.append(self.payload)


def _detonate(payload: str) -> str:
    CONSTRUCTED.append(payload)
    return payload


class PlantedCall:
    """Pickles as a call of :func:`_detonate`: unpickling it runs code."""

    def __init__(self, payload: str):
        self.payload = payload

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _detonate, (self.payload,)


def run_config(run_id: str) -> Any:
    return thread_config(run_id)


def write_checkpoint(path: Path, run_id: str, values: dict[str, object]) -> None:
    """A checkpoint written by a permissive serializer (as an attacker with write access to the file would)."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    with contextlib.closing(sqlite3.connect(str(path), check_same_thread=False)) as conn:
        saver = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=True))
        saver.setup()
        config = {"configurable": {"thread_id": run_id, "checkpoint_ns": ""}}
        saver.put(config, checkpoint, {"source": "input", "step": -1}, {})  # type: ignore[arg-type]


def test_a_crafted_checkpoint_does_not_construct_its_objects(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "tampered").make()
    write_checkpoint(paths.checkpoints, paths.run_id, {"status": "running", "iteration": 1,
                                                       "task": Detonator("boom")})
    CONSTRUCTED.clear()
    # The same file read permissively would build the object: the test would notice a real hole.
    with contextlib.closing(sqlite3.connect(str(paths.checkpoints), check_same_thread=False)) as conn:
        permissive = SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=True))
        found = permissive.get_tuple(run_config(paths.run_id))
    assert found is not None and isinstance(found.checkpoint["channel_values"]["task"], Detonator)
    assert CONSTRUCTED == ["boom"]

    CONSTRUCTED.clear()
    state = load_state(paths)  # what `synthgen status/report/resume` read
    assert state["status"] == "running" and not isinstance(state["task"], Detonator)
    assert state["task"] == {"payload": "boom"}  # left as plain data
    saver = make_checkpointer(paths.checkpoints)  # what the graph resumes from
    resumed = saver.get_tuple(run_config(paths.run_id))
    assert resumed is not None and not isinstance(resumed.checkpoint["channel_values"]["task"], Detonator)
    assert CONSTRUCTED == []


def test_strict_mode_never_calls_a_function_named_in_the_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = ormsgpack.packb({"status": ormsgpack.Ext(EXT_CONSTRUCTOR_POS_ARGS, ormsgpack.packb(
        ["os", "system", [f"touch {marker}"]]))})
    value = strict_serializer().loads_typed(("msgpack", payload))
    assert value == {"status": [f"touch {marker}"]}
    assert not marker.exists()


def test_pickled_adapters_are_refused_before_publishing(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",'
                                                 ' "peft_type": "LORA"}')
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04cos\nsystem\n(S'touch /tmp/x'\ntR.")  # a pickle
    with pytest.raises(PublishError, match=r"adapter_model.bin is refused"):
        read_adapter_config(adapter, require_hub_id=True)
    with pytest.raises(PublishError, match=r"adapter_model.bin is refused"):
        LocalPublisher(tmp_path / "publisher").publish(adapter, "me/task-1-model")
    assert not (tmp_path / "publisher").exists() or not any((tmp_path / "publisher").rglob("*.bin"))


def test_a_tampered_training_checkpoint_is_refused_without_running_its_code(tiny_model_dir: Path,
                                                                             tmp_path: Path) -> None:
    """The trainer's resumable checkpoints load with ``weights_only``: a pickle naming a callable is refused."""
    import torch

    from tools.data import FlockRecord
    from tools.train import CHECKPOINT_DIR, TrainConfig, train_adapter

    records = [FlockRecord.model_validate({"conversations": [{"role": "user", "content": f"q{i}"},
                                                             {"role": "assistant", "content": f"answer {i}"}]})
               for i in range(6)]
    config = TrainConfig(learning_rate=5e-3, max_steps=4, batch_tokens=256, checkpoint_every=2, warmup_ratio=0.0)
    out = tmp_path / "adapter"

    class Stop(Exception):
        pass

    def stop_at_3(progress: Any) -> None:
        if progress.step == 3:
            raise Stop

    with pytest.raises(Stop):
        train_adapter(str(tiny_model_dir), records, out, config, template="qwen1.5", context_length=256,
                      hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", progress=stop_at_3)
    step_dir = next((out / CHECKPOINT_DIR).glob("step-*"))
    saved = torch.load(step_dir / "optimizer.pt", weights_only=True)
    saved["python_rng"] = PlantedCall("optimizer.pt")  # what an attacker with write access could plant
    torch.save(saved, step_dir / "optimizer.pt")
    CONSTRUCTED.clear()
    with pytest.raises(Exception, match="Weights only load failed"):
        train_adapter(str(tiny_model_dir), records, out, config, template="qwen1.5", context_length=256,
                      hub_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert CONSTRUCTED == []
