"""The graph's nodes. Each reads the state, calls typed tools through the run context, and returns an update;
where the run goes next is decided by the routing in agent/graph.py.

Nodes hold no I/O of their own: files, models and the network are behind ``runtime.context.tools`` (recorded),
and planners behind ``runtime.context.cassette`` (recorded), so a run replays from its cassette alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from langgraph.runtime import Runtime

from agent import progress, timing
from agent.context import RunContext
from agent.data_value import ArmBook, round_rows, round_value
from agent.planner import (
    allowed_actions,
    decision_schema,
    parse_decision,
    recorded_call_inputs,
    render_planner_prompt,
)
from agent.policy import check_decision, policy_decision
from agent.state import (
    AdapterInfo,
    AgentState,
    BudgetUsage,
    DataValue,
    Decision,
    DecisionRecord,
    DecisionSource,
    EvalSummary,
    override_values,
)
from agent.toolbox import TestComparison
from agent.trace import annotate_langsmith_run
from agent.view import PlanView
from memory.lessons import ArmObservation, arm_memory, record_arm

logger = logging.getLogger(__name__)

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
        return PlanView.from_state(self.state, self.ctx.budget, self.ctx.learning, self.ctx.task_metric)

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
            # The bootstrap also counts the run's setup before the graph (the environment, the simulator).
            started = ctx.started if name == "bootstrap" and ctx.started is not None else ctx.clock()
            with progress.stage(name, iteration, state.get("usage"), ctx.budget):
                update = dict(fn(Step(state, ctx)))
            seconds = ctx.tools.measure(name, ctx.clock() - started)
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
    """Fetch the task, download/validate/profile/split its data, score the base model on dev (BPC), and read
    what earlier runs learned about the task type's synthetic data."""
    ctx = step.ctx
    prepared = ctx.tools.prepare_task()
    baseline = ctx.tools.evaluate(None, "dev")
    ctx.trace.emit("metrics", node="bootstrap", scope="baseline_dev", bpc=baseline.bpc,
                   per_category={c: s.bpc for c, s in baseline.per_category.items()},
                   task_metric=baseline.task_metric, seconds=baseline.seconds)
    task_type, store = prepared.task.task_type, ctx.lessons
    memory = ctx.tools.memory(task_type, lambda: arm_memory(store, task_type) if store is not None else [])
    book = ArmBook(prepared.task.strategies, memory, [])
    ctx.trace.emit("metrics", node="bootstrap", scope="data_memory", task_type=task_type,
                   arms=[{"category": a.category, "strategy": a.strategy, "rounds": a.pulls, "rows": a.rows,
                          "gain_per_100_rows": round(a.mean_reward, 6),
                          "ucb": round(book.score(a.category, a.strategy).upper, 6)} for a in memory])
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
        "data_values": [],
        "memory": [a.model_dump(mode="json") for a in memory],
        "refit": None,
        "error": None,
    }


@node("plan")
def plan(step: Step) -> Update:
    """Decide the next action: the planner proposes, the guardrail disposes (graph.py routes to the action)."""
    ctx, view = step.ctx, step.view
    record = _decide(ctx, view)
    ctx.trace.emit("decision", node="plan", iteration=view.iteration, **record.trace_data(),
                   **_decision_evidence(view, record.decision))
    dumped = record.model_dump(mode="json")
    return {"pending": dumped, "decisions": [dumped]}


def _decision_evidence(view: PlanView, decision: Decision) -> dict[str, Any]:
    """For the trace: per generated category, the strategy's evidence (the bandit's view of its arm); for a
    training, the data mix it uses."""
    if decision.action == "generate":
        book = ArmBook.of(view)
        default = view.task.strategies[0] if view.task.strategies else "default"
        return {"arms": {c: book.score(c, decision.strategies.get(c, default)).describe() for c in decision.targets}}
    if decision.action in ("train", "refit"):
        changes = override_values(decision.train_overrides)
        return {"data_mix": {"synthetic_weight": changes.get("synthetic_weight", view.learning.synthetic_weight),
                             "original_epochs": changes.get("original_epochs", view.learning.original_epochs)}}
    return {}


def _decide(ctx: RunContext, view: PlanView) -> DecisionRecord:
    """Ask the planner, with one retry that shows it the guardrail's reason; then the policy decides. Every
    proposal passes the guardrail once, the policy's own too: a policy decision it refuses becomes a stop."""
    source: DecisionSource = "policy"
    guardrail = "ok"
    if ctx.planner_kind != "policy" and ctx.planner is not None:
        last_error: str | None = None
        attempt: DecisionSource
        for attempt in ("llm", "retry"):
            raw, prompt_hash = _ask_planner(ctx, view, last_error, attempt)
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


