"""The graph as LangGraph Studio (``langgraph dev``, through langgraph.json) loads and runs it.

A run started in Studio gets plain settings as its context (:class:`StudioSettings`: the task, a configuration
file, the planner; Studio shows them as a form). The live services a run works with (run folder, trace, cassette,
toolbox, planner) are built from them by the first node the run executes, in the run's own folder under
``runs_dir``, and closed when the server's run ends: the server calls :func:`make_graph` once per run, and it
yields a graph whose nodes are bound to that run's :class:`LiveRun`.

The server keeps the graph's state in its own checkpointer, so a Studio run has no ``checkpoints.sqlite``; its
trace, cassette, data, adapters and evaluations are in its run folder as usual, and the finish node writes the
report there.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph_sdk.runtime import ServerRuntime
from pydantic import BaseModel, ConfigDict, Field

from agent.config import RunConfig, build_config
from agent.context import RunContext
from agent.graph import build_graph
from agent.nodes import GraphNode, Update
from agent.state import AgentState, PlannerKind
from memory.runs import RunNotFound, RunStore

if TYPE_CHECKING:
    from agent.runner import OpenRun, Runner

GRAPH_NAME = "synthgen-agent"
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
BUNDLED_TASKS = ("demo", "demo-fc")


class StudioSettings(BaseModel):
    """What a Studio run starts from. Unset fields keep the configuration file's value (or the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str | None = Field(default=None, description="demo (bundled text-to-SQL), demo-fc (bundled function "
                                                       "calling) or a local task folder; a live FLock task is set "
                                                       "in the configuration file")
    config_path: str | None = Field(default=None, description="a YAML or TOML run configuration file")
    planner: PlannerKind | None = Field(default=None, description="llm, local or policy")
    quick: bool = Field(default=False, description="one short round scored by BPC only")
    runs_dir: str | None = Field(default=None, description="where the run's folder is written")

    def run_config(self) -> RunConfig:
        overrides: dict[str, Any] = {}
        if self.task is not None:
            overrides["task"] = ({"kind": self.task} if self.task in BUNDLED_TASKS
                                 else {"kind": "dir", "task_dir": self.task})
        if self.planner is not None:
            overrides["planner"] = {"kind": self.planner}
        if self.runs_dir is not None:
            overrides["runs_dir"] = self.runs_dir
        return build_config(Path(self.config_path) if self.config_path else None, overrides, quick=self.quick)


class LiveRun:
    """The live services of one server run: opened by the first node the run executes (the state names the run
    folder: a new run, or one a previous server run of the same thread started), closed by :meth:`close`."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.runner: Runner | None = None
        self.run: OpenRun | None = None
        self.context: RunContext | None = None

    def open(self, state: AgentState, settings: StudioSettings) -> RunContext:
        # The runner brings the pipeline (torch, transformers): imported when a run starts, not when the server
        # loads the graph to draw it.
        from agent.runner import Runner

        if self.context is None:  # the graph's nodes run one at a time
            config = settings.run_config()
            runner = Runner(RunStore(config.runs_dir))
            run_id = state.get("run_id") or _thread_run_id()
            if not RUN_ID.fullmatch(run_id):  # it names a folder under runs_dir
                raise ValueError(f"run_id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 100)")
            try:
                runner.store.paths(run_id)
            except RunNotFound:
                self.run = runner.create(config, run_id)
                self.context = self._stack.enter_context(runner.open_context(self.run))
            else:
                cassette_len = state.get("cassette_len", 0)
                self.run = runner.reopen(run_id, cassette_len, len(state.get("decisions", [])))
                self.context = self._stack.enter_context(runner.open_context(self.run, cassette_len))
            self.runner = runner
        return self.context

    def failed(self, exc: Exception) -> None:
        if self.runner is not None and self.run is not None:
            self.runner.record_failure(self.run, exc)

    def finished(self, state: dict[str, Any]) -> None:
        """Index the finished run, trace its end, and write its report."""
        from agent.report import write_report
        from agent.trace import read_trace

        assert self.runner is not None and self.run is not None  # a node opened the run before finishing it
        self.runner.record_end(self.run, state, interrupted=False)
        try:
            write_report(state, read_trace(self.run.paths.trace), self.run.paths.report_dir)
        except Exception as exc:  # the run's result stands without its report (`synthgen report` retries)
            self.run.trace.emit("error", error=f"report not written: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._stack.close()


def _thread_run_id() -> str:
    """A run id for a Studio run started without one: named after its thread, so later runs of the thread find
    its folder (a run without a thread gets a fresh id)."""
    thread_id = get_config().get("configurable", {}).get("thread_id")
    return f"studio-{str(thread_id)[:8]}" if thread_id else RunStore.new_run_id()


def bind_to(live: LiveRun | None) -> Callable[[str, GraphNode], Callable[..., Update]]:
    """A node binder for :func:`agent.graph.build_graph`: each node gets the run context of ``live`` in place of
    the Studio settings it is called with. Without a live run (a graph built for reading) nodes refuse to run."""

    def bind(name: str, step: GraphNode) -> Callable[..., Update]:
        def run(state: AgentState, *, runtime: Runtime[StudioSettings]) -> Update:
            if live is None:
                raise RuntimeError("this graph was built to be read (schemas, drawing), not run; LangGraph's server "
                                   "runs the graph that make_graph yields for a run")
            context = live.open(state, runtime.context or StudioSettings())
            live_runtime: Runtime[RunContext] = replace(cast("Runtime[Any]", runtime), context=context)
            try:
                update = dict(step(state, runtime=live_runtime))
            except Exception as exc:
                live.failed(exc)
                raise
            if not state.get("run_id"):
                update["run_id"] = context.run_id
            if name == "finish":
                # The finish update holds no list fields (their reducers would add to the state, not replace it).
                live.finished({**state, **update})
            return update

        run.__name__, run.__qualname__, run.__doc__ = name, name, step.__doc__
        return run

    return bind


def studio_graph(live: LiveRun | None = None) -> Any:
    """The graph compiled with Studio's context schema (LangGraph's server brings the checkpointer)."""
    return build_graph(context_schema=StudioSettings, bind=bind_to(live)).compile(name=GRAPH_NAME)


@contextlib.asynccontextmanager
async def make_graph(runtime: ServerRuntime) -> AsyncIterator[Any]:
    """The graph factory langgraph.json names: for a run, a graph bound to the run's live services, closed when
    the run ends; for anything else (schemas, drawing, reading state), the same graph without them."""
    if runtime.execution_runtime is None:
        yield studio_graph()
        return
    live = LiveRun()
    try:
        yield studio_graph(live)
    finally:
        # Closing stops the simulator and releases the model: blocking work, kept off the server's event loop.
        await asyncio.to_thread(live.close)
