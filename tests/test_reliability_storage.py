"""Writes under a full disk or a kill (issue 9 item 2): a disk that fills up while a dataset shard, a version
manifest, a split file, a download or an adapter is being written leaves the previous version intact and no
temporary file behind; a line torn by a kill in the trace or the cassette is dropped, never glued to the next."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.replay import Cassette
from agent.trace import Redactor, TraceWriter, read_trace
from tests.reliability_helpers import leftover_temp_files, trace_lines
from tools.data import FlockRecord, load_jsonl, write_jsonl
from tools.datastore import DataStore

DEMO = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "text2sql" / "training_set.jsonl"


def records(start: int, count: int) -> list[FlockRecord]:
    return load_jsonl(DEMO).records[start:start + count]


def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class FullDisk:
    """A file that accepts ``room`` bytes, then fails every write with ENOSPC, as a full disk does."""

    def __init__(self, inner: Any, room: int):
        self.inner = inner
        self.room = room

    def write(self, data: Any) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.inner.write(data[:self.room])
            self.room = 0
            self.inner.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return int(self.inner.write(data))

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return int(self.inner.fileno())

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def disk_fills_after(monkeypatch: pytest.MonkeyPatch, room: int) -> Iterator[None]:
    """Every file opened with ``os.fdopen`` (the atomic writers) runs out of space after ``room`` bytes."""
    real = os.fdopen

    def fdopen(fd: int, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real(fd, mode, *args, **kwargs)
        return FullDisk(handle, room) if "w" in mode and "b" in mode else handle

    with monkeypatch.context() as patch:
        patch.setattr(os, "fdopen", fdopen)
        yield


def test_full_disk_while_writing_a_shard_keeps_the_previous_version(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store = DataStore(tmp_path / "store")
    base = store.put_shard(records(0, 10), kind="base")
    store.save_version("iter0-a", [base])
    before = digest_tree(store.root)
    with disk_fills_after(monkeypatch, 500), pytest.raises(OSError) as failure:
        store.put_shard(records(10, 20), kind="synthetic", provenance=[{"i": i} for i in range(20)])
    assert failure.value.errno == errno.ENOSPC
    assert digest_tree(store.root) == before
    assert leftover_temp_files(store.root) == []
    assert [r.record_id for r in store.load_version("iter0-a").records] == [r.record_id for r in records(0, 10)]
    # Once there is room again the same write succeeds and the new version is complete.
    extra = store.put_shard(records(10, 20), kind="synthetic")
    store.save_version("iter1-b", [base, extra])
    assert len(store.load_version("iter1-b").records) == 30


def test_full_disk_while_writing_a_manifest_or_split_keeps_the_old_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = DataStore(tmp_path / "store")
    base = store.put_shard(records(0, 10), kind="base")
    extra = store.put_shard(records(10, 5), kind="synthetic")
    before = digest_tree(store.root)
    with disk_fills_after(monkeypatch, 40), pytest.raises(OSError, match="No space left"):
        store.save_version("iter1-c", [base, extra])
    assert digest_tree(store.root) == before and store.versions() == []

    split = tmp_path / "task" / "train.jsonl"
    write_jsonl(records(0, 10), split)
    old = split.read_bytes()
    with disk_fills_after(monkeypatch, 300), pytest.raises(OSError, match="No space left"):
        write_jsonl(records(20, 10), split)
    assert split.read_bytes() == old
    assert leftover_temp_files(tmp_path) == []


def test_full_disk_while_downloading_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.flock.simulator import SimulatorServer
    from tools.flock.simulator.testing import FAST_RETRY, write_task_folder

    dest = tmp_path / "run" / "task" / "training_set.jsonl"
    with SimulatorServer([write_task_folder(tmp_path / "task", task_id=4)]) as sim, \
            sim.client(retry=FAST_RETRY) as client:
        first = client.download_training_set(4, dest)
        old = dest.read_bytes()
        with disk_fills_after(monkeypatch, 10_000), pytest.raises(OSError, match="No space left"):
            client.download_training_set(4, dest)
    assert dest.read_bytes() == old and hashlib.sha256(old).hexdigest() == first.sha256
    assert leftover_temp_files(dest.parent) == []


def test_full_disk_while_saving_an_adapter_keeps_the_previous_adapter(tmp_path: Path, tiny_model_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import peft.peft_model
    from safetensors.torch import save as serialize

    from tools.train import TrainConfig, train_adapter

    out = tmp_path / "adapters" / "a1"
    rows = records(0, 4)
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    train_adapter(tiny_model_dir, rows, out, TrainConfig(max_steps=1, lora_r=2, lora_alpha=4, seed=0),
                  template="qwen1.5", context_length=256, hub_id=hub_id)
    before = digest_tree(out.parent)

    def save_file(tensors: dict[str, Any], filename: str, metadata: dict[str, str] | None = None) -> None:
        data = serialize(tensors, metadata=metadata)
        with open(filename, "wb") as handle:  # half the file reaches the disk, then it is full
            handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(peft.peft_model, "safe_save_file", save_file)
    with pytest.raises(OSError) as failure:
        train_adapter(tiny_model_dir, rows, out, TrainConfig(max_steps=1, lora_r=2, lora_alpha=4, seed=1),
                      template="qwen1.5", context_length=256, hub_id=hub_id)
    assert failure.value.errno == errno.ENOSPC
    assert digest_tree(out.parent) == before  # the first adapter and its metrics, byte for byte
    assert leftover_temp_files(out.parent) == []


def constant(value: float) -> Callable[[], float]:
    return lambda: value


# ----- torn lines from a kill ------------------------------------------------------------------------------------
def test_torn_trace_line_is_dropped_and_numbering_continues(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    writer = TraceWriter(path, "r1", Redactor(env={}))
    for _ in range(3):
        writer.emit("node_start", node="generate")
    with path.open("ab") as handle:  # the process died in the middle of a line
        handle.write(b'{"v": 1, "seq": 3, "ts": 1.0, "run_id": "r1", "type": "node_e')
    TraceWriter(path, "r1", Redactor(env={})).emit("run_resume")
    assert [e["seq"] for e in trace_lines(path)] == [0, 1, 2, 3]
    assert [e.type for e in read_trace(path)][-1] == "run_resume"


def test_torn_cassette_line_is_dropped_not_glued_to_the_next_entry(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    cassette = Cassette(path, "record")
    for n in range(2):
        cassette.call("tool", "clock", {"n": n}, constant(float(n)), encode=lambda v: v, decode=float)
    with path.open("ab") as handle:  # killed while recording the third call
        handle.write(b'{"seq": 2, "kind": "tool", "name": "clo')
    resumed = Cassette(path, "record")
    resumed.truncate(2)  # what Runner.resume does with the checkpoint's cassette position
    resumed.call("tool", "clock", {"n": 2}, constant(2.0), encode=lambda v: v, decode=float)
    assert [e["seq"] for e in trace_lines(path)] == [0, 1, 2]
    replay = Cassette(path, "replay")
    assert [replay.call("tool", "clock", {"n": n}, constant(-1.0), encode=lambda v: v, decode=float)
            for n in range(3)] == [0.0, 1.0, 2.0]
