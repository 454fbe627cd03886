"""The marginal value of synthetic data: what a round's new rows did on dev, per category and generation strategy,
and the bandit that turns these measurements (this run's and earlier runs', from memory/lessons) into the next
round's choices.

Two ways to credit a round's rows, both giving each category a relative dev-BPC gain (> 0: the rows helped):

- ``estimate`` (no extra cost): the new adapter against the one before it (or the base model), each targeted
  category's relative change minus the mean change of the untargeted categories (a difference in differences:
  what training did to every category anyway is taken out);
- ``with_without``: the new adapter against the same recipe trained on the same number of tokens without the
  round's rows; the estimate is kept beside it so the two can be compared.

An arm is a (category, strategy) pair; its reward is the gain per 100 rows. :class:`ArmBook` ranks a category's
strategies by UCB1 (an untried strategy first), and says whether a category is worth more rows at all.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection
from dataclasses import dataclass

from agent.state import AdapterInfo, ArmValue, DatasetInfo, DataValue, EvalSummary, TrainOverrides
from agent.view import PlanView
from memory.lessons import ArmObservation, ArmStats

#: The strategy name recorded for rows whose strategy is unknown (dataset versions made before strategies were kept).
UNKNOWN_STRATEGY = "default"


def relative_gains(before: EvalSummary, after: EvalSummary) -> dict[str, float]:
    """Per category scored in both, the relative dev-BPC improvement from ``before`` to ``after``."""
    gains = {}
    for category, old in before.per_category.items():
        new = after.per_category.get(category)
        if new is not None and old.examples and math.isfinite(old.bpc) and math.isfinite(new.bpc) and old.bpc > 0:
            gains[category] = (old.bpc - new.bpc) / old.bpc
    return gains


def estimated_gains(before: EvalSummary, after: EvalSummary, targeted: Collection[str]) -> dict[str, float]:
    """The cheap estimate: each targeted category's relative change minus the untargeted categories' mean change
    (their mean over all categories when every category was targeted)."""
    gains = relative_gains(before, after)
    control = [g for c, g in gains.items() if c not in targeted] or list(gains.values())
    baseline = sum(control) / len(control) if control else 0.0
    return {c: gains[c] - baseline for c in targeted if c in gains}


def measured_gains(without: EvalSummary, with_rows: EvalSummary, targeted: Collection[str]) -> dict[str, float]:
    """The with/without comparison: each targeted category's relative change from the recipe without the rows."""
    gains = relative_gains(without, with_rows)
    return {c: gains[c] for c in targeted if c in gains}


def overall_gain(per_category: dict[str, float], evaluation: EvalSummary) -> float:
    """The categories' gains weighted by their share of dev examples (untargeted categories count as 0)."""
    total = sum(c.examples for c in evaluation.per_category.values())
    return sum(g * evaluation.per_category[c].examples for c, g in per_category.items()) / max(1, total)


def strategy_rows(dataset: DatasetInfo) -> dict[tuple[str, str], int]:
    """Synthetic rows per (category, strategy) of a dataset version."""
    if dataset.synthetic_per_strategy:
        return {(c, s): n for c, by in dataset.synthetic_per_strategy.items() for s, n in by.items()}
    return {(c, UNKNOWN_STRATEGY): n for c, n in dataset.synthetic_per_category.items()}


@dataclass(frozen=True)
class RoundRows:
    """The rows an adapter's dataset version added over the version its comparison point was trained on."""

    before_version: str
    reference: EvalSummary
    reference_name: str
    added: dict[tuple[str, str], int]
    seconds: dict[tuple[str, str], float]

    @property
    def targeted(self) -> set[str]:
        return {c for c, _ in self.added}


def round_rows(view: PlanView, adapter: AdapterInfo) -> RoundRows | None:
    """What ``adapter``'s data added over the latest evaluated adapter on an earlier dataset version (or over the
    original data, compared with the base model); None when it added no synthetic rows."""
    order = [d.version for d in view.datasets]
    if adapter.dataset_version not in order or any(
            a.dataset_version == adapter.dataset_version and a.adapter_id != adapter.adapter_id
            and view.evaluation_of(a.adapter_id) for a in view.adapters):
        return None  # the same rows under other settings: they were valued when first trained on
    position = order.index(adapter.dataset_version)
    earlier = [a for a in view.adapters if a.dataset_version in order[:position] and view.evaluation_of(a.adapter_id)]
    previous = earlier[-1] if earlier else None
    before_position = order.index(previous.dataset_version) if previous else 0
    before, after = view.datasets[before_position], view.datasets[position]
    rows_before, rows_after = strategy_rows(before), strategy_rows(after)
    added = {arm: n - rows_before.get(arm, 0) for arm, n in rows_after.items() if n > rows_before.get(arm, 0)}
    if not added:
        return None
    # Generation time is shared out by rows: what the versions in between took, per row they added.
    generated = [view.datasets[i] for i in range(before_position, position + 1)]
    new_rows = sum(generated[-1].synthetic_per_category.values()) - sum(before.synthetic_per_category.values())
    per_row = sum(d.generation_seconds or 0.0 for d in generated[1:]) / max(1, new_rows)
    seconds = {arm: per_row * n for arm, n in added.items()}
    reference = view.evaluation_of(previous.adapter_id) if previous else view.baseline
    assert reference is not None
    return RoundRows(before_version=before.version, reference=reference,
                     reference_name=previous.adapter_id if previous else "base", added=added, seconds=seconds)


