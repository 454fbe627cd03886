"""The frozen run context handed to every node through LangGraph's ``Runtime[RunContext]``.

It carries what a run is configured with and the live objects it works with (the toolbox behind the cassette,
the planner, the trace writer, the lessons store). Nothing here is checkpointed: a resumed run builds a new
context from the run's saved configuration. LangGraph Studio starts runs with plain settings instead
(agent/studio.py), from which this context is built when the run starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from langgraph.store.base import BaseStore

from agent.cassette import Cassette
from agent.planner import Planner
from agent.state import LearningSettings, PlannerKind, RunBudget
from agent.toolbox import RecordedToolbox
from agent.trace import TraceWriter


@dataclass(frozen=True)
class RunContext:
    run_id: str
    budget: RunBudget
    tools: RecordedToolbox
    trace: TraceWriter
    cassette: Cassette
    planner_kind: PlannerKind
    planner: Planner | None
    lessons: BaseStore | None = None
    #: The task as the run index names it (demo, demo-fc, dir:PATH, flock:ID).
    task: str = ""
    learning: LearningSettings = field(default_factory=LearningSettings)
    #: Whether the test comparison decodes for the task metric (``eval.task_metric``).
    task_metric: bool = True
    #: The clock node durations are measured with (tests pass a fake one).
    clock: Callable[[], float] = time.time
    #: When the process started working on the run (clock reading): the bootstrap counts the setup before it.
    started: float | None = None

    @property
    def replaying(self) -> bool:
        return self.cassette.mode == "replay"

    def tracing_metadata(self, iteration: int | None = None) -> dict[str, str | int]:
        """What LangSmith runs of this run carry as metadata: the run id, the task and, inside a node, the
        iteration (prefixed: LangGraph's server puts its own ``run_id`` into the metadata)."""
        metadata: dict[str, str | int] = {"synthgen_run_id": self.run_id, "synthgen_task": self.task,
                                          "synthgen_planner": self.planner_kind}
        if iteration is not None:
            metadata["synthgen_iteration"] = iteration
        return metadata