def _ask_planner(ctx: RunContext, view: PlanView, last_error: str | None, attempt: str) -> tuple[str, str]:
    """The planner's raw answer (recorded) and the hash of the prompt it answered."""
    planner = ctx.planner
    assert planner is not None
    schema = decision_schema(list(view.task.categories), allowed_actions(view) or ["stop"], view.task.strategies)
    prompt, prompt_hash = render_planner_prompt(view, last_error)
    ctx.trace.emit("planner_input", node="plan", iteration=view.iteration, attempt=attempt,
                   input_hash=prompt_hash, prompt=prompt)
    messages = [{"role": "user", "content": prompt}]
    raw = ctx.cassette.call("planner", planner.name, recorded_call_inputs(planner.name, prompt_hash),
                            lambda: planner.propose(messages, schema), encode=lambda text: text, decode=str)
    ctx.trace.emit("planner_output", node="plan", iteration=view.iteration, attempt=attempt, raw=raw)
    return raw, prompt_hash


@node("generate")
def generate(step: Step) -> Update:
    """Generate synthetic data for the decided targets, each category with its strategy: a new dataset version."""
    ctx, view, decision = step.ctx, step.view, step.decision
    outcome = ctx.tools.generate(decision.targets, decision.strategies, step.iteration + 1,
                                 int(max(0, view.remaining()["generation_tokens"])),
                                 timing.generation_time_limit(view))
    usage = step.usage()
    usage.synthetic_examples += sum(outcome.accepted_per_category.values())
    usage.generation_tokens += outcome.generation_tokens
    ctx.trace.emit("metrics", node="generate", iteration=step.iteration, scope="generation",
                   accepted=outcome.accepted_per_category, strategies=outcome.accepted_per_strategy,
                   rejected=outcome.rejected_per_reason, stop_reason=outcome.stop_reason)
    dataset = {**outcome.dataset.model_dump(mode="json"), "generation_seconds": round(outcome.seconds, 1)}
    return {"dataset": dataset, "datasets": [dataset], "usage": usage.model_dump(), "pending": None}


@node("train")
def train(step: Step) -> Update:
    """Train a fresh adapter on the current dataset version; it is evaluated next."""
    ctx, view = step.ctx, step.view
    adapter = ctx.tools.train(view.dataset.version, step.iteration + 1, step.decision.train_overrides,
                              int(max(0, view.remaining()["train_tokens"])), timing.training_time_limit(view))
    usage = step.usage()
    usage.train_tokens += adapter.train_tokens
    return {"adapters": [adapter.model_dump(mode="json")], "usage": usage.model_dump(), "pending": None}


@node("evaluate")
def evaluate(step: Step) -> Update:
    """Score the newest unevaluated adapter on dev (BPC); keep the best; count rounds without gain; find what
    the synthetic rows it added were worth, per category and strategy."""
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
                   per_category={c: s.bpc for c, s in result.per_category.items()}, seconds=result.seconds)
    value = _data_value(step, adapter, result, usage)
    return {
        "evaluations": [result.model_dump(mode="json")],
        "best_adapter": best_adapter,
        "no_gain_streak": 0 if gained else step.state.get("no_gain_streak", 0) + 1,
        "iteration": view.iteration + 1,
        "usage": usage.model_dump(),
        "data_values": [value.model_dump(mode="json")] if value is not None else [],
        "pending": None,
    }


def _data_value(step: Step, adapter: AdapterInfo, result: EvalSummary, usage: BudgetUsage) -> DataValue | None:
    """What the rows the adapter added were worth on dev: estimated, or measured against the same recipe trained
    on as many tokens without them (learning.data_value = with_without; its tokens count in the budget)."""
    ctx, view = step.ctx, step.view
    rows = round_rows(view, adapter)
    if rows is None:
        return None
    without = None
    seconds = 0.0
    if ctx.learning.data_value == "with_without":
        ablation = ctx.tools.train(rows.before_version, adapter.iteration, adapter.recipe_overrides(),
                                   adapter.train_tokens, timing.training_time_limit(view))
        without = ctx.tools.evaluate(ablation.adapter_id, "dev")
        usage.train_tokens += ablation.train_tokens
        seconds = ablation.seconds + (without.seconds or 0.0)
    value = round_value(rows, adapter, result, view.iteration + 1, without, seconds)
    ctx.trace.emit("metrics", node="evaluate", iteration=view.iteration + 1, scope="data_value",
                   **value.model_dump(mode="json", exclude={"iteration"}),
                   gain_per_100_rows={f"{a.category}/{a.strategy}": round(a.gain_per_100_rows, 6)
                                      for a in value.arms})
    return value


