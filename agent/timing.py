"""Time: what the rest of a run will take, estimated from the run's own measurements, so that every stage starts
with a limit and the run ends within its wall-clock budget, everything counted (generation, training, evaluation,
the final refit, the submission with the simulator's validation, the test comparison, the report).

Every estimate is a pure function of the state (its recorded durations), so a replay computes the same limits.
The scoring pace (seconds per example of FLock BPC scoring) comes from the dev evaluations; the simulator's
validation scores its held-out file twice (the submission and the base model) at about that pace. Before anything
is measured, a fixed share of the budget stands in for what follows a training.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.view import PlanView

#: Seconds kept for the report and the lessons, written after the graph's last node.
REPORT_SECONDS = 15.0
#: Seconds a submission spends beyond scoring: publishing, and the simulator's validator loading the model.
SUBMIT_OVERHEAD_SECONDS = 20.0
#: Share of the budget kept back for what the estimates miss.
MARGIN_SHARE = 0.03
#: Before the scoring pace is measured, the share of the budget a training leaves for what follows it.
UNMEASURED_AFTER_TRAINING_SHARE = 0.25
#: Share of a round's time a generation may take; training gets the rest.
GENERATION_SHARE = 0.4
#: The shortest training worth starting.
MIN_TRAINING_SECONDS = 20.0


def scoring_pace(view: PlanView) -> float | None:
    """Seconds per example of FLock BPC scoring, as the latest dev scoring ran (None before anything was scored).
    The base model's first scoring also pays one-time costs (measured on the quick demo: 0.61 s per example
    against 0.44 for the adapter's), so the latest is the better guide to what follows."""
    paces = [e.seconds / examples for e in [view.baseline, *view.evaluations]
             if e.seconds and (examples := sum(c.examples for c in e.per_category.values()))]
    return paces[-1] if paces else None


def evaluation_seconds(view: PlanView) -> float:
    """Seconds spent evaluating so far: dev scoring of the base model and every adapter, and measuring what data
    was worth (with_without trains and scores without the rows)."""
    return sum(e.seconds or 0.0 for e in [view.baseline, *view.evaluations]) + sum(v.seconds for v in view.data_values)


@dataclass(frozen=True)
class FinishEstimate:
    """What the stages after the improve loop will take, in seconds."""

    refit: float
    submission: float
    test_scoring: float
    task_metric: float
    report: float
    margin: float

    @property
    def total(self) -> float:
        return self.refit + self.submission + self.test_scoring + self.task_metric + self.report + self.margin

    def after_refit(self) -> float:
        return self.total - self.refit

    def after_submission(self) -> float:
        return self.after_refit() - self.submission


def refit_seconds(view: PlanView) -> float:
    """What a final refit of the best adapter's recipe on every original row will take (0 when none is due)."""
    best = view.adapter(view.best_adapter) if view.best_adapter else None
    if not view.learning.refit or best is None or view.refit_of_best is not None:
        return 0.0
    sizes = view.task.split_sizes
    extra = sizes.get("dev", 0) + sizes.get("test", 0)
    rows = best.examples or sizes.get("train", 0)
    return best.seconds * (rows + extra * best.original_epochs) / max(1, rows)


def decode_allowance(view: PlanView, pace: float) -> float:
    """Seconds the final task metric may decode for: what is left of the evaluation share of the budget after the
    dev scoring so far and the test scoring still to come."""
    if not view.decodes_task_metric:
        return 0.0
    test_scoring = 2 * view.task.split_sizes.get("test", 0) * pace
    share = view.learning.max_eval_share * view.budget.max_wall_seconds
    return max(0.0, share - evaluation_seconds(view) - test_scoring)


def finish_estimate(view: PlanView) -> FinishEstimate | None:
    """The stages after the loop, from the measured scoring pace; None before anything was scored."""
    pace = scoring_pace(view)
    if pace is None:
        return None
    submitting = view.remaining()["submissions"] > 0
    submission = (2 * view.task.validation_examples * pace + SUBMIT_OVERHEAD_SECONDS) if submitting else 0.0
    return FinishEstimate(refit=refit_seconds(view), submission=submission,
                          test_scoring=2 * view.task.split_sizes.get("test", 0) * pace,
                          task_metric=decode_allowance(view, pace), report=REPORT_SECONDS,
                          margin=MARGIN_SHARE * view.budget.max_wall_seconds)


