"""Time estimates and the limits each stage gets, on hand-built states (the numbers are the run's own
measurements: the dev scoring pace, the last generation and training)."""

from __future__ import annotations

from typing import Any

import pytest

from agent import timing
from agent.policy import out_of_budget
from agent.state import LearningSettings, RunBudget
from agent.view import PlanView
from tests.test_policy import adapter, make_state, summary

BUDGET = RunBudget(max_wall_seconds=1000)


def measured(**overrides: Any) -> dict[str, Any]:
    """The demo-like task: 20 dev, 20 test and 50 validation rows; the base model scored dev (20 rows) in 10 s."""
    baseline = {**summary(None, 1.0, {"join": 1.1, "nested": 1.6, "filter": 0.7, "group_by": 1.0}), "seconds": 10.0}
    state = make_state(baseline=baseline, **overrides)
    state["task"]["validation_examples"] = 50
    return state


def test_the_stages_after_the_loop_are_priced_by_the_dev_scoring_pace() -> None:
    v = PlanView.from_state(measured(usage={"wall_seconds": 100}), BUDGET)
    assert timing.scoring_pace(v) == pytest.approx(0.5)  # 10 s for 4 categories x 5 examples
    estimate = timing.finish_estimate(v)
    assert estimate is not None
    assert estimate.submission == pytest.approx(2 * 50 * 0.5 + timing.SUBMIT_OVERHEAD_SECONDS)
    assert estimate.test_scoring == pytest.approx(2 * 20 * 0.5)
    # Evaluation may take 10% of 1000 s: 10 s went to dev, 20 s will go to test scoring, 70 s are left to decode.
    assert estimate.task_metric == pytest.approx(70)
    assert estimate.refit == 0
    assert estimate.total == pytest.approx(70 + 20 + 70 + timing.REPORT_SECONDS + 30)
    assert timing.finish_reserve(v) == pytest.approx(estimate.total)
    # Before anything is scored, a quarter of the budget stands in for it.
    assert timing.finish_reserve(PlanView.from_state(make_state(), BUDGET)) == pytest.approx(250)


def test_training_gets_what_is_left_after_dev_scoring_and_the_end() -> None:
    v = PlanView.from_state(measured(usage={"wall_seconds": 100}), BUDGET)
    reserve = timing.finish_reserve(v)
    overhead = (100 - 10) / 1  # everything not generating, training or scoring, per round so far
    assert timing.training_time_limit(v) == pytest.approx(1000 - 100 - reserve - 10 - overhead)
    both = PlanView.from_state(measured(usage={"wall_seconds": 100}), BUDGET,
                               LearningSettings(data_value="with_without"))
    assert timing.training_time_limit(both) == pytest.approx((1000 - 100 - reserve - 10 - overhead) / 2 - 5)
    assert timing.generation_time_limit(v) == pytest.approx(0.4 * (1000 - 100 - reserve - 10))
    late = PlanView.from_state(measured(usage={"wall_seconds": 1000 - reserve - 15}), BUDGET)
    assert not timing.can_train(late)
    assert timing.training_time_limit(late) == timing.MIN_TRAINING_SECONDS


def test_a_round_that_would_not_leave_time_for_the_end_does_not_start() -> None:
    trained = {**adapter("a1", "v0"), "seconds": 200.0}
    roomy = PlanView.from_state(measured(adapters=[trained], usage={"wall_seconds": 250, "iterations": 1}), BUDGET)
    # 200 s training + 10 s dev scoring + (250 - 200 - 10) / 2 s of everything else per round
    assert timing.round_seconds_estimate(roomy) == pytest.approx(230)
    assert "wall_seconds" not in out_of_budget(roomy)
    late = PlanView.from_state(measured(adapters=[trained], usage={"wall_seconds": 500, "iterations": 1}), BUDGET)
    assert "wall_seconds" in out_of_budget(late)  # 500 s left < about 355 s + 205 s kept for the end


def test_the_refit_submission_and_test_comparison_get_what_is_left_before_what_follows_them() -> None:
    trained = {**adapter("a1", "v0"), "seconds": 100.0, "examples": 200}
    state = measured(adapters=[trained], best_adapter="a1", evaluations=[summary("a1", 0.8, {"join": 0.9})],
                     usage={"wall_seconds": 600, "iterations": 1})
    v = PlanView.from_state(state, BUDGET, LearningSettings(refit=True))
    # The recipe trained 200 rows in 100 s; the refit adds the 40 dev and test rows.
    assert timing.refit_seconds(v) == pytest.approx(100 * 240 / 200)
    estimate = timing.finish_estimate(v)
    assert estimate is not None
    assert timing.refit_time_limit(v) == pytest.approx(400 - estimate.after_refit())
    assert timing.submission_time_limit(v) == pytest.approx(400 - estimate.after_submission())
    decode = timing.decode_allowance(v, 0.5)
    assert timing.test_comparison_time_limit(v) == pytest.approx(20 + decode)
    nearly_done = PlanView.from_state({**state, "usage": {"wall_seconds": 980, "iterations": 1}}, BUDGET)
    assert timing.test_comparison_time_limit(nearly_done) == 1.0  # never negative; the report still gets its time
