"""Guardrails every decision must pass, and the deterministic policy planner that decides when others fail.

The guardrail is the single authority on what the agent may do: a planner proposes, :func:`check_decision`
disposes. The policy targets the categories with the largest dev-BPC gap (and task-metric gap), stops after
``no_gain_patience`` evaluations without gain or when the budget is spent, and submits the best adapter when it
beats the base model on dev.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.state import (
    AdapterInfo,
    AgentState,
    BudgetUsage,
    DatasetInfo,
    Decision,
    EvalSummary,
    RunBudget,
    SubmissionInfo,
    TaskInfo,
)

#: Fewest examples worth generating for one targeted category in one round.
MIN_TARGET = 4
#: Bounds a planner may move training settings within.
LR_BOUNDS = (1e-5, 1e-3)
EPOCH_BOUNDS = (1, 8)
RANK_CHOICES = (4, 8, 16, 32, 64)


@dataclass(frozen=True)
class PlanView:
    """Everything a planner or guardrail may look at, typed, read from the state."""

    task: TaskInfo
    budget: RunBudget
    usage: BudgetUsage
    iteration: int
    dataset: DatasetInfo
    datasets: list[DatasetInfo]
    baseline: EvalSummary
    evaluations: list[EvalSummary]
    adapters: list[AdapterInfo]
    best_adapter: str | None
    submissions: list[SubmissionInfo]
    no_gain_streak: int
    elapsed_seconds: float

    @classmethod
    def from_state(cls, state: AgentState, budget: RunBudget) -> PlanView:
        """Wall time is the run's active time (recorded node durations), so downtime between a crash and
        its resume does not count and a replay sees the same figures."""
        usage = BudgetUsage.model_validate(state.get("usage") or {})
        return cls(
            task=TaskInfo.model_validate(state["task"]),
            budget=budget,
            usage=usage,
            iteration=state.get("iteration", 0),
            dataset=DatasetInfo.model_validate(state["dataset"]),
            datasets=[DatasetInfo.model_validate(d) for d in state.get("datasets", [])],
            baseline=EvalSummary.model_validate(state["baseline"]),
            evaluations=[EvalSummary.model_validate(e) for e in state.get("evaluations", [])],
            adapters=[AdapterInfo.model_validate(a) for a in state.get("adapters", [])],
            best_adapter=state.get("best_adapter"),
            submissions=[SubmissionInfo.model_validate(s) for s in state.get("submissions", [])],
            no_gain_streak=state.get("no_gain_streak", 0),
            elapsed_seconds=usage.wall_seconds,
        )

    # ----- derived facts ---------------------------------------------------------------------------------------
    def evaluation_of(self, adapter_id: str) -> EvalSummary | None:
        return next((e for e in self.evaluations if e.adapter_id == adapter_id), None)

    @property
    def unevaluated_adapter(self) -> AdapterInfo | None:
        return next((a for a in self.adapters if self.evaluation_of(a.adapter_id) is None), None)

    @property
    def untrained_data(self) -> bool:
        """The current dataset version has synthetic rows no adapter was trained on yet."""
        trained = {a.dataset_version for a in self.adapters}
        return sum(self.dataset.synthetic_per_category.values()) > 0 and self.dataset.version not in trained

    @property
    def reference(self) -> EvalSummary:
        """The model whose weaknesses drive targeting: the best adapter so far, else the base model."""
        if self.best_adapter:
            found = self.evaluation_of(self.best_adapter)
            if found is not None:
                return found
        return self.baseline

    @property
    def best_beats_base(self) -> bool:
        best = self.evaluation_of(self.best_adapter) if self.best_adapter else None
        return best is not None and best.bpc < self.baseline.bpc

    @property
    def submitted_adapters(self) -> set[str]:
        return {s.adapter_id for s in self.submissions}

    def remaining(self) -> dict[str, float]:
        b, u = self.budget, self.usage
        return {
            "iterations": b.max_iterations - u.iterations,
            "synthetic_examples": b.max_synthetic_examples - u.synthetic_examples,
            "generation_tokens": b.max_generation_tokens - u.generation_tokens,
            "train_tokens": b.max_train_tokens - u.train_tokens,
            "wall_seconds": b.max_wall_seconds - self.elapsed_seconds,
            "submissions": b.max_submissions - u.submissions,
        }

    def round_seconds_estimate(self) -> float:
        """What another generate-train-evaluate round will take: the longest generation and the longest training so
        far, the training plus a third for evaluating and planning (0 before the first round: nothing to go by)."""
        generation = max((d.generation_seconds or 0.0 for d in self.datasets), default=0.0)
        return generation + 1.3 * max((a.seconds for a in self.adapters), default=0.0)

    def out_of_budget(self) -> list[str]:
        """Names of spent resources that end the improve loop. The wall clock counts as spent when another round
        would not fit before the end, keeping the share a training leaves for submitting and the final report."""
        left = self.remaining()
        spent = [k for k in ("iterations", "synthetic_examples", "generation_tokens", "train_tokens") if left[k] <= 0]
        reserve = AFTER_TRAINING_SHARE * self.budget.max_wall_seconds
        if left["wall_seconds"] <= self.round_seconds_estimate() + reserve:
            spent.append("wall_seconds")
        return spent


def check_decision(decision: Decision, view: PlanView) -> str | None:
    """None when the decision may be carried out, else the reason it may not (shown to the planner on retry)."""
    left = view.remaining()
    if decision.action == "generate":
        if not decision.targets:
            return "generate needs targets: a count per category"
        unknown = sorted(set(decision.targets) - set(view.task.categories))
        if unknown:
            return f"unknown categories {unknown}; the task's categories are {sorted(view.task.categories)}"
        total = sum(decision.targets.values())
        if total > left["synthetic_examples"]:
            return f"asks for {total} synthetic examples but only {max(0, int(left['synthetic_examples']))} remain"
        for resource in ("iterations", "generation_tokens"):
            if left[resource] <= 0:
                return f"the {resource} budget is spent"
        if "wall_seconds" in view.out_of_budget():
            return (f"not enough wall-clock time left for another round ({left['wall_seconds'] / 60:.1f} min left, "
                    f"a round takes about {view.round_seconds_estimate() / 60:.1f} min)")
        # Rounds cost minutes of training and evaluation each: a handful of rows cannot move a category's score.
        smallest = min(MIN_TARGET, max(1, int(left["synthetic_examples"])))
        if any(n < smallest for n in decision.targets.values()):
            return f"every target count must be at least {smallest}"
        share = examples_per_round(view)
        if total < share // 2:
            return (f"asks for only {total} synthetic examples; this round's share of the budget is {share}, "
                    f"ask for at least {share // 2}")
        if view.untrained_data:
            return "the current dataset has synthetic data no adapter was trained on: train first"
    elif decision.action == "train":
        if left["train_tokens"] <= 0 or left["wall_seconds"] <= 0:
            return "the training budget (tokens or wall clock) is spent"
        trained_versions = {a.dataset_version for a in view.adapters}
        if view.dataset.version in trained_versions and decision.train_overrides is None:
            return "an adapter was already trained on this dataset version; generate data or change settings"
        problem = _check_overrides(decision)
        if problem:
            return problem
    elif decision.action == "evaluate":
        if view.unevaluated_adapter is None:
            return "every adapter is already evaluated"
    elif decision.action == "submit":
        if not view.best_adapter:
            return "no adapter has been evaluated yet"
        if not view.best_beats_base:
            return "the best adapter is not better than the base model on dev; submitting it would not help"
        if view.best_adapter in view.submitted_adapters:
            return f"adapter {view.best_adapter} was already submitted"
        if left["submissions"] <= 0:
            return "the submission limit of this run is reached"
    if decision.action != "train" and decision.train_overrides is not None:
        return "train_overrides only apply to train"
    return None


def _check_overrides(decision: Decision) -> str | None:
    if decision.train_overrides is None:
        return None
    changes = decision.train_overrides.model_dump(exclude_none=True)
    learning_rate, epochs, rank = changes.get("learning_rate"), changes.get("epochs"), changes.get("lora_r")
    if learning_rate is not None and not LR_BOUNDS[0] <= learning_rate <= LR_BOUNDS[1]:
        return f"learning_rate {learning_rate} outside {LR_BOUNDS}"
    if epochs is not None and not EPOCH_BOUNDS[0] <= epochs <= EPOCH_BOUNDS[1]:
        return f"epochs {epochs} outside {EPOCH_BOUNDS}"
    if rank is not None and rank not in RANK_CHOICES:
        return f"lora_r {rank} not one of {RANK_CHOICES}"
    return None


def category_gaps(view: PlanView) -> dict[str, float]:
    """How far each category lags: dev-BPC above the overall BPC, plus the task-metric shortfall.

    Both parts are relative so a task's absolute BPC level does not matter; categories with no dev examples get
    no gap (nothing to measure them by).
    """
    ref = view.reference
    gaps: dict[str, float] = {}
    for name in view.task.categories:
        score = ref.per_category.get(name)
        if score is None or score.examples == 0 or not math.isfinite(score.bpc):
            continue
        gap = (score.bpc - ref.bpc) / max(ref.bpc, 1e-9)
        if score.task_metric is not None and ref.task_metric is not None:
            gap += 0.5 * (ref.task_metric - score.task_metric)
        gaps[name] = gap
    return gaps


def weak_category_targets(view: PlanView, examples: int) -> dict[str, int]:
    """Spread ``examples`` over the weakest half of the categories, weighted by gap and by scarcity of data."""
    gaps = category_gaps(view)
    if not gaps or examples < MIN_TARGET:
        return {}
    ranked = sorted(gaps, key=lambda c: (-gaps[c], c))
    # Each chosen category gets at least MIN_TARGET rows, so a small round targets fewer categories.
    half = max(1, min(math.ceil(len(ranked) / 2), examples // MIN_TARGET))
    # Categories weaker than the overall score first; when none is, the relatively weakest half.
    chosen = [c for c in ranked if gaps[c] > 0][:half] or ranked[:half]
    counts = {c: view.dataset.original_per_category.get(c, 0) + view.dataset.synthetic_per_category.get(c, 0)
              for c in chosen}
    mean_count = sum(counts.values()) / len(counts) or 1.0
    low = min(gaps[c] for c in chosen)
    weights = {c: (gaps[c] - low + 0.05) * (1.0 + 0.5 * max(0.0, 1 - counts[c] / mean_count)) for c in chosen}
    total_weight = sum(weights.values())
    targets = {c: max(MIN_TARGET, round(examples * w / total_weight)) for c, w in weights.items()}
    while sum(targets.values()) > examples and max(targets.values()) > MIN_TARGET:
        biggest = max(targets, key=lambda c: (targets[c], c))
        targets[biggest] -= 1
    return targets


def examples_per_round(view: PlanView) -> int:
    left = view.remaining()
    rounds_left = max(1, int(left["iterations"]))
    return int(max(0, left["synthetic_examples"]) // rounds_left)


#: Share of the wall-clock budget a training leaves for what follows it: evaluation on dev, submission and the
#: simulator's scoring, the test comparison and the report.
AFTER_TRAINING_SHARE = 0.25


def training_time_limit(wall_seconds_left: float, budget: RunBudget) -> float:
    """Seconds a training may take so the run still ends within its wall-clock budget (at least a minute)."""
    return max(60.0, wall_seconds_left - AFTER_TRAINING_SHARE * budget.max_wall_seconds)


def policy_decision(view: PlanView) -> Decision:
    """The deterministic fallback: evaluate what is untested, train what is untrained, improve the weakest
    categories while budget and progress last, then submit the best adapter and stop."""
    if view.unevaluated_adapter is not None:
        return Decision(action="evaluate", rationale="an adapter is trained but not evaluated yet")
    left = view.remaining()
    can_train = left["train_tokens"] > 0 and left["wall_seconds"] > 0
    if view.untrained_data and can_train:
        return Decision(action="train", rationale="new synthetic data has not been trained on yet")
    stop_reasons = view.out_of_budget()
    if view.no_gain_streak >= view.budget.no_gain_patience:
        stop_reasons.append(f"no dev gain for {view.no_gain_streak} evaluations")
    targets = {} if stop_reasons else weak_category_targets(view, examples_per_round(view))
    if targets:
        gaps = category_gaps(view)
        worst = ", ".join(f"{c} ({gaps[c]:+.0%})" for c in targets)
        return Decision(action="generate", targets=targets,
                        rationale=f"largest dev-BPC gaps vs overall: {worst}")
    if not stop_reasons:
        stop_reasons.append("no category left to target")
    why = "; ".join(stop_reasons)
    if view.best_adapter and view.best_beats_base and view.best_adapter not in view.submitted_adapters \
            and left["submissions"] > 0:
        return Decision(action="submit", rationale=f"improvement loop over ({why}): submit the best adapter")
    return Decision(action="stop", rationale=f"done: {why}")
