"""Guardrails every decision must pass, and the deterministic policy planner that decides when others fail.

The guardrail is the single authority on what the agent may do: a planner proposes, :func:`check_decision`
disposes. The policy targets the categories with the largest dev-BPC gap (and task-metric gap) that synthetic rows
still help, with the strategy the bandit ranks first (agent/data_value.py), lowers the synthetic rows' loss weight
after rounds whose rows did not help, moves to more passes over the original rows when no category or strategy
helps any more, stops after ``no_gain_patience`` evaluations without gain or when the budget is spent, refits the
best recipe on every original row when configured, and submits when it beats the base model on dev.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent import timing
from agent.data_value import ArmBook, recommended_mix
from agent.state import Decision, TrainOverrides, override_values
from agent.view import PlanView

__all__ = ["GenerationPlan", "PlanView", "category_gaps", "check_decision", "examples_per_round",
           "generation_plan", "out_of_budget", "policy_decision", "weak_category_targets"]

#: Fewest examples worth generating for one targeted category in one round.
MIN_TARGET = 4
#: Bounds a planner may move training settings and the data mix within.
LR_BOUNDS = (1e-5, 1e-3)
EPOCH_BOUNDS = (1, 8)
RANK_CHOICES = (4, 8, 16, 32, 64)
SYNTHETIC_WEIGHT_BOUNDS = (0.05, 1.0)
ORIGINAL_EPOCH_BOUNDS = (1, 8)


def out_of_budget(view: PlanView) -> list[str]:
    """Names of spent resources that end the improve loop. The wall clock counts as spent when another round
    would not fit before the stages after the loop (refit, submission, test comparison, report) must start."""
    left = view.remaining()
    spent = [k for k in ("iterations", "synthetic_examples", "generation_tokens", "train_tokens") if left[k] <= 0]
    if not timing.round_fits(view):
        spent.append("wall_seconds")
    return spent


def _effective_mix(view: PlanView, overrides: TrainOverrides | None) -> dict[str, object]:
    """The settings a training with these overrides would use that set it apart from another on the same data."""
    values = override_values(overrides)
    return {**values, "synthetic_weight": values.get("synthetic_weight", view.learning.synthetic_weight),
            "original_epochs": values.get("original_epochs", view.learning.original_epochs)}


def _trained_alike(view: PlanView, overrides: TrainOverrides | None) -> bool:
    wanted = _effective_mix(view, overrides)
    for adapter in view.adapters:
        if adapter.dataset_version != view.dataset.version:
            continue
        had = {**adapter.overrides, "synthetic_weight": adapter.synthetic_weight,
               "original_epochs": adapter.original_epochs}
        if had == wanted:
            return True
    return False


def check_decision(decision: Decision, view: PlanView) -> str | None:
    """None when the decision may be carried out, else the reason it may not (shown to the planner on retry)."""
    left = view.remaining()
    if decision.action == "generate":
        problem = _check_generate(decision, view)
        if problem:
            return problem
    elif decision.action == "train":
        if left["train_tokens"] <= 0 or not timing.can_train(view):
            return "the training budget (tokens or wall clock) is spent"
        if _trained_alike(view, decision.train_overrides):
            return "an adapter was already trained on this dataset version with these settings; generate data or " \
                   "change settings"
        problem = _check_overrides(decision)
        if problem:
            return problem
    elif decision.action == "evaluate":
        if view.unevaluated_adapter is None:
            return "every adapter is already evaluated"
    elif decision.action == "refit":
        problem = _check_refit(view)
        if problem:
            return problem
    elif decision.action == "submit":
        problem = _check_submit(view)
        if problem:
            return problem
    if decision.action != "train" and decision.train_overrides is not None:
        return "train_overrides only apply to train"
    if decision.action != "generate" and decision.strategies:
        return "strategies only apply to generate"
    return None


def _check_generate(decision: Decision, view: PlanView) -> str | None:
    left = view.remaining()
    if not decision.targets:
        return "generate needs targets: a count per category"
    unknown = sorted(set(decision.targets) - set(view.task.categories))
    if unknown:
        return f"unknown categories {unknown}; the task's categories are {sorted(view.task.categories)}"
    stray = sorted(set(decision.strategies) - set(decision.targets))
    if stray:
        return f"strategies given for categories without targets: {stray}"
    offered = view.task.strategies
    unknown_strategies = sorted({s for s in decision.strategies.values() if s not in offered}) if offered else []
    if unknown_strategies:
        return f"unknown strategies {unknown_strategies}; the task offers {offered}"
    total = sum(decision.targets.values())
    if total > left["synthetic_examples"]:
        return f"asks for {total} synthetic examples but only {max(0, int(left['synthetic_examples']))} remain"
    for resource in ("iterations", "generation_tokens"):
        if left[resource] <= 0:
            return f"the {resource} budget is spent"
    if "wall_seconds" in out_of_budget(view):
        return (f"not enough wall-clock time left for another round ({left['wall_seconds'] / 60:.1f} min left, "
                f"a round takes about {timing.round_seconds_estimate(view) / 60:.1f} min and "
                f"{timing.finish_reserve(view) / 60:.1f} min are kept for refit, submission, test and report)")
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
    return None


def _check_overrides(decision: Decision) -> str | None:
    changes = override_values(decision.train_overrides)
    bounds = {"learning_rate": LR_BOUNDS, "epochs": EPOCH_BOUNDS, "synthetic_weight": SYNTHETIC_WEIGHT_BOUNDS,
              "original_epochs": ORIGINAL_EPOCH_BOUNDS}
    for name, (low, high) in bounds.items():
        value = changes.get(name)
        if value is not None and not low <= value <= high:
            return f"{name} {value} outside {(low, high)}"
    rank = changes.get("lora_r")
    if rank is not None and rank not in RANK_CHOICES:
        return f"lora_r {rank} not one of {RANK_CHOICES}"
    return None


def _refit_due(view: PlanView) -> bool:
    """The final refit is on, the best adapter is worth submitting, and its recipe was not refit yet."""
    return bool(view.learning.refit and view.best_adapter and view.best_beats_base and view.refit_of_best is None
                and view.remaining()["submissions"] > 0 and view.best_adapter not in view.submitted_adapters)


def _refit_fits(view: PlanView) -> bool:
    estimate = timing.finish_estimate(view)
    needed = estimate.total if estimate is not None else timing.refit_seconds(view)
    return view.remaining()["wall_seconds"] >= needed


def _check_refit(view: PlanView) -> str | None:
    if not view.learning.refit:
        return "the final refit is off (learning.refit)"
    if not view.best_adapter or not view.best_beats_base:
        return "no adapter better than the base model on dev to refit"
    if view.refit_of_best is not None:
        return f"the recipe of {view.best_adapter} was already refit"
    if view.remaining()["submissions"] <= 0:
        return "the submission limit of this run is reached: a refit would not be submitted"
    if not _refit_fits(view):
        return (f"not enough wall-clock time left to refit ({view.remaining()['wall_seconds'] / 60:.1f} min left, "
                f"the refit and what follows take about {timing.finish_reserve(view) / 60:.1f} min)")
    return None


def _check_submit(view: PlanView) -> str | None:
    if not view.best_adapter:
        return "no adapter has been evaluated yet"
    if not view.best_beats_base:
        return "the best adapter is not better than the base model on dev; submitting it would not help"
    candidate = view.submission_candidate
    if candidate in view.submitted_adapters or view.best_adapter in view.submitted_adapters:
        return f"adapter {candidate} was already submitted"
    if view.remaining()["submissions"] <= 0:
        return "the submission limit of this run is reached"
    if _refit_due(view) and _refit_fits(view):
        return "the final refit is on: refit the best adapter's recipe before submitting"
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


def weak_category_targets(view: PlanView, examples: int, gaps: dict[str, float] | None = None) -> dict[str, int]:
    """Spread ``examples`` over the weakest half of the categories (of ``gaps``, default every category's),
    weighted by gap and by scarcity of data."""
    gaps = category_gaps(view) if gaps is None else gaps
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


@dataclass(frozen=True)
class GenerationPlan:
    """The next round's rows: a count and a strategy per category, why, and what was left out and why."""

    targets: dict[str, int]
    strategies: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def rationale(self, gaps: dict[str, float]) -> str:
        chosen = ", ".join(f"{c} ({gaps[c]:+.0%}) with {self.reasons[c]}" for c in self.targets)
        text = f"largest dev-BPC gaps vs overall: {chosen}"
        if self.skipped:
            text += "; no more rows for " + ", ".join(f"{c} ({why})" for c, why in self.skipped.items())
        return text[:600]


def generation_plan(view: PlanView, examples: int) -> GenerationPlan:
    """Targets over the weakest categories whose rows still help (by this run's measurements and the memory of
    earlier runs), each with the strategy the bandit ranks first."""
    book = ArmBook.of(view)
    gaps = category_gaps(view)
    worth: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for category, gap in gaps.items():
        if book.choose(category) is not None:
            worth[category] = gap
        elif gap > 0:
            skipped[category] = "its rows did not help: " + "; ".join(a.describe() for a in book.not_helping(category))
    targets = weak_category_targets(view, examples, worth)
    arms = {c: book.choose(c) for c in targets}
    return GenerationPlan(targets=targets, strategies={c: a.strategy for c, a in arms.items() if a is not None},
                          reasons={c: a.describe() for c, a in arms.items() if a is not None}, skipped=skipped)


def _originals_decision(view: PlanView) -> Decision | None:
    """When no synthetic rows are worth generating: train on the original rows (more passes over them when an
    adapter was already trained), once."""
    if view.remaining()["train_tokens"] <= 0 or not timing.can_train(view):
        return None
    mix = override_values(recommended_mix(view))
    if view.adapters:
        mix["original_epochs"] = min(ORIGINAL_EPOCH_BOUNDS[1], view.learning.original_epochs + 1)
    overrides = TrainOverrides(**mix) if mix else None
    if _trained_alike(view, overrides):
        return None
    why = ("no synthetic rows are expected to help on dev" if not view.data_values
           else "the synthetic rows did not help on dev")
    more = "more passes over the original rows" if view.adapters else "the original rows"
    return Decision(action="train", train_overrides=overrides, rationale=f"{why}: spend the budget on {more}")


def policy_decision(view: PlanView) -> Decision:
    """The deterministic fallback: evaluate what is untested, train what is untrained, improve the weakest
    categories with what helps while budget and progress last, then refit and submit the best and stop."""
    if view.unevaluated_adapter is not None:
        return Decision(action="evaluate", rationale="an adapter is trained but not evaluated yet")
    left = view.remaining()
    trainable = left["train_tokens"] > 0 and timing.can_train(view)
    mix = recommended_mix(view)
    if view.untrained_data and trainable:
        why = "new synthetic data has not been trained on yet"
        if mix is not None:
            why += (f"; synthetic rows weigh {override_values(mix)['synthetic_weight']:g} as earlier rounds' rows "
                    "did not help on dev")
        return Decision(action="train", train_overrides=mix, rationale=why)
    stop_reasons = out_of_budget(view)
    if view.untrained_data:
        stop_reasons.append("no time or tokens left to train on the newest rows")
    if view.submissions:
        stop_reasons.append("the best adapter was submitted")
    if view.no_gain_streak >= view.budget.no_gain_patience:
        stop_reasons.append(f"no dev gain for {view.no_gain_streak} evaluations")
    if not stop_reasons:
        plan = generation_plan(view, examples_per_round(view))
        if plan.targets:
            return Decision(action="generate", targets=plan.targets, strategies=plan.strategies,
                            rationale=plan.rationale(category_gaps(view)))
        originals = _originals_decision(view) if plan.skipped or not view.adapters else None
        if originals is not None:
            return originals
        stop_reasons.append("no category or strategy left that helps on dev" if plan.skipped
                            else "no category left to target")
    why = "; ".join(stop_reasons)
    if _refit_due(view) and _refit_fits(view):
        return Decision(action="refit", rationale=f"improvement loop over ({why}): refit the best adapter's recipe "
                                                  "on every original row before submitting")
    if _check_submit(view) is None:
        return Decision(action="submit", rationale=f"improvement loop over ({why}): submit the best adapter")
    return Decision(action="stop", rationale=f"done: {why}")