def finish_reserve(view: PlanView) -> float:
    """Seconds to keep for the stages after the loop."""
    estimate = finish_estimate(view)
    return estimate.total if estimate is not None else UNMEASURED_AFTER_TRAINING_SHARE * view.budget.max_wall_seconds


def dev_scoring_seconds(view: PlanView) -> float:
    pace = scoring_pace(view) or 0.0
    return view.task.split_sizes.get("dev", 0) * pace


def overhead_per_round(view: PlanView) -> float:
    """Time not spent generating, training or evaluating (planning, bootstrap, bookkeeping), per round so far."""
    known = (sum(d.generation_seconds or 0.0 for d in view.datasets) + sum(a.seconds for a in view.adapters)
             + evaluation_seconds(view))
    return max(0.0, view.elapsed_seconds - known) / (view.usage.iterations + 1)


def measuring(view: PlanView) -> bool:
    """Whether each round also trains and scores the recipe without its new rows."""
    return view.learning.data_value == "with_without"


def round_seconds_estimate(view: PlanView) -> float:
    """What another generate-train-evaluate round will take: the longest generation and training so far (a
    training at least the shortest worth starting), dev scoring, measuring the rows' value when configured, and
    the round's share of everything else."""
    generation = max((d.generation_seconds or 0.0 for d in view.datasets), default=0.0)
    longest = max((a.seconds for a in view.adapters), default=0.0)
    training = max(longest, MIN_TRAINING_SECONDS) + dev_scoring_seconds(view)
    return generation + training * (2 if measuring(view) else 1) + overhead_per_round(view)


def round_fits(view: PlanView) -> bool:
    """Whether another round fits before the stages after the loop must start."""
    return view.remaining()["wall_seconds"] > round_seconds_estimate(view) + finish_reserve(view)


def training_time_limit(view: PlanView) -> float:
    """Seconds a training may take so the run still ends in time: what is left after dev scoring, the round's
    share of the overhead and the stages after the loop; halved when the same recipe is also trained without
    the round's new rows (with_without)."""
    available = (view.remaining()["wall_seconds"] - finish_reserve(view) - dev_scoring_seconds(view)
                 - overhead_per_round(view))
    if measuring(view):
        available = available / 2 - dev_scoring_seconds(view) / 2
    return max(MIN_TRAINING_SECONDS, available)


def can_train(view: PlanView) -> bool:
    available = view.remaining()["wall_seconds"] - finish_reserve(view) - dev_scoring_seconds(view)
    return available >= MIN_TRAINING_SECONDS


def generation_time_limit(view: PlanView) -> float:
    """Seconds a generation may take: its share of the time the round has before the stages after the loop."""
    available = view.remaining()["wall_seconds"] - finish_reserve(view) - dev_scoring_seconds(view)
    return max(1.0, GENERATION_SHARE * available)


def refit_time_limit(view: PlanView) -> float:
    """Seconds the final refit may train: what is left after the submission, test comparison and report."""
    estimate = finish_estimate(view)
    after = estimate.after_refit() if estimate is not None else REPORT_SECONDS
    return max(MIN_TRAINING_SECONDS, view.remaining()["wall_seconds"] - after)


def submission_time_limit(view: PlanView) -> float:
    """Seconds the submission (with the simulator's validation) may take."""
    estimate = finish_estimate(view)
    after = estimate.after_submission() if estimate is not None else REPORT_SECONDS
    return max(1.0, view.remaining()["wall_seconds"] - after)


def test_comparison_time_limit(view: PlanView) -> float:
    """Seconds the test comparison may take: test scoring plus the decoding the evaluation share allows, within
    what is left before the report."""
    pace = scoring_pace(view) or 0.0
    planned = 2 * view.task.split_sizes.get("test", 0) * pace + decode_allowance(view, pace)
    left = view.remaining()["wall_seconds"] - REPORT_SECONDS - MARGIN_SHARE * view.budget.max_wall_seconds
    return max(1.0, min(planned, left))
