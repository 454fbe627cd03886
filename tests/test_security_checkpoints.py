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