def _arms(rows: RoundRows, gains: dict[str, float]) -> list[ArmValue]:
    return [ArmValue(category=c, strategy=s, rows=n, gain=round(gains.get(c, 0.0), 6),
                     seconds=round(rows.seconds.get((c, s), 0.0), 2))
            for (c, s), n in sorted(rows.added.items())]


def round_value(rows: RoundRows, adapter: AdapterInfo, evaluation: EvalSummary, iteration: int,
                without: EvalSummary | None = None, without_seconds: float = 0.0) -> DataValue:
    """The value of the round's rows: measured against ``without`` (the recipe trained without them) when given,
    else estimated against the adapter (or base model) before."""
    estimate = estimated_gains(rows.reference, evaluation, rows.targeted)
    if without is None:
        return DataValue(iteration=iteration, adapter_id=adapter.adapter_id, method="estimate",
                         reference=rows.reference_name, gain=round(overall_gain(estimate, evaluation), 6),
                         arms=_arms(rows, estimate), synthetic_weight=adapter.synthetic_weight)
    measured = measured_gains(without, evaluation, rows.targeted)
    overall = (without.bpc - evaluation.bpc) / without.bpc if without.bpc > 0 else 0.0
    return DataValue(iteration=iteration, adapter_id=adapter.adapter_id, method="with_without",
                     reference=str(without.adapter_id), gain=round(overall, 6), arms=_arms(rows, measured),
                     estimate=_arms(rows, estimate), synthetic_weight=adapter.synthetic_weight,
                     seconds=round(without_seconds, 2))


# ----- the bandit --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmScore:
    """An arm as the bandit sees it: observations, mean reward (gain per 100 rows) and its UCB1 upper bound."""

    category: str
    strategy: str
    pulls: int
    mean_reward: float
    upper: float

    @property
    def tried(self) -> bool:
        return self.pulls > 0

    def describe(self) -> str:
        if not self.tried:
            return f"{self.strategy} (untried)"
        return (f"{self.strategy} ({-self.mean_reward:+.2%} dev BPC per 100 rows over {self.pulls} "
                f"round{'s' if self.pulls != 1 else ''})")


class ArmBook:
    """This run's measurements and the memory of earlier runs, per arm of the task type."""

    def __init__(self, strategies: list[str], memory: list[ArmStats], values: list[DataValue], run_id: str = "run"):
        self.strategies = strategies or [UNKNOWN_STRATEGY]
        observed: dict[tuple[str, str], list[ArmObservation]] = {}
        for stats in memory:
            observed.setdefault((stats.category, stats.strategy), []).extend(stats.observations)
        for value in values:
            for arm in value.arms:
                observed.setdefault((arm.category, arm.strategy), []).append(ArmObservation(
                    run_id=run_id, rows=arm.rows, gain=arm.gain, seconds=arm.seconds, method=value.method))
        self.observed = observed
        rewards = [o.reward for obs in observed.values() for o in obs]
        self.total_pulls = len(rewards)
        # UCB1's bonus is scaled to the rewards' spread, as rewards are small fractions rather than 0-1 payoffs.
        self.scale = statistics.pstdev(rewards) if len(rewards) > 1 else (abs(rewards[0]) if rewards else 0.0)

    @classmethod
    def of(cls, view: PlanView) -> ArmBook:
        return cls(view.task.strategies, view.memory, view.data_values)

    def score(self, category: str, strategy: str) -> ArmScore:
        observations = self.observed.get((category, strategy), [])
        if not observations:
            return ArmScore(category, strategy, 0, 0.0, math.inf)
        mean = sum(o.reward for o in observations) / len(observations)
        bonus = self.scale * math.sqrt(2 * math.log(max(1, self.total_pulls)) / len(observations))
        return ArmScore(category, strategy, len(observations), mean, mean + bonus)

    def candidates(self, category: str) -> list[ArmScore]:
        """The category's strategies worth more rows: untried ones, and tried ones whose rows helped on average."""
        scores = [self.score(category, s) for s in self.strategies]
        return [a for a in scores if not a.tried or a.mean_reward > 0]

    def choose(self, category: str) -> ArmScore | None:
        """The strategy for the category's next rows: the first untried one (the task's order), else the highest
        UCB1 bound among those that helped; None when no strategy is worth more rows."""
        candidates = self.candidates(category)
        untried = [a for a in candidates if not a.tried]
        if untried:
            return untried[0]
        return max(candidates, key=lambda a: (a.upper, a.mean_reward), default=None)

    def not_helping(self, category: str) -> list[ArmScore]:
        """The category's tried strategies whose rows did not help on average."""
        return [a for s in self.strategies if (a := self.score(category, s)).tried and a.mean_reward <= 0]


def recommended_mix(view: PlanView) -> TrainOverrides | None:
    """The data mix the next training should use: the synthetic rows' weight halves (down to the configured floor)
    after every round whose rows did not help on dev. None when it is the configured mix."""
    settings = view.learning
    weight = settings.synthetic_weight
    for value in view.data_values:
        if value.gain <= 0:
            weight = max(settings.min_synthetic_weight, weight / 2)
    return TrainOverrides(synthetic_weight=round(weight, 4)) if weight != settings.synthetic_weight else None
