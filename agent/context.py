"""The frozen run context handed to every node through LangGraph's ``Runtime[RunContext]``.

It carries what a run is configured with and the live objects it works with (the toolbox behind the cassette,
the planner, the trace writer, the lessons store). Nothing here is checkpointed: a resumed run builds a new
context from the run's saved configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.store.base import BaseStore

from agent.cassette import Cassette
from agent.planner import Planner
from agent.state import LearningSettings, RunBudget
from agent.toolbox import RecordedToolbox
from agent.trace import TraceWriter

PlannerKind = Literal["llm", "local", "policy"]


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
    #: Extra fields shown in the run_start event (versions, config digest).
    info: dict[str, Any] | None = None
    learning: LearningSettings = field(default_factory=LearningSettings)
    #: The clock node durations are measured with (tests pass a fake one).
    clock: Callable[[], float] = time.time
    #: When the process started working on the run (clock reading): the bootstrap counts the setup before it.
    started: float | None = None

    @property
    def replaying(self) -> bool:
        return self.cassette.mode == "replay"