@node("refit")
def refit(step: Step) -> Update:
    """Train the best adapter's recipe again on every original row (train, dev and test) plus its synthetic rows,
    with the step count scaled to the data: the adapter that is then submitted."""
    ctx, view = step.ctx, step.view
    best = view.adapter(view.best_adapter) if view.best_adapter else None
    if best is None:  # the guardrail never routes here without one
        return {"pending": None, "error": "refit without a best adapter"}
    sizes = view.task.split_sizes
    rows = best.examples or sizes.get("train", 0)
    scale = (rows + (sizes.get("dev", 0) + sizes.get("test", 0)) * best.original_epochs) / max(1, rows)
    tokens = int(min(max(0, view.remaining()["train_tokens"]), best.train_tokens * scale))
    overrides = best.recipe_overrides()
    refitted = ctx.tools.refit(best.adapter_id, best.dataset_version, overrides, max(1, tokens),
                               timing.refit_time_limit(view))
    usage = step.usage()
    usage.train_tokens += refitted.train_tokens
    ctx.trace.emit("metrics", node="refit", iteration=step.iteration, scope="refit", adapter_id=refitted.adapter_id,
                   refit_of=best.adapter_id, scale=round(scale, 4), train_tokens=refitted.train_tokens,
                   recipe_train_tokens=best.train_tokens, examples=refitted.examples, seconds=refitted.seconds)
    return {"refit": refitted.model_dump(mode="json"), "usage": usage.model_dump(), "pending": None}


@node("submit")
def submit(step: Step) -> Update:
    """Publish the best adapter (its refit, when there is one) and submit it to FLock."""
    ctx, view = step.ctx, step.view
    candidate = view.submission_candidate
    if not candidate:  # the guardrail never routes here without one; a corrupt state should not submit anything
        return {"pending": None, "error": "submit without a best adapter"}
    refit_of = view.best_adapter if candidate != view.best_adapter else None
    receipt = ctx.tools.submit(candidate, timing.submission_time_limit(view), refit_of)
    usage = step.usage()
    usage.submissions += 1
    ctx.trace.emit("metrics", node="submit", iteration=step.iteration, scope="submission",
                   adapter_id=candidate, refit_of=refit_of,
                   repo_id=receipt.repo_id, revision=receipt.revision, validation_bpc=receipt.validation_bpc,
                   base_validation_bpc=receipt.base_validation_bpc, note=receipt.note,
                   accepted_by_flock_validators=receipt.accepted_by_flock_validators)
    return {"submissions": [receipt.model_dump(mode="json")], "usage": usage.model_dump(), "pending": None}


@node("finish")
def finish(step: Step) -> Update:
    """Report base vs best adapter on test (a refit learned from the test split, so its recipe's adapter is
    compared), write what the synthetic data was worth into the cross-run memory, and close the run."""
    ctx, view = step.ctx, step.view
    error: str | None = None
    try:
        comparison: TestComparison | None = ctx.tools.compare_on_test(view.best_adapter,
                                                                     timing.test_comparison_time_limit(view))
    except Exception as exc:
        if not view.submissions:
            raise
        # The submission is made: a comparison that fails after it (traced as an error by the toolbox) leaves the
        # run's result standing; a resume would meet the same failure again.
        comparison, error = None, f"the test comparison failed after the submission: {type(exc).__name__}: {exc}"
        logger.warning(error)
    if comparison is not None:
        ctx.trace.emit("metrics", node="finish", iteration=step.iteration, scope="test",
                       base_bpc=comparison.base.bpc,
                       adapter_bpc=comparison.adapter.bpc if comparison.adapter else None, deltas=comparison.deltas,
                       task_metric_examples=comparison.base.task_metric_examples)
    if ctx.lessons is not None and not ctx.replaying:
        for value in view.data_values:
            for arm in value.arms:
                record_arm(ctx.lessons, task_type=view.task.task_type, category=arm.category, strategy=arm.strategy,
                           observation=ArmObservation(run_id=ctx.run_id, rows=arm.rows, gain=arm.gain,
                                                      seconds=arm.seconds, method=value.method))
    return {"test_report": comparison.model_dump(mode="json") if comparison else None, "status": "finished",
            "pending": None, "error": error}
