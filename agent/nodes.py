"""The graph's nodes. Each reads the state, calls typed tools through the run context, and returns an update;
where the run goes next is decided by the routing in agent/graph.py.

Nodes hold no I/O of their own: files, models and the network are behind ``runtime.context.tools`` (recorded),
and planners behind ``runtime.context.cassette`` (recorded), so a run replays from its cassette alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from langgraph.runtime import Runtime

from agent import progress
from agent.context import RunContext
from agent.planner import (
    allowed_actions,
    decision_schema,
    parse_decision,
    recorded_call_inputs,
    render_planner_prompt,
)
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
from agent.trace import annotate_langsmith_run
from memory.lessons import lessons_for, record_gain

Update = dict[str, Any]


class GraphNode(Protocol):
    """A node as LangGraph calls it."""

    def __call__(self, state: AgentState, *, runtime: Runtime[RunContext]) -> Update: ...


@dataclass
class Step:
    """What a node works with: the state it was called with, the run context, and typed views of them."""

    state: AgentState
    ctx: RunContext

    @property
    def iteration(self) -> int:
        return self.state.get("iteration", 0)

    @cached_property
    def view(self) -> PlanView:
        return PlanView.from_state(self.state, self.ctx.budget)

    @property
    def decision(self) -> Decision:
        """The decision this node carries out (set by the plan node)."""
        return DecisionRecord.model_validate(self.state["pending"]).decision

    def usage(self) -> BudgetUsage:
        """A copy of the budget used so far, for the node to add to."""
        return BudgetUsage.model_validate(self.state.get("usage") or {})


def node(name: str) -> Callable[[Callable[[Step], Update]], GraphNode]:
    """Make a graph node of a step function: trace its start and end, show it to people watching (agent.progress),
    add its (recorded) duration to the budget, and checkpoint the cassette position with its update so a resume
    replays nothing twice."""

    def wrap(fn: Callable[[Step], Update]) -> GraphNode:
        def run(state: AgentState, *, runtime: Runtime[RunContext]) -> Update:
            ctx = runtime.context
            iteration = state.get("iteration", 0)
            ctx.tools.node, ctx.tools.iteration = name, iteration
            ctx.trace.emit("node_start", node=name, iteration=iteration)
            annotate_langsmith_run(ctx.tracing_metadata(iteration))
            started = time.time()
            with progress.stage(name, iteration, state.get("usage"), ctx.budget):
                update = dict(fn(Step(state, ctx)))
            seconds = ctx.tools.measure(name, time.time() - started)
            usage = BudgetUsage.model_validate(update.get("usage") or state.get("usage") or {})
            usage.wall_seconds = round(usage.wall_seconds + seconds, 3)
            update["usage"] = usage.model_dump()
            update["cassette_len"] = len(ctx.cassette)
            ctx.trace.emit("node_end", node=name, iteration=update.get("iteration", iteration), seconds=seconds)
            return update

        # Named and documented like the step, but not marked as wrapping it (functools.wraps would): LangGraph
        # reads the node's signature to decide what to pass it.
        run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        return run

    return wrap


@node("bootstrap")
def bootstrap(step: Step) -> Update:
    """Fetch the task, download/validate/profile/split its data, and score the base model on dev."""
    ctx = step.ctx
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


@node("plan")
def plan(step: Step) -> Update:
    """Decide the next action: the planner proposes, the guardrail disposes (graph.py routes to the action)."""
    ctx, view = step.ctx, step.view
    lessons: list[str] = []
    if ctx.planner_kind != "policy":
        store = ctx.lessons
        lessons = ctx.tools.lessons(view.task.task_type,
                                    lambda: lessons_for(store, view.task.task_type) if store is not None else [])
    record = _decide(ctx, view, lessons)
    ctx.trace.emit("decision", node="plan", iteration=view.iteration, **record.trace_data())
    dumped = record.model_dump(mode="json")
    return {"pending": dumped, "decisions": [dumped]}


def _decide(ctx: RunContext, view: PlanView, lessons: list[str]) -> DecisionRecord:
    """Ask the planner, with one retry that shows it the guardrail's reason; then the policy decides. Every
    proposal passes the guardrail once, the policy's own too: a policy decision it refuses becomes a stop."""
    source: DecisionSource = "policy"
    guardrail = "ok"
    if ctx.planner_kind != "policy" and ctx.planner is not None:
        last_error: str | None = None
        attempt: DecisionSource
        for attempt in ("llm", "retry"):
            raw, prompt_hash = _ask_planner(ctx, view, lessons, last_error, attempt)
            decision, problem = parse_decision(raw)
            if decision is not None:
                problem = check_decision(decision, view)
            if problem is None and decision is not None:
                return DecisionRecord(iteration=view.iteration, decision=decision, source=attempt, guardrail="ok",
                                      raw_output=raw, input_hash=prompt_hash)
            last_error = problem
        source, guardrail = "override", f"planner rejected twice: {last_error}"
    fallback = policy_decision(view)
    problem = check_decision(fallback, view)
    if problem is not None:
        return DecisionRecord(iteration=view.iteration, decision=Decision(action="stop", rationale=problem),
                              source="override", guardrail=problem)
    return DecisionRecord(iteration=view.iteration, decision=fallback, source=source, guardrail=guardrail)


