"""The typed tools the agent's nodes call, and the recording wrapper every call goes through.

Each tool is one pipeline stage with pydantic inputs and a pydantic result. Nodes never touch files, models or
the network themselves: they call these tools, so a recorded run can be replayed from its cassette alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field

from agent.cassette import Cassette
from agent.state import AdapterInfo, DatasetInfo, EvalSummary, SubmissionInfo, TaskInfo, TrainOverrides
from agent.trace import TraceWriter

R = TypeVar("R", bound=BaseModel)


class PreparedTask(BaseModel):
    """Result of the bootstrap's data steps: the task, its first dataset version, and the data problems found."""

    task: TaskInfo
    dataset: DatasetInfo
    skipped_lines: int = 0
    training_sha256: str = ""


class GenerateOutcome(BaseModel):
    dataset: DatasetInfo
    accepted_per_category: dict[str, int]
    rejected_per_reason: dict[str, int]
    generation_tokens: int
    seconds: float
    stop_reason: str
    writers: dict[str, int] = Field(default_factory=dict, description="accepted rows per writer (llm, renderer)")


class TestComparison(BaseModel):
    """Base model vs the best adapter on the test split (reported, never used to decide)."""

    base: EvalSummary
    adapter: EvalSummary | None
    deltas: dict[str, float]


class Toolbox(Protocol):
    """The pipeline stages, as the agent sees them."""

    def prepare_task(self) -> PreparedTask:
        """Fetch the task, download and validate its training data, profile it and split it."""
        ...

    def evaluate(self, adapter_id: str | None, split: str) -> EvalSummary:
        """FLock BPC (overall and per category) and the task metric of the base model or an adapter."""
        ...

    def generate(self, targets: dict[str, int], iteration: int, max_generation_tokens: int) -> GenerateOutcome:
        """Generate synthetic rows for the targets, gate them, and make the next dataset version."""
        ...

    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        """Train a fresh LoRA adapter from the base model on a dataset version (within ``max_seconds`` of
        training when given: the schedule is shortened to fit)."""
        ...

    def submit(self, adapter_id: str) -> SubmissionInfo:
        """Publish an adapter and submit it to FLock (at most once per revision)."""
        ...

    def compare_on_test(self, adapter_id: str | None) -> TestComparison:
        """Base vs adapter on the test split."""
        ...


class RecordedToolbox:
    """Calls a toolbox through the cassette (recording or replaying) and traces every call."""

    def __init__(self, toolbox: Toolbox | None, cassette: Cassette, trace: TraceWriter):
        if toolbox is None and cassette.mode != "replay":
            raise ValueError("a toolbox is required unless replaying")
        self.toolbox = toolbox
        self.cassette = cassette
        self.trace = trace
        self.node: str | None = None
        self.iteration = 0

    def _call(self, name: str, result_type: type[R], inputs: dict[str, Any], run: Callable[[], R]) -> R:
        self.trace.emit("tool_call", node=self.node, iteration=self.iteration, tool=name, inputs=inputs)
        started = time.time()
        try:
            result = self.cassette.call("tool", name, inputs, run, encode=lambda r: r.model_dump(mode="json"),
                                        decode=result_type.model_validate)
        except Exception as exc:
            self.trace.emit("error", node=self.node, iteration=self.iteration, tool=name,
                            error=f"{type(exc).__name__}: {exc}")
            raise
        self.trace.emit("tool_result", node=self.node, iteration=self.iteration, tool=name,
                        seconds=round(time.time() - started, 3), result=_summary(result))
        return result

    def _live(self) -> Toolbox:
        assert self.toolbox is not None  # replay mode never reaches a live call
        return self.toolbox

    def measure(self, label: str, seconds: float) -> float:
        """A measured duration, recorded like any other input so a replay sees the same budget use."""
        return self.cassette.call("tool", "clock", {"label": label}, lambda: round(seconds, 3),
                                  encode=lambda v: v, decode=float)

    def lessons(self, task_type: str, read: Callable[[], list[str]]) -> list[str]:
        """Cross-run lessons as read at this point (recorded: the store changes between runs)."""
        return self.cassette.call("tool", "lessons", {"task_type": task_type}, read, encode=list,
                                  decode=lambda v: [str(x) for x in v])

    def prepare_task(self) -> PreparedTask:
        return self._call("prepare_task", PreparedTask, {}, lambda: self._live().prepare_task())

    def evaluate(self, adapter_id: str | None, split: str) -> EvalSummary:
        return self._call("evaluate", EvalSummary, {"adapter_id": adapter_id, "split": split},
                          lambda: self._live().evaluate(adapter_id, split))

    def generate(self, targets: dict[str, int], iteration: int, max_generation_tokens: int) -> GenerateOutcome:
        inputs = {"targets": targets, "iteration": iteration, "max_generation_tokens": max_generation_tokens}
        return self._call("generate", GenerateOutcome, inputs,
                          lambda: self._live().generate(targets, iteration, max_generation_tokens))

    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        # max_seconds follows from the recorded clock readings (the node derives it from the budget's wall-clock
        # use), so it is shown in the trace but left out of the cassette's inputs: recordings made before the time
        # limit existed still replay.
        inputs = {"dataset_version": dataset_version, "iteration": iteration,
                  "overrides": overrides.model_dump() if overrides else None, "max_train_tokens": max_train_tokens}
        if max_seconds is not None:
            self.trace.emit("metrics", node=self.node, iteration=self.iteration, scope="train_time_limit",
                            max_seconds=round(max_seconds, 1))
        return self._call("train", AdapterInfo, inputs,
                          lambda: self._live().train(dataset_version, iteration, overrides, max_train_tokens,
                                                     max_seconds))

    def submit(self, adapter_id: str) -> SubmissionInfo:
        return self._call("submit", SubmissionInfo, {"adapter_id": adapter_id},
                          lambda: self._live().submit(adapter_id))

    def compare_on_test(self, adapter_id: str | None) -> TestComparison:
        return self._call("compare_on_test", TestComparison, {"adapter_id": adapter_id},
                          lambda: self._live().compare_on_test(adapter_id))


def _summary(result: BaseModel) -> dict[str, Any]:
    """A trace-sized view of a tool result: nested lists longer than 20 items are cut."""

    def cut(value: Any) -> Any:
        if isinstance(value, list):
            return [cut(v) for v in value[:20]] + ([f"... {len(value) - 20} more"] if len(value) > 20 else [])
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    summary: dict[str, Any] = cut(result.model_dump(mode="json"))
    return summary
