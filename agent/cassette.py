"""The cassette: every non-deterministic input of a run goes through it, recorded or replayed.

A run records, in ``runs/<id>/cassette.jsonl``, each planner answer and each tool result (tool results carry what
FLock, the Hub and the generator answered) together with a hash of the call's inputs. ``synthgen replay``
(agent/replay.py) runs the graph again with the cassette in replay mode: calls are answered from the recording, in
order, and the first call whose kind, name or inputs differ from the recording stops the replay with a message that
names the difference.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from agent.trace import Redactor, append_jsonl, read_jsonl_tolerant
from tools.fileio import atomic_write_text

CallKind = Literal["planner", "tool"]
Mode = Literal["record", "replay"]
T = TypeVar("T")


class ReplayMismatch(RuntimeError):
    """The replayed graph asked for something that was not recorded."""


class CassetteEntry(BaseModel):
    seq: int
    kind: CallKind
    name: str
    input_hash: str
    inputs: dict[str, Any]
    output: Any


def canonical_hash(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def _describe_difference(recorded: dict[str, Any], asked: dict[str, Any]) -> str:
    changed = sorted(k for k in set(recorded) | set(asked) if recorded.get(k) != asked.get(k))
    parts = []
    if "prompt_file_hash" in changed:
        prompt_id = asked.get("prompt_id", "?")
        parts.append(f"prompt file {prompt_id!r} (prompts/{prompt_id}.md) changed since the recording "
                     f"(hash {recorded.get('prompt_file_hash')} -> {asked.get('prompt_file_hash')})")
        changed = [k for k in changed if k not in ("prompt_file_hash", "prompt_hash")]
    for key in changed[:4]:
        before, after = recorded.get(key), asked.get(key)
        if isinstance(before, str | int | float | None) and isinstance(after, str | int | float | None) \
                and len(str(before)) + len(str(after)) < 160:
            parts.append(f"{key}: {before!r} -> {after!r}")
        else:
            parts.append(f"{key} changed")
    return "; ".join(parts) or "inputs differ"


class Cassette:
    """Records calls to a JSONL file, or answers them from one."""

    def __init__(self, path: Path, mode: Mode, redactor: Redactor | None = None):
        self.path = path
        self.mode = mode
        self.redactor = redactor or Redactor(env={})
        if mode == "record" and path.is_file():
            raw = path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # a line torn by a kill: drop it, or the next one is glued to it
                os.truncate(path, raw.rfind(b"\n") + 1)
        self.entries: list[CassetteEntry] = [CassetteEntry.model_validate(o) for o in read_jsonl_tolerant(path)]
        self.position = 0 if mode == "replay" else len(self.entries)

    def truncate(self, length: int) -> None:
        """Forget calls recorded after a checkpoint (the node that made them will run again on resume)."""
        if self.mode != "record" or length >= len(self.entries):
            return
        self.entries = self.entries[:length]
        atomic_write_text(self.path, "".join(e.model_dump_json() + "\n" for e in self.entries))
        self.position = length

    def __len__(self) -> int:
        return self.position

    def call(self, kind: CallKind, name: str, inputs: dict[str, Any], run: Callable[[], T],
             encode: Callable[[T], Any], decode: Callable[[Any], T]) -> T:
        """Run (record mode) or look up (replay mode) one call. ``inputs`` must be JSON-compatible."""
        inputs = self.redactor.value(inputs)
        digest = canonical_hash(inputs)
        if self.mode == "replay":
            if self.position >= len(self.entries):
                raise ReplayMismatch(f"call #{self.position} ({kind} {name!r}) was not recorded: "
                                     f"the recording ends after {len(self.entries)} calls")
            entry = self.entries[self.position]
            if (entry.kind, entry.name) != (kind, name):
                raise ReplayMismatch(f"call #{self.position}: the recording has {entry.kind} {entry.name!r} but "
                                     f"the graph asked for {kind} {name!r}")
            if entry.input_hash != digest:
                raise ReplayMismatch(f"call #{self.position} ({kind} {name!r}): inputs differ from the recording: "
                                     f"{_describe_difference(entry.inputs, inputs)}")
            self.position += 1
            return decode(entry.output)
        result = run()
        entry = CassetteEntry(seq=self.position, kind=kind, name=name, input_hash=digest, inputs=inputs,
                              output=self.redactor.value(encode(result)))
        append_jsonl(self.path, entry.model_dump_json())
        self.entries.append(entry)
        self.position += 1
        return result

    def exhausted(self) -> bool:
        return self.position >= len(self.entries)
