"""The run lifecycle: start and resume runs (build the run context, drive the graph, keep the run index current),
and replay them (agent/replay.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.cassette import Cassette
from agent.config import RunConfig, check_environment
from agent.context import RunContext
from agent.graph import compile_graph, recursion_limit
from agent.pipeline import open_pipeline, resolve_base_model
from agent.planner import Planner, build_planner
from agent.replay import ReplayOutcome, replay_run
from agent.toolbox import RecordedToolbox, Toolbox
from agent.trace import Redactor, TraceEvent, TraceWriter, read_trace
from memory.checkpoint import load_state, make_checkpointer, thread_config
from memory.lessons import make_store
from memory.runs import RunPaths, RunStore, index_fields, task_label
from tools.versions import software_versions

#: Called after every graph step with (node name, the node's state update).
StepCallback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class OpenRun:
    """A run folder open for writing: its configuration, paths, the redactor of its secrets and its trace."""

    config: RunConfig
    paths: RunPaths
    redactor: Redactor
    trace: TraceWriter


@dataclass
class RunOutcome:
    run_id: str
    paths: RunPaths
    state: dict[str, Any]
    interrupted: bool = False


def tracing_config(context: RunContext) -> dict[str, Any]:
    """The metadata and tags a run's graph is invoked with, so LangSmith runs name the run and its task (each node
    adds its iteration: agent/nodes.py)."""
    return {"metadata": context.tracing_metadata(), "tags": ["synthgen", f"synthgen-task:{context.task}"]}


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
        run = self.create(config, run_id)
        return self._drive(run, {"run_id": run.paths.run_id})

    def resume(self, run_id: str) -> RunOutcome:
        paths = self.store.paths(run_id)
        state = load_state(paths)
        if state.get("status") == "finished":
            return RunOutcome(run_id, paths, state)
        run = self.reopen(run_id, state.get("cassette_len", 0), len(state.get("decisions", [])))
        # A checkpointed state exists once bootstrap started; before that, start the graph from its input again.
        graph_input: dict[str, Any] | None = None if state else {"run_id": run_id}
        return self._drive(run, graph_input, truncate_to=state.get("cassette_len", 0))

    def create(self, config: RunConfig, run_id: str | None = None) -> OpenRun:
        """A new run folder: its configuration saved (secrets redacted), indexed, and its run_start traced."""
        check_environment(config)
        config, base_model_choice = resolve_base_model(config)
        redactor = Redactor()
        config_dump = redactor.value(config.model_dump(mode="json"))
        paths = self.store.create(config_dump, task=task_label(config_dump["task"]), planner=config.planner.kind,
                                  run_id=run_id)
        trace = TraceWriter(paths.trace, paths.run_id, redactor)
        trace.emit("run_start", config=config_dump, versions=software_versions())
        if base_model_choice is not None:
            trace.emit("metrics", scope="base_model_choice", **base_model_choice.model_dump(mode="json"))
        return OpenRun(config, paths, redactor, trace)

    def reopen(self, run_id: str, cassette_len: int, decisions: int) -> OpenRun:
        """An existing run folder, to continue from the checkpoint that covers ``cassette_len`` recorded calls and
        holds ``decisions`` decisions (the trace may hold more, from a node killed before its checkpoint)."""
        paths = self.store.paths(run_id)
        config = RunConfig.model_validate(self.store.load_config(run_id))
        check_environment(config)
        redactor = Redactor()
        trace = TraceWriter(paths.trace, paths.run_id, redactor)
        trace.emit("run_resume", interrupted_in=_open_node(read_trace(paths.trace)), cassette_len=cassette_len,
                   decisions=decisions)
        self.store.adopt(run_id, task=task_label(config.task.model_dump(mode="json")), planner=config.planner.kind)
        self.store.update(run_id, status="running")
        return OpenRun(config, paths, redactor, trace)

    @contextlib.contextmanager
    def open_context(self, run: OpenRun, truncate_to: int | None = None) -> Iterator[RunContext]:
        """The run's live context (cassette, lessons store, planner, and the toolbox, open while the context is);
        ``truncate_to`` cuts the cassette back to the calls a checkpoint covers."""
        # The bootstrap's time counts from here: the toolbox's setup (the environment, the simulator) is the run's.
        started = self.clock()
        cassette = Cassette(run.paths.cassette, "record", run.redactor)
        if truncate_to is not None:
            cassette.truncate(truncate_to)
        config = run.config
        with self.toolbox_factory(config, run.paths, run.redactor) as toolbox:
            yield RunContext(run_id=run.paths.run_id, budget=config.budget,
                             tools=RecordedToolbox(toolbox, cassette, run.trace), trace=run.trace, cassette=cassette,
                             planner_kind=config.planner.kind, planner=self.planner_factory(config),
                             lessons=make_store(config.runs_dir / "lessons.sqlite"),
                             task=task_label(config.task.model_dump(mode="json")),
                             learning=config.learning, task_metric=config.eval.task_metric, clock=self.clock,
                             started=started)

    def _drive(self, run: OpenRun, graph_input: dict[str, Any] | None, truncate_to: int | None = None) -> RunOutcome:
        paths = run.paths
        checkpointer = make_checkpointer(paths.checkpoints)
        interrupted = False
        try:
            with self.open_context(run, truncate_to) as context:
                graph = compile_graph(checkpointer=checkpointer, store=context.lessons)
                run_config = {**thread_config(paths.run_id, recursion_limit(run.config.budget.max_iterations)),
                              **tracing_config(context)}
                for update in graph.stream(graph_input, config=run_config, context=context, stream_mode="updates"):
                    for node, values in update.items():
                        if self.on_step is not None and isinstance(values, dict):
                            self.on_step(node, values)
        except KeyboardInterrupt:
            interrupted = True
            run.trace.emit("error", error="interrupted by the user (Ctrl-C); resume with `synthgen resume "
                                          f"{paths.run_id}`")
        except Exception as exc:
            self.record_failure(run, exc)
            raise
        state = load_state(paths)
        self.record_end(run, state, interrupted)
        return RunOutcome(paths.run_id, paths, state, interrupted=interrupted)

    def record_failure(self, run: OpenRun, exc: Exception) -> None:
        """Trace the error that ended a run and mark it failed in the index."""
        run.trace.emit("error", error=run.redactor.text(f"{type(exc).__name__}: {exc}"))
        self.store.update(run.paths.run_id, status="failed")

    def record_end(self, run: OpenRun, state: dict[str, Any], interrupted: bool) -> None:
        """Index the run's state (status, scores) and, unless it was interrupted, trace its end."""
        self._index(run.paths, state, interrupted)
        if not interrupted:
            run.trace.emit("run_end", status=state.get("status"), best_adapter=state.get("best_adapter"))

    def _index(self, paths: RunPaths, state: dict[str, Any], interrupted: bool) -> None:
        self.store.update(paths.run_id, status="interrupted" if interrupted else state.get("status", "running"),
                          **index_fields(state))

    # ----- replay -------------------------------------------------------------------------------------------------
    def replay(self, run_id: str, run_dir: Path | None = None) -> ReplayOutcome:
        """Re-execute a recorded run from its cassette and check it takes the same decisions in the same order."""
        return replay_run(RunPaths(run_dir) if run_dir else self.store.paths(run_id))


def _open_node(events: list[TraceEvent]) -> str | None:
    """The node that started last and never ended: where the previous process stopped."""
    open_nodes: list[str] = []
    for event in events:
        if event.type == "node_start" and event.node:
            open_nodes.append(event.node)
        elif event.type == "node_end" and event.node in open_nodes:
            open_nodes.remove(event.node)
    return open_nodes[-1] if open_nodes else None
