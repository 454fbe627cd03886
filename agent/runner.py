"""The run lifecycle: start and resume runs (build the run context, drive the graph, keep the run index current),
and replay them (agent/replay.py)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.cassette import Cassette
from agent.config import RunConfig, check_environment
from agent.context import RunContext
from agent.graph import compile_graph, recursion_limit
from agent.pipeline import open_pipeline
from agent.planner import Planner, build_planner
from agent.replay import ReplayOutcome, replay_run
from agent.toolbox import RecordedToolbox, Toolbox
from agent.trace import Redactor, TraceEvent, TraceWriter, read_trace
from memory.checkpoint import load_state, make_checkpointer, thread_config
from memory.lessons import make_store
from memory.runs import RunPaths, RunStore

#: Called after every graph step with (node name, the node's state update).
StepCallback = Callable[[str, dict[str, Any]], None]


@dataclass
class RunOutcome:
    run_id: str
    paths: RunPaths
    state: dict[str, Any]
    interrupted: bool = False


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("synthgen-agent", "langgraph", "transformers", "peft", "torch", "datasets"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


#: Opens the toolbox a run works with (tests substitute one that injects faults).
ToolboxFactory = Callable[[RunConfig, RunPaths, Redactor], "contextlib.AbstractContextManager[Toolbox]"]


class Runner:
    """Runs the agent; one instance per command."""

    def __init__(self, store: RunStore, toolbox_factory: ToolboxFactory = open_pipeline,
                 on_step: StepCallback | None = None,
                 planner_factory: Callable[[RunConfig], Planner | None] = build_planner,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.toolbox_factory = toolbox_factory
        self.on_step = on_step
        self.planner_factory = planner_factory
        #: What node durations are measured with (a test's fake clock makes the budget arithmetic exact).
        self.clock = clock

    # ----- start / resume ----------------------------------------------------------------------------------------
    def start(self, config: RunConfig, run_id: str | None = None) -> RunOutcome:
        check_environment(config)
        redactor = Redactor()
        config_dump = redactor.value(config.model_dump(mode="json"))
        paths = self.store.create(config_dump, task=_task_label(config), planner=config.planner.kind, run_id=run_id)
        trace = TraceWriter(paths.trace, paths.run_id, redactor)
        trace.emit("run_start", config=config_dump, versions=versions())
        return self._drive(config, paths, redactor, trace, {"run_id": paths.run_id})

    def resume(self, run_id: str) -> RunOutcome:
        paths = self.store.paths(run_id)
        config = RunConfig.model_validate(self.store.load_config(run_id))
        check_environment(config)
        redactor = Redactor()
        trace = TraceWriter(paths.trace, paths.run_id, redactor)
        state = load_state(paths)
        if state.get("status") == "finished":
            return RunOutcome(run_id, paths, state)
        trace.emit("run_resume", interrupted_in=_open_node(read_trace(paths.trace)),
                   cassette_len=state.get("cassette_len", 0))
        self.store.update(run_id, status="running")
        # A checkpointed state exists once bootstrap started; before that, start the graph from its input again.
        graph_input: dict[str, Any] | None = None if state else {"run_id": run_id}
        return self._drive(config, paths, redactor, trace, graph_input, truncate_to=state.get("cassette_len", 0))

    def _drive(self, config: RunConfig, paths: RunPaths, redactor: Redactor, trace: TraceWriter,
               graph_input: dict[str, Any] | None, truncate_to: int | None = None) -> RunOutcome:
        started = self.clock()
        cassette = Cassette(paths.cassette, "record", redactor)
        if truncate_to is not None:
            cassette.truncate(truncate_to)
        checkpointer = make_checkpointer(paths.checkpoints)
        lessons = make_store(config.runs_dir / "lessons.sqlite")
        interrupted = False
        try:
            with self.toolbox_factory(config, paths, redactor) as toolbox:
                context = RunContext(run_id=paths.run_id, budget=config.budget,
                                     tools=RecordedToolbox(toolbox, cassette, trace), trace=trace, cassette=cassette,
                                     planner_kind=config.planner.kind, planner=self.planner_factory(config),
                                     lessons=lessons, learning=config.learning, clock=self.clock, started=started)
                graph = compile_graph(checkpointer=checkpointer, store=lessons)
                run_config = thread_config(paths.run_id, recursion_limit(config.budget.max_iterations))
                for update in graph.stream(graph_input, config=run_config, context=context, stream_mode="updates"):
                    for node, values in update.items():
                        if self.on_step is not None and isinstance(values, dict):
                            self.on_step(node, values)
        except KeyboardInterrupt:
            interrupted = True
            trace.emit("error", error="interrupted by the user (Ctrl-C); resume with `synthgen resume "
                                      f"{paths.run_id}`")
        except Exception as exc:
            trace.emit("error", error=redactor.text(f"{type(exc).__name__}: {exc}"))
            self.store.update(paths.run_id, status="failed")
            raise
        state = load_state(paths)
        self._index(paths, state, interrupted)
        if not interrupted:
            trace.emit("run_end", status=state.get("status"), best_adapter=state.get("best_adapter"))
        return RunOutcome(paths.run_id, paths, state, interrupted=interrupted)

    def _index(self, paths: RunPaths, state: dict[str, Any], interrupted: bool) -> None:
        evaluations = state.get("evaluations", [])
        best = min((e["bpc"] for e in evaluations), default=None)
        submissions = state.get("submissions", [])
        last = submissions[-1] if submissions else {}
        self.store.update(
            paths.run_id,
            status="interrupted" if interrupted else state.get("status", "running"),
            best_dev_bpc=best,
            base_dev_bpc=(state.get("baseline") or {}).get("bpc"),
            validation_bpc=last.get("validation_bpc"),
            base_validation_bpc=last.get("base_validation_bpc"),
            iterations=state.get("iteration", 0),
            submissions=len(submissions),
        )

    # ----- replay -------------------------------------------------------------------------------------------------
    def replay(self, run_id: str, run_dir: Path | None = None) -> ReplayOutcome:
        """Re-execute a recorded run from its cassette and check it takes the same decisions in the same order."""
        return replay_run(RunPaths(run_dir) if run_dir else self.store.paths(run_id))


def _task_label(config: RunConfig) -> str:
    if config.task.kind == "flock":
        return f"flock:{config.task.task_id}"
    if config.task.kind == "dir":
        return f"dir:{config.task.task_dir}"
    return config.task.kind


def _open_node(events: list[TraceEvent]) -> str | None:
    """The node that started last and never ended: where the previous process stopped."""
    open_nodes: list[str] = []
    for event in events:
        if event.type == "node_start" and event.node:
            open_nodes.append(event.node)
        elif event.type == "node_end" and event.node in open_nodes:
            open_nodes.remove(event.node)
    return open_nodes[-1] if open_nodes else None
