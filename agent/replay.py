"""Replay checking: re-execute a recorded run from its cassette and check it takes the same decisions.

The graph runs again with the cassette (agent/cassette.py) in replay mode and no live toolbox: every planner answer
and tool result comes from the recording, so the replay is offline and takes seconds. It fails on the first call
that was not recorded (naming the prompt file when the planner prompt changed), on a decision that differs from
the recorded trace, or when recorded calls are left over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent.cassette import Cassette, ReplayMismatch
from agent.config import RunConfig
from agent.context import RunContext
from agent.graph import compile_graph, recursion_limit
from agent.planner import Planner
from agent.state import DecisionRecord
from agent.toolbox import RecordedToolbox
from agent.trace import Redactor, TraceEvent, TraceWriter, read_trace
from memory.checkpoint import make_checkpointer, thread_config
from memory.runs import RunPaths


@dataclass
class ReplayOutcome:
    run_id: str
    decisions: list[DecisionRecord]
    calls_replayed: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class ReplayPlanner:
    """Stands for the recorded planner during a replay: answers come from the cassette, never from here."""

    def __init__(self, name: str):
        self.name = name

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
        raise ReplayMismatch("the replay asked the planner for an answer that was not recorded")


def recorded_decisions(events: list[TraceEvent]) -> list[DecisionRecord]:
    """Every decision of a trace that the run kept, in order. A node killed after writing its decision but before
    its state was checkpointed runs again on resume and decides again; the ``run_resume`` event says how many
    decisions the checkpoint held, so the lost one is dropped."""
    decisions: list[DecisionRecord] = []
    for event in events:
        if event.type == "decision":
            decisions.append(DecisionRecord.from_trace(event))
        elif event.type == "run_resume" and "decisions" in event.data:
            del decisions[int(event.data["decisions"]):]
    return decisions


def compare_decisions(recorded: list[DecisionRecord], replayed: list[DecisionRecord]) -> list[str]:
    """The first difference between two decision sequences (iteration, action, targets and source, then strategies
    and training overrides), if any."""
    for index, (before, after) in enumerate(zip(recorded, replayed, strict=False)):
        if before.replay_key != after.replay_key:
            return [f"decision #{index} differs: recorded {before.replay_key}, replayed {after.replay_key}"]
        if before.replay_detail != after.replay_detail:
            return [f"decision #{index} differs: recorded {before.replay_detail}, replayed {after.replay_detail}"]
    if len(recorded) != len(replayed):
        return [f"the recording has {len(recorded)} decisions, the replay took {len(replayed)}"]
    return []


def replay_run(paths: RunPaths) -> ReplayOutcome:
    """Re-execute the run recorded in ``paths`` and compare its decisions with the recorded trace. The replay's
    own trace goes to ``<run>/.replay/trace.jsonl``."""
    config = RunConfig.model_validate(json.loads(paths.config.read_text(encoding="utf-8")))
    recorded = recorded_decisions(read_trace(paths.trace))
    cassette = Cassette(paths.cassette, "replay")
    scratch = paths.root / ".replay"
    scratch.mkdir(exist_ok=True)
    (scratch / "trace.jsonl").unlink(missing_ok=True)
    trace = TraceWriter(scratch / "trace.jsonl", paths.run_id, Redactor(env={}))
    planner: Planner | None = None if config.planner.kind == "policy" else ReplayPlanner(config.planner.model)
    context = RunContext(run_id=paths.run_id, budget=config.budget, tools=RecordedToolbox(None, cassette, trace),
                         trace=trace, cassette=cassette, planner_kind=config.planner.kind, planner=planner,
                         lessons=None, learning=config.learning)
    graph = compile_graph(checkpointer=make_checkpointer(None))
    problems: list[str] = []
    try:
        graph.invoke({"run_id": paths.run_id},
                     config=thread_config(paths.run_id, recursion_limit(config.budget.max_iterations)),
                     context=context)
    except ReplayMismatch as exc:
        problems.append(str(exc))
    replayed = recorded_decisions(read_trace(scratch / "trace.jsonl"))
    if not problems:
        problems.extend(compare_decisions(recorded, replayed))
        if not cassette.exhausted():
            problems.append(f"the replay ended after {cassette.position} of {len(cassette.entries)} recorded calls")
    return ReplayOutcome(paths.run_id, replayed, cassette.position, problems)