def _ask_planner(ctx: RunContext, view: PlanView, lessons: list[str], last_error: str | None,
                 attempt: str) -> tuple[str, str]:
    """The planner's raw answer (recorded) and the hash of the prompt it answered."""
    planner = ctx.planner
    assert planner is not None
    schema = decision_schema(list(view.task.categories), allowed_actions(view) or ["stop"])
    prompt, prompt_hash = render_planner_prompt(view, lessons, last_error)
    ctx.trace.emit("planner_input", node="plan", iteration=view.iteration, attempt=attempt,
                   input_hash=prompt_hash, prompt=prompt)
    messages = [{"role": "user", "content": prompt}]
    raw = ctx.cassette.call("planner", planner.name, recorded_call_inputs(planner.name, prompt_hash),
                            lambda: planner.propose(messages, schema), encode=lambda text: text, decode=str)
    ctx.trace.emit("planner_output", node="plan", iteration=view.iteration, attempt=attempt, raw=raw)
    return raw, prompt_hash


@node("generate")
def generate(step: Step) -> Update:
    """Generate synthetic data for the decided targets: a new dataset version."""
    ctx = step.ctx
    outcome = ctx.tools.generate(step.decision.targets, step.iteration + 1,
                                 int(max(0, step.view.remaining()["generation_tokens"])))
    usage = step.usage()
    usage.synthetic_examples += sum(outcome.accepted_per_category.values())
    usage.generation_tokens += outcome.generation_tokens
    ctx.trace.emit("metrics", node="generate", iteration=step.iteration, scope="generation",
                   accepted=outcome.accepted_per_category,
                   rejected=outcome.rejected_per_reason, stop_reason=outcome.stop_reason)
    dataset = {**outcome.dataset.model_dump(mode="json"), "generation_seconds": round(outcome.seconds, 1)}
    return {"dataset": dataset, "datasets": [dataset], "usage": usage.model_dump(), "pending": None}


@node("train")
def train(step: Step) -> Update:
    """Train a fresh adapter on the current dataset version; it is evaluated next."""
    ctx, view = step.ctx, step.view
    left = view.remaining()
    adapter = ctx.tools.train(view.dataset.version, step.iteration + 1, step.decision.train_overrides,
                              int(max(0, left["train_tokens"])), training_time_limit(left["wall_seconds"], ctx.budget))
    usage = step.usage()
    usage.train_tokens += adapter.train_tokens
    return {"adapters": [adapter.model_dump(mode="json")], "usage": usage.model_dump(), "pending": None}


@node("evaluate")
def evaluate(step: Step) -> Update:
    """Score the newest unevaluated adapter on dev; keep the best; count rounds without gain."""
    ctx, view = step.ctx, step.view
    adapter = view.unevaluated_adapter
    if adapter is None:
        return {"pending": None}
    result = ctx.tools.evaluate(adapter.adapter_id, "dev")
    best = view.evaluation_of(view.best_adapter) if view.best_adapter else None
    reference_bpc = best.bpc if best is not None else view.baseline.bpc
    gained = result.bpc < reference_bpc * (1 - ctx.budget.min_relative_gain)
    best_adapter = adapter.adapter_id if best is None or result.bpc < best.bpc else view.best_adapter
    usage = step.usage()
    usage.iterations += 1
    ctx.trace.emit("metrics", node="evaluate", iteration=view.iteration + 1, scope="adapter_dev",
                   adapter_id=adapter.adapter_id, bpc=result.bpc, reference_bpc=reference_bpc, gained=gained,
                   per_category={c: s.bpc for c, s in result.per_category.items()}, task_metric=result.task_metric)
    return {
        "evaluations": [result.model_dump(mode="json")],
        "best_adapter": best_adapter,
        "no_gain_streak": 0 if gained else step.state.get("no_gain_streak", 0) + 1,
        "iteration": view.iteration + 1,
        "usage": usage.model_dump(),
        "pending": None,
    }


@node("submit")
def submit(step: Step) -> Update:
    """Publish the best adapter and submit it to FLock."""
    ctx = step.ctx
    best = step.state.get("best_adapter")
    if not best:  # the guardrail never routes here without one; a corrupt state should not submit anything
        return {"pending": None, "error": "submit without a best adapter"}
    receipt = ctx.tools.submit(best)
    usage = step.usage()
    usage.submissions += 1
    ctx.trace.emit("metrics", node="submit", iteration=step.iteration, scope="submission",
                   adapter_id=best, repo_id=receipt.repo_id,
                   revision=receipt.revision, validation_bpc=receipt.validation_bpc,
                   base_validation_bpc=receipt.base_validation_bpc,
                   accepted_by_flock_validators=receipt.accepted_by_flock_validators)
    return {"submissions": [receipt.model_dump(mode="json")], "usage": usage.model_dump(), "pending": None}


@node("finish")
def finish(step: Step) -> Update:
    """Report base vs best adapter on test, write cross-run lessons, and close the run."""
    ctx = step.ctx
    comparison = ctx.tools.compare_on_test(step.state.get("best_adapter"))
    ctx.trace.emit("metrics", node="finish", iteration=step.iteration, scope="test",
                   base_bpc=comparison.base.bpc,
                   adapter_bpc=comparison.adapter.bpc if comparison.adapter else None, deltas=comparison.deltas)
    if ctx.lessons is not None and not ctx.replaying:
        _write_lessons(ctx, step.state)
    return {"test_report": comparison.model_dump(mode="json"), "status": "finished", "pending": None}


def _write_lessons(ctx: RunContext, state: AgentState) -> None:
    """For each generate decision, the dev-BPC change of its target categories in the next evaluation."""
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
