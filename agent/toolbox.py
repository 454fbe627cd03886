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
from memory.lessons import ArmStats

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
    accepted_per_strategy: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="accepted rows per category and strategy")


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
        """FLock BPC (overall and per category) of the base model or an adapter."""
        ...

    def generate(self, targets: dict[str, int], strategies: dict[str, str], iteration: int,
                 max_generation_tokens: int, max_seconds: float | None = None) -> GenerateOutcome:
        """Generate synthetic rows for the targets, each category with its strategy (default: the task's first),
        gate them, and make the next dataset version (within ``max_seconds`` when given)."""
        ...

    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        """Train a fresh LoRA adapter from the base model on a dataset version with the overrides' settings and
        data mix (within ``max_seconds`` of training when given: the schedule is shortened to fit)."""
        ...

    def refit(self, refit_of: str, dataset_version: str, overrides: TrainOverrides | None, max_train_tokens: int,
              max_seconds: float | None = None) -> AdapterInfo:
        """Train the recipe of adapter ``refit_of`` again on every original row (train, dev and test) plus the
        dataset version's synthetic rows, on ``max_train_tokens`` (the recipe's tokens scaled to the data)."""
        ...

    def submit(self, adapter_id: str, max_seconds: float | None = None,
               refit_of: str | None = None) -> SubmissionInfo:
        """Publish an adapter and submit it to FLock (at most once per revision); a local task's simulator scores
        it when that fits in ``max_seconds``. A refit (``refit_of`` its recipe's adapter) learned from dev: its
        card shows the recipe's dev scores."""
        ...

    def compare_on_test(self, adapter_id: str | None, max_seconds: float | None = None) -> TestComparison:
        """Base vs adapter on the test split: BPC, then the task metric on as much of a fixed sample as fits in
        ``max_seconds``."""
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

    def memory(self, task_type: str, read: Callable[[], list[ArmStats]]) -> list[ArmStats]:
        """The cross-run memory of what synthetic data was worth, as read at this point (recorded: the store
        changes between runs)."""
        return self.cassette.call("tool", "memory", {"task_type": task_type}, read,
                                  encode=lambda arms: [a.model_dump(mode="json") for a in arms],
                                  decode=lambda v: [ArmStats.model_validate(a) for a in v])

    def _limit(self, scope: str, max_seconds: float | None) -> None:
        """Time limits follow from the recorded clock readings, so they are traced but left out of the cassette's
        inputs: a change to how limits are computed does not stop recordings from replaying."""
        if max_seconds is not None:
            self.trace.emit("metrics", node=self.node, iteration=self.iteration, scope=scope,
                            max_seconds=round(max_seconds, 1))

    def prepare_task(self) -> PreparedTask:
        return self._call("prepare_task", PreparedTask, {}, lambda: self._live().prepare_task())

    def evaluate(self, adapter_id: str | None, split: str) -> EvalSummary:
        return self._call("evaluate", EvalSummary, {"adapter_id": adapter_id, "split": split},
                          lambda: self._live().evaluate(adapter_id, split))

    def generate(self, targets: dict[str, int], strategies: dict[str, str], iteration: int,
                 max_generation_tokens: int, max_seconds: float | None = None) -> GenerateOutcome:
        inputs = {"targets": targets, "strategies": strategies, "iteration": iteration,
                  "max_generation_tokens": max_generation_tokens}
        self._limit("generate_time_limit", max_seconds)
        return self._call("generate", GenerateOutcome, inputs,
                          lambda: self._live().generate(targets, strategies, iteration, max_generation_tokens,
                                                        max_seconds))

    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        inputs = {"dataset_version": dataset_version, "iteration": iteration,
                  "overrides": overrides.model_dump() if overrides else None, "max_train_tokens": max_train_tokens}
        self._limit("train_time_limit", max_seconds)
        return self._call("train", AdapterInfo, inputs,
                          lambda: self._live().train(dataset_version, iteration, overrides, max_train_tokens,
                                                     max_seconds))

    def refit(self, refit_of: str, dataset_version: str, overrides: TrainOverrides | None, max_train_tokens: int,
              max_seconds: float | None = None) -> AdapterInfo:
        inputs = {"refit_of": refit_of, "dataset_version": dataset_version,
                  "overrides": overrides.model_dump() if overrides else None, "max_train_tokens": max_train_tokens}
        self._limit("refit_time_limit", max_seconds)
        return self._call("refit", AdapterInfo, inputs,
                          lambda: self._live().refit(refit_of, dataset_version, overrides, max_train_tokens,
                                                     max_seconds))

    def submit(self, adapter_id: str, max_seconds: float | None = None,
               refit_of: str | None = None) -> SubmissionInfo:
        self._limit("submit_time_limit", max_seconds)
        inputs = {"adapter_id": adapter_id, **({"refit_of": refit_of} if refit_of else {})}
        return self._call("submit", SubmissionInfo, inputs,
                          lambda: self._live().submit(adapter_id, max_seconds, refit_of))

    def compare_on_test(self, adapter_id: str | None, max_seconds: float | None = None) -> TestComparison:
        self._limit("test_time_limit", max_seconds)
        return self._call("compare_on_test", TestComparison, {"adapter_id": adapter_id},
                          lambda: self._live().compare_on_test(adapter_id, max_seconds))


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
