"""The graph's nodes. Each reads the state, calls typed tools through the run context, and returns an update.

Nodes hold no I/O of their own: files, models and the network are behind ``runtime.context.tools`` (recorded),
and planners behind ``runtime.context.cassette`` (recorded), so a run replays from its cassette alone.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

from langgraph.runtime import Runtime
from langgraph.types import Command

from agent.context import RunContext
from agent.planner import allowed_actions, decision_schema, parse_decision, render_planner_prompt
from agent.policy import PlanView, check_decision, policy_decision, training_time_limit
from agent.state import (
    AdapterInfo,
    AgentState,
    BudgetUsage,
    Decision,
    DecisionRecord,
    DecisionSource,
    EvalSummary,
    TaskInfo,
)

NodeFn = TypeVar("NodeFn", bound=Callable[..., Any])
PlanRoute = Literal["generate", "train", "evaluate", "submit", "finish"]
PLAN_ROUTES: dict[str, PlanRoute] = {"generate": "generate", "train": "train", "evaluate": "evaluate",
                                     "submit": "submit", "stop": "finish"}


def traced(name: str) -> Callable[[NodeFn], NodeFn]:
    """Trace a node's start and end, add its (recorded) duration to the budget, and checkpoint the cassette
    position with its update so a resume replays nothing twice."""

    def wrap(fn: NodeFn) -> NodeFn:
        @functools.wraps(fn)
        def node(state: AgentState, runtime: Runtime[RunContext]) -> Any:
            ctx = runtime.context
            iteration = state.get("iteration", 0)
            ctx.tools.node, ctx.tools.iteration = name, iteration
            ctx.trace.emit("node_start", node=name, iteration=iteration)
            started = time.time()
            result = fn(state, runtime)
            seconds = ctx.tools.measure(name, time.time() - started)
            update = result.update if isinstance(result, Command) else result
            update = dict(update or {})
            usage = BudgetUsage.model_validate(update.get("usage") or state.get("usage") or {})
            usage.wall_seconds = round(usage.wall_seconds + seconds, 3)
            update["usage"] = usage.model_dump()
            update["cassette_len"] = len(ctx.cassette)
            goto = result.goto if isinstance(result, Command) else None
            ctx.trace.emit("node_end", node=name, iteration=update.get("iteration", iteration), seconds=seconds,
                           goto=goto if isinstance(goto, str) else None)
            return Command(update=update, goto=goto) if isinstance(result, Command) else update

        return cast(NodeFn, node)

    return wrap


def _usage(state: AgentState) -> BudgetUsage:
    return BudgetUsage.model_validate(state.get("usage") or {})


@traced("bootstrap")
def bootstrap(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Fetch the task, download/validate/profile/split its data, and score the base model on dev."""
    ctx = runtime.context
    prepared = ctx.tools.prepare_task()
    baseline = ctx.tools.evaluate(None, "dev")
    ctx.trace.emit("metrics", node="bootstrap", scope="baseline_dev", bpc=baseline.bpc,
                   per_category={c: s.bpc for c, s in baseline.per_category.items()},
                   task_metric=baseline.task_metric)
    dataset = prepared.dataset.model_dump(mode="json")
    return {
        "status": "running",
        "iteration": 0,
        "task": prepared.task.model_dump(mode="json"),
        "dataset": dataset,
        "datasets": [dataset],
        "baseline": baseline.model_dump(mode="json"),
        "evaluations": [],
        "adapters": [],
        "best_adapter": None,
        "pending": None,
        "decisions": [],
        "usage": BudgetUsage().model_dump(),
        "no_gain_streak": 0,
        "submissions": [],
        "test_report": None,
        "error": None,
    }


