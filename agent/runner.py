"""Start, resume and replay runs: builds the run context, drives the graph, and keeps the run index current."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import RunConfig, check_environment
from agent.context import RunContext
from agent.graph import compile_graph, recursion_limit
from agent.planner import LLMPlanner, LocalPlanner, Planner
from agent.replay import Cassette, ReplayMismatch
from agent.state import AgentState
from agent.toolbox import RecordedToolbox, Toolbox
from agent.trace import Redactor, TraceEvent, TraceWriter, read_trace
from memory.checkpoint import make_checkpointer, strict_serializer, thread_config
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


@dataclass
class ReplayOutcome:
    run_id: str
    decisions: list[tuple[int, str, dict[str, int], str]]
    calls_replayed: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("synthgen-agent", "langgraph", "transformers", "peft", "torch", "datasets"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def build_planner(config: RunConfig) -> Planner | None:
    """The configured planner; None for the policy (it needs no model)."""
    if config.planner.kind == "policy":
        return None
    if config.planner.kind == "local":
        return LocalPlanner(config.planner.model)
    import os

    api_key = os.environ.get(config.planner.api_key_env)
    chat_model: Any
    if config.planner.provider == "openai":
        from langchain_openai import ChatOpenAI

        chat_model = ChatOpenAI(model=config.planner.model, base_url=config.planner.base_url,
                                api_key=api_key or "not-needed", temperature=0, timeout=120, max_retries=3)
    else:
        from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

        endpoint = HuggingFaceEndpoint(  # type: ignore[call-arg]
            endpoint_url=config.planner.base_url, repo_id=None if config.planner.base_url else config.planner.model,
            huggingfacehub_api_token=api_key, temperature=0.01, max_new_tokens=512)
        chat_model = ChatHuggingFace(llm=endpoint)
    return LLMPlanner(chat_model, name=config.planner.model)


class ReplayPlanner:
    """Stands for the recorded planner during a replay: answers come from the cassette, never from here."""

    def __init__(self, name: str):
        self.name = name

    def propose(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
        raise ReplayMismatch("the replay asked the planner for an answer that was not recorded")


ToolboxFactory = Callable[[RunConfig, RunPaths, Redactor], "contextlib.AbstractContextManager[Toolbox]"]


def default_toolbox_factory(config: RunConfig, paths: RunPaths, redactor: Redactor
                            ) -> contextlib.AbstractContextManager[Toolbox]:
    from agent.pipeline import open_pipeline

    return open_pipeline(config, paths, redactor)


class Runner:
    """Runs the agent; one instance per command."""

    def __init__(self, store: RunStore, toolbox_factory: ToolboxFactory = default_toolbox_factory,
                 on_step: StepCallback | None = None,
                 planner_factory: Callable[[RunConfig], Planner | None] = build_planner):
        self.store = store
        self.toolbox_factory = toolbox_factory
        self.on_step = on_step
        self.planner_factory = planner_factory

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
                                     lessons=lessons)
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
        paths = RunPaths(run_dir) if run_dir else self.store.paths(run_id)
        config = RunConfig.model_validate(_read_json(paths.config))
        recorded = recorded_decisions(read_trace(paths.trace))
        cassette = Cassette(paths.cassette, "replay")
        scratch = paths.root / ".replay"
        scratch.mkdir(exist_ok=True)
        (scratch / "trace.jsonl").unlink(missing_ok=True)
        trace = TraceWriter(scratch / "trace.jsonl", paths.run_id, Redactor(env={}))
        planner: Planner | None = None if config.planner.kind == "policy" else ReplayPlanner(config.planner.model)
        context = RunContext(run_id=paths.run_id, budget=config.budget, tools=RecordedToolbox(None, cassette, trace),
                             trace=trace, cassette=cassette, planner_kind=config.planner.kind, planner=planner,
                             lessons=None)
        graph = compile_graph(checkpointer=make_checkpointer(None))
        problems: list[str] = []
        try:
            graph.invoke({"run_id": paths.run_id}, config=thread_config(paths.run_id,
                                                                       recursion_limit(config.budget.max_iterations)),
                         context=context)
        except ReplayMismatch as exc:
            problems.append(str(exc))
        replayed = recorded_decisions(read_trace(scratch / "trace.jsonl"))
        if not problems:
            problems.extend(compare_decisions(recorded, replayed))
            if not cassette.exhausted():
                problems.append(f"the replay ended after {cassette.position} of {len(cassette.entries)} recorded calls")
        return ReplayOutcome(paths.run_id, replayed, cassette.position, problems)


def _task_label(config: RunConfig) -> str:
    if config.task.kind == "flock":
        return f"flock:{config.task.task_id}"
    if config.task.kind == "dir":
        return f"dir:{config.task.task_dir}"
    return config.task.kind


def _read_json(path: Path) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def load_state(paths: RunPaths) -> dict[str, Any]:
    """The run's latest checkpointed state ({} when no checkpoint exists yet), read in strict mode."""
    if not paths.checkpoints.exists():
        return {}
    from langgraph.checkpoint.sqlite import SqliteSaver

    with contextlib.closing(_connect_readonly(paths.checkpoints)) as conn:
        saver = SqliteSaver(conn, serde=strict_serializer())
        found = saver.get_tuple({"configurable": {"thread_id": paths.run_id}})
    if found is None:
        return {}
    values: AgentState = found.checkpoint["channel_values"]  # type: ignore[assignment]
    return {k: v for k, v in values.items() if not k.startswith("branch:")}


def _open_node(events: list[TraceEvent]) -> str | None:
    """The node that started last and never ended: where the previous process stopped."""
    open_nodes: list[str] = []
    for event in events:
        if event.type == "node_start" and event.node:
            open_nodes.append(event.node)
        elif event.type == "node_end" and event.node in open_nodes:
            open_nodes.remove(event.node)
    return open_nodes[-1] if open_nodes else None


def _connect_readonly(path: Path) -> Any:
    import sqlite3

    return sqlite3.connect(str(path), check_same_thread=False)


def recorded_decisions(events: list[TraceEvent]) -> list[tuple[int, str, dict[str, int], str]]:
    """(iteration, action, targets, source) of every decision event, in order."""
    return [(e.iteration, e.data["action"], dict(e.data.get("targets") or {}), e.data["source"])
            for e in events if e.type == "decision"]


def compare_decisions(recorded: list[tuple[int, str, dict[str, int], str]],
                      replayed: list[tuple[int, str, dict[str, int], str]]) -> list[str]:
    for index, (before, after) in enumerate(zip(recorded, replayed, strict=False)):
        if before != after:
            return [f"decision #{index} differs: recorded {before}, replayed {after}"]
    if len(recorded) != len(replayed):
        return [f"the recording has {len(recorded)} decisions, the replay took {len(replayed)}"]
    return []


