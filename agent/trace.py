"""The run trace: one typed event per line in ``runs/<id>/trace.jsonl``, secrets redacted before writing.

Schema (version :data:`TRACE_SCHEMA_VERSION`), one JSON object per line:

| field | meaning |
|---|---|
| ``v`` | schema version |
| ``seq`` | 0-based event number within the run (continues across resumes) |
| ``ts`` | Unix time, seconds |
| ``run_id`` | the run |
| ``type`` | one of :data:`EventType`: run_start, run_resume, node_start/end, planner_input/output, |
|  | decision, tool_call, tool_result, metrics, error, run_end |
| ``node`` | graph node that emitted it (``null`` for run events) |
| ``iteration`` | the agent's iteration counter when it was emitted |
| ``data`` | the event's payload; shape per type (see :class:`TraceEvent` users in agent/nodes.py) |
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

TRACE_SCHEMA_VERSION = 1
EventType = Literal[
    "run_start", "run_resume", "node_start", "node_end", "planner_input", "planner_output", "decision",
    "tool_call", "tool_result", "metrics", "error", "run_end",
]
#: Environment variables whose values are secrets wherever they appear.
SECRET_ENV_VARS = ("FLOCK_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "SYNTHGEN_LLM_API_KEY",
                   "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")
REDACTED = "***"


class TraceEvent(BaseModel):
    v: int = TRACE_SCHEMA_VERSION
    seq: int
    ts: float
    run_id: str
    type: EventType
    node: str | None = None
    iteration: int = 0
    data: dict[str, Any] = Field(default_factory=dict)


class Redactor:
    """Replaces known secret values (from the environment and any given explicitly) in text and JSON values."""

    def __init__(self, secrets: Iterable[str] = (), env: dict[str, str] | None = None):
        env = dict(os.environ) if env is None else env
        values = {env[name] for name in SECRET_ENV_VARS if env.get(name)}
        values.update(s for s in secrets if s)
        # Short values would redact ordinary words; real keys are long.
        self._secrets = sorted((s for s in values if len(s) >= 6), key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 6 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(str(k)): self.value(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.value(v) for v in obj]
        return obj


def append_jsonl(path: Path, line: str) -> None:
    """Append one line durably: a crash leaves whole lines only (the reader drops a torn last line)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl_tolerant(path: Path) -> Iterator[dict[str, Any]]:
    """Read a JSONL file written by :func:`append_jsonl`, ignoring a torn final line from a crash."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the torn tail of a killed writer
                return
            raise ValueError(f"{path}:{i + 1}: corrupt trace line") from None


class TraceWriter:
    """Appends events to a run's trace; safe to share between threads; resumes numbering after a restart."""

    def __init__(self, path: Path, run_id: str, redactor: Redactor):
        self.path = path
        self.run_id = run_id
        self.redactor = redactor
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq = sum(1 for _ in read_jsonl_tolerant(path))
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        if self.path.exists():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                self.path.write_bytes(raw[: raw.rfind(b"\n") + 1])

    def emit(self, type: EventType, *, node: str | None = None, iteration: int = 0, **data: Any) -> TraceEvent:
        with self._lock:
            event = TraceEvent(seq=self._seq, ts=time.time(), run_id=self.run_id, type=type, node=node,
                               iteration=iteration, data=self.redactor.value(data))
            append_jsonl(self.path, event.model_dump_json())
            self._seq += 1
            return event


def read_trace(path: Path) -> list[TraceEvent]:
    return [TraceEvent.model_validate(obj) for obj in read_jsonl_tolerant(path)]


def annotate_langsmith_run(metadata: dict[str, Any]) -> None:
    """Add ``metadata`` to the LangChain run the caller executes in (a graph node: its LangSmith run) and to every
    run started inside it (the planner's model calls). Outside a LangChain run this does nothing."""
    from langchain_core.callbacks import BaseCallbackManager
    from langchain_core.tracers.base import BaseTracer
    from langgraph.config import get_config

    try:
        callbacks = get_config().get("callbacks")
    except RuntimeError:  # not inside a runnable
        return
    if not isinstance(callbacks, BaseCallbackManager):
        return
    callbacks.add_metadata(metadata)  # inherited by the runs started inside this one
    if callbacks.parent_run_id is None:
        return
    for handler in callbacks.handlers:
        # The node's own run started before the node knew its iteration; tracers (LangSmith's among them) send
        # a run's metadata again when it ends.
        if isinstance(handler, BaseTracer) and (run := handler.run_map.get(str(callbacks.parent_run_id))):
            run.add_metadata(metadata)