def _propose(ctx: RunContext, view: PlanView, lessons: list[str]) -> DecisionRecord:
    """Ask the planner; one retry with the guardrail's reason; then the policy decides."""
    if ctx.planner_kind == "policy" or ctx.planner is None:
        return DecisionRecord(iteration=view.iteration, decision=policy_decision(view), source="policy",
                              guardrail="ok")
    planner = ctx.planner
    schema = decision_schema(list(view.task.categories), allowed_actions(view) or ["stop"])
    last_error: str | None = None
    for source in ("llm", "retry"):
        prompt, prompt_hash = render_planner_prompt(view, lessons, last_error)
        from prompts import load_prompt

        inputs = {"prompt_id": "plan", "prompt_file_hash": load_prompt("plan").file_hash,
                  "prompt_hash": prompt_hash, "planner": planner.name}
        ctx.trace.emit("planner_input", node="plan", iteration=view.iteration, attempt=source,
                       input_hash=prompt_hash, prompt=prompt)
        messages = [{"role": "user", "content": prompt}]
        raw = ctx.cassette.call("planner", planner.name, inputs,
                                lambda messages=messages: planner.propose(messages, schema),  # type: ignore[misc]
                                encode=lambda text: text, decode=str)
        ctx.trace.emit("planner_output", node="plan", iteration=view.iteration, attempt=source, raw=raw)
        decision, problem = parse_decision(raw)
        if decision is not None:
            problem = check_decision(decision, view)
        if problem is None and decision is not None:
            decided: DecisionSource = "llm" if source == "llm" else "retry"
            return DecisionRecord(iteration=view.iteration, decision=decision, source=decided, guardrail="ok",
                                  raw_output=raw, input_hash=prompt_hash)
        last_error = problem
    fallback = policy_decision(view)
    return DecisionRecord(iteration=view.iteration, decision=fallback, source="override",
                          guardrail=f"planner rejected twice: {last_error}", input_hash=None)


@traced("plan")
def plan(state: AgentState, runtime: Runtime[RunContext]) -> Command[PlanRoute]:
    """Decide the next action (planner, guardrail, retry, policy) and route to it."""
    ctx = runtime.context
    view = PlanView.from_state(state, ctx.budget)
    lessons: list[str] = []
    if ctx.planner_kind != "policy":
        store = ctx.lessons
        from memory.lessons import lessons_for

        lessons = ctx.tools.lessons(view.task.task_type,
                                    lambda: lessons_for(store, view.task.task_type) if store is not None else [])
    record = _propose(ctx, view, lessons)
    # Whatever the planner said, the guardrail has the last word (the policy's own decisions are checked too).
    problem = check_decision(record.decision, view)
    if problem is not None:
        record = DecisionRecord(iteration=view.iteration, decision=Decision(action="stop", rationale=problem),
                                source="override", guardrail=problem)
    ctx.trace.emit("decision", node="plan", iteration=view.iteration, action=record.decision.action,
                   targets=record.decision.targets, rationale=record.decision.rationale, source=record.source,
                   guardrail=record.guardrail)
    dumped = record.model_dump(mode="json")
    return Command(update={"pending": dumped, "decisions": [*state.get("decisions", []), dumped]},
                   goto=PLAN_ROUTES[record.decision.action])


@traced("generate")
def generate(state: AgentState, runtime: Runtime[RunContext]) -> Command[Literal["plan"]]:
    """Generate synthetic data for the decided targets: a new dataset version."""
    ctx = runtime.context
    record = DecisionRecord.model_validate(state["pending"])
    usage = _usage(state)
    view = PlanView.from_state(state, ctx.budget)
    outcome = ctx.tools.generate(record.decision.targets, state.get("iteration", 0) + 1,
                                 int(max(0, view.remaining()["generation_tokens"])))
    usage.synthetic_examples += sum(outcome.accepted_per_category.values())
    usage.generation_tokens += outcome.generation_tokens
    ctx.trace.emit("metrics", node="generate", iteration=state.get("iteration", 0), scope="generation",
                   accepted=outcome.accepted_per_category,
                   rejected=outcome.rejected_per_reason, stop_reason=outcome.stop_reason)
    dataset = {**outcome.dataset.model_dump(mode="json"), "generation_seconds": round(outcome.seconds, 1)}
    return Command(update={"dataset": dataset, "datasets": [*state.get("datasets", []), dataset],
                           "usage": usage.model_dump(), "pending": None}, goto="plan")


@traced("train")
def train(state: AgentState, runtime: Runtime[RunContext]) -> Command[Literal["evaluate"]]:
    """Train a fresh adapter on the current dataset version; it is evaluated next."""
    ctx = runtime.context
    record = DecisionRecord.model_validate(state["pending"])
    usage = _usage(state)
    view = PlanView.from_state(state, ctx.budget)
    left = view.remaining()
    adapter = ctx.tools.train(view.dataset.version, state.get("iteration", 0) + 1, record.decision.train_overrides,
                              int(max(0, left["train_tokens"])), training_time_limit(left["wall_seconds"], ctx.budget))
    usage.train_tokens += adapter.train_tokens
    return Command(update={"adapters": [*state.get("adapters", []), adapter.model_dump(mode="json")],
                           "usage": usage.model_dump(), "pending": None}, goto="evaluate")


@traced("evaluate")
def evaluate(state: AgentState, runtime: Runtime[RunContext]) -> Command[Literal["plan"]]:
    """Score the newest unevaluated adapter on dev; keep the best; count rounds without gain."""
    ctx = runtime.context
    view = PlanView.from_state(state, ctx.budget)
    adapter = view.unevaluated_adapter
    if adapter is None:
        return Command(update={"pending": None}, goto="plan")
    result = ctx.tools.evaluate(adapter.adapter_id, "dev")
    best = view.evaluation_of(view.best_adapter) if view.best_adapter else None
    reference_bpc = best.bpc if best is not None else view.baseline.bpc
    gained = result.bpc < reference_bpc * (1 - ctx.budget.min_relative_gain)
    best_adapter = adapter.adapter_id if best is None or result.bpc < best.bpc else view.best_adapter
    usage = _usage(state)
    usage.iterations += 1
    ctx.trace.emit("metrics", node="evaluate", iteration=view.iteration + 1, scope="adapter_dev",
                   adapter_id=adapter.adapter_id, bpc=result.bpc, reference_bpc=reference_bpc, gained=gained,
                   per_category={c: s.bpc for c, s in result.per_category.items()}, task_metric=result.task_metric)
    return Command(update={
        "evaluations": [*state.get("evaluations", []), result.model_dump(mode="json")],
        "best_adapter": best_adapter,
        "no_gain_streak": 0 if gained else state.get("no_gain_streak", 0) + 1,
        "iteration": view.iteration + 1,
        "usage": usage.model_dump(),
        "pending": None,
    }, goto="plan")


@traced("submit")
def submit(state: AgentState, runtime: Runtime[RunContext]) -> Command[Literal["plan"]]:
    """Publish the best adapter and submit it to FLock."""
    ctx = runtime.context
    best = state.get("best_adapter")
    if not best:  # the guardrail never routes here without one; a corrupt state should not submit anything
        return Command(update={"pending": None, "error": "submit without a best adapter"}, goto="plan")
    receipt = ctx.tools.submit(best)
    usage = _usage(state)
    usage.submissions += 1
    ctx.trace.emit("metrics", node="submit", iteration=state.get("iteration", 0), scope="submission",
                   adapter_id=best, repo_id=receipt.repo_id,
                   revision=receipt.revision, validation_bpc=receipt.validation_bpc,
                   base_validation_bpc=receipt.base_validation_bpc)
    return Command(update={"submissions": [*state.get("submissions", []), receipt.model_dump(mode="json")],
                           "usage": usage.model_dump(), "pending": None}, goto="plan")


@traced("finish")
def finish(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Report base vs best adapter on test, write cross-run lessons, and close the run."""
    ctx = runtime.context
    comparison = ctx.tools.compare_on_test(state.get("best_adapter"))
    ctx.trace.emit("metrics", node="finish", iteration=state.get("iteration", 0), scope="test",
                   base_bpc=comparison.base.bpc,
                   adapter_bpc=comparison.adapter.bpc if comparison.adapter else None, deltas=comparison.deltas)
    if ctx.lessons is not None and not ctx.replaying:
        _write_lessons(ctx, state)
    return {"test_report": comparison.model_dump(mode="json"), "status": "finished", "pending": None}


def _write_lessons(ctx: RunContext, state: AgentState) -> None:
    """For each generate decision, the dev-BPC change of its target categories in the next evaluation."""
    from memory.lessons import record_gain

    assert ctx.lessons is not None
    task = TaskInfo.model_validate(state["task"])
    evaluations = [EvalSummary.model_validate(e) for e in state.get("evaluations", [])]
    adapters = [AdapterInfo.model_validate(a) for a in state.get("adapters", [])]
    before = EvalSummary.model_validate(state["baseline"])
    decisions = [DecisionRecord.model_validate(d) for d in state.get("decisions", [])]
    generate_rounds = [d for d in decisions if d.decision.action == "generate"]
    for round_index, decision in enumerate(generate_rounds):
        if round_index >= len(evaluations) or round_index >= len(adapters):
            break
        after = evaluations[round_index]
        for category, count in decision.decision.targets.items():
            if category in before.per_category and category in after.per_category:
                record_gain(ctx.lessons, task_type=task.task_type, strategy="targeted", category=category,
                            examples=count, bpc_before=before.per_category[category].bpc,
                            bpc_after=after.per_category[category].bpc, run_id=ctx.run_id)
        before = after
