"""The marginal value of synthetic data on hand-built states: the estimate and the with/without measurement, the
bandit over (category, strategy) arms, how the policy moves budget away from what does not help, the guardrail's
checks of the new decision fields, and the planner prompt's evidence."""

from __future__ import annotations

from typing import Any

import pytest

from agent.data_value import (
    ArmBook,
    estimated_gains,
    measured_gains,
    overall_gain,
    recommended_mix,
    round_rows,
    round_value,
)
from agent.planner import decision_schema, parse_decision, render_planner_prompt
from agent.policy import check_decision, generation_plan, policy_decision
from agent.state import AdapterInfo, DataValue, Decision, EvalSummary, LearningSettings, RunBudget, TrainOverrides
from agent.view import PlanView
from memory.lessons import ArmObservation, ArmStats
from tests.test_policy import adapter, make_state, summary

STRATEGIES = ["sql_first", "mutate"]


def evaluation(adapter_id: str | None, per_category: dict[str, float]) -> EvalSummary:
    overall = sum(per_category.values()) / len(per_category)
    return EvalSummary.model_validate(summary(adapter_id, overall, per_category))


def test_the_estimate_takes_out_what_training_did_to_every_category() -> None:
    before = evaluation(None, {"join": 1.0, "nested": 1.0, "filter": 1.0, "group_by": 1.0})
    after = evaluation("a1", {"join": 0.5, "nested": 0.7, "filter": 0.7, "group_by": 0.7})
    gains = estimated_gains(before, after, {"join", "nested"})
    # join fell by 50%, nested by 30%, like the untargeted categories: only join's rows helped.
    assert gains == {"join": pytest.approx(0.2), "nested": pytest.approx(0.0)}
    assert overall_gain(gains, after) == pytest.approx(0.2 / 4)
    # Measured against the recipe trained without the rows, the change is credited as it is.
    without = evaluation("a1-without", {"join": 0.6, "nested": 0.6, "filter": 0.7, "group_by": 0.7})
    assert measured_gains(without, after, {"join", "nested"}) == {"join": pytest.approx(1 / 6),
                                                                  "nested": pytest.approx(-1 / 6)}


def rounds_state(**overrides: Any) -> dict[str, Any]:
    """Two rounds: v1 added join rows (sql_first), v2 nested rows (mutate); a1 is evaluated, a2 is not yet."""
    v0 = {"version": "v0", "original_per_category": {"join": 50}, "synthetic_per_category": {}}
    v1 = {**v0, "version": "v1", "synthetic_per_category": {"join": 20},
          "synthetic_per_strategy": {"join": {"sql_first": 20}}, "generation_seconds": 40.0}
    v2 = {**v0, "version": "v2", "synthetic_per_category": {"join": 20, "nested": 10},
          "synthetic_per_strategy": {"join": {"sql_first": 20}, "nested": {"mutate": 10}}, "generation_seconds": 30.0}
    state = make_state(dataset=v2, datasets=[v0, v1, v2], adapters=[adapter("a1", "v1"), adapter("a2", "v2")],
                       evaluations=[summary("a1", 0.8, {"join": 0.8, "nested": 0.9, "filter": 0.6, "group_by": 0.9})],
                       best_adapter="a1")
    state["task"]["strategies"] = STRATEGIES
    state.update(overrides)
    return state


def test_a_rounds_rows_are_what_its_version_added_over_the_last_evaluated_one() -> None:
    v = PlanView.from_state(rounds_state(), RunBudget())
    a2 = v.adapter("a2")
    assert a2 is not None
    rows = round_rows(v, a2)
    assert rows is not None
    assert rows.added == {("nested", "mutate"): 10}
    assert rows.reference_name == "a1" and rows.before_version == "v1"
    assert rows.seconds == {("nested", "mutate"): pytest.approx(30.0)}
    first = round_rows(v, v.adapters[0])
    assert first is not None and first.reference_name == "base" and first.added == {("join", "sql_first"): 20}
    after = evaluation("a2", {"join": 0.8, "nested": 0.7, "filter": 0.6, "group_by": 0.9})
    value = round_value(rows, a2, after, 2)
    assert value.method == "estimate" and value.reference == "a1"
    [arm] = value.arms
    assert (arm.category, arm.strategy, arm.rows) == ("nested", "mutate", 10)
    assert arm.gain == pytest.approx(0.2 / 0.9, rel=1e-5)  # the others did not move (gains keep 6 decimals)
    without = evaluation("a2-without", {"join": 0.8, "nested": 0.75, "filter": 0.6, "group_by": 0.9})
    measured = round_value(rows, a2, after, 2, without, without_seconds=12.0)
    assert measured.method == "with_without" and measured.reference == "a2-without"
    assert measured.arms[0].gain == pytest.approx(0.05 / 0.75, rel=1e-5)
    assert measured.estimate is not None and measured.estimate[0].gain == pytest.approx(arm.gain)
    assert measured.seconds == 12.0
    # The same rows trained again under other settings are not valued twice.
    again = rounds_state(adapters=[adapter("a1", "v1"), adapter("a2", "v2"), adapter("a3", "v2")],
                         evaluations=[summary("a1", 0.8, {"join": 0.8}), summary("a2", 0.7, {"join": 0.8})])
    view_again = PlanView.from_state(again, RunBudget())
    assert round_rows(view_again, view_again.adapters[2]) is None


def value(category: str, strategy: str, gain: float, rows: int = 20, iteration: int = 1) -> dict[str, Any]:
    return DataValue(iteration=iteration, adapter_id=f"a{iteration}", method="estimate", reference="base",
                     gain=gain / 4, arms=[{"category": category, "strategy": strategy, "rows": rows,
                                           "gain": gain}]).model_dump()


def test_the_bandit_tries_untried_strategies_first_then_the_best_and_drops_what_did_not_help() -> None:
    memory = [ArmStats(category="join", strategy="sql_first",
                       observations=[ArmObservation(run_id="old", rows=20, gain=0.04)])]
    book = ArmBook(STRATEGIES, memory, [DataValue.model_validate(value("join", "mutate", 0.01)),
                                        DataValue.model_validate(value("nested", "sql_first", -0.02)),
                                        DataValue.model_validate(value("nested", "mutate", -0.01))])
    join = book.choose("join")
    assert join is not None and join.strategy == "sql_first"  # 0.2% per row beats 0.05%
    assert book.choose("filter") is not None and book.choose("filter").strategy == "sql_first"  # untried: default
    assert book.choose("nested") is None  # both strategies tried, neither helped
    assert [a.strategy for a in book.not_helping("nested")] == STRATEGIES
    assert book.score("join", "mutate").describe() == "mutate (-5.00% dev BPC per 100 rows over 1 round)"
    one_tried = ArmBook(STRATEGIES, [], [DataValue.model_validate(value("nested", "sql_first", -0.02))])
    nested = one_tried.choose("nested")
    assert nested is not None and nested.strategy == "mutate" and not nested.tried


def test_the_policy_moves_rows_away_from_categories_whose_rows_did_not_help() -> None:
    state = make_state(data_values=[value("nested", "sql_first", -0.02), value("join", "sql_first", 0.03)])
    state["task"]["strategies"] = ["sql_first"]
    v = PlanView.from_state(state, RunBudget(max_synthetic_examples=120))
    plan = generation_plan(v, 40)
    assert "nested" not in plan.targets  # the weakest category, but its rows did not help
    assert "join" in plan.targets and plan.strategies["join"] == "sql_first"
    assert "nested" in plan.skipped
    decision = policy_decision(v)
    assert decision.action == "generate" and decision.strategies == plan.strategies
    assert "no more rows for nested" in decision.rationale
    assert check_decision(decision, v) is None
    # Without the measurements, nested is targeted first.
    assert "nested" in generation_plan(PlanView.from_state(make_state(), RunBudget()), 40).targets


def test_a_round_whose_rows_did_not_help_lowers_their_weight_and_then_the_originals_get_the_budget() -> None:
    learning = LearningSettings(min_synthetic_weight=0.25)
    hurt = [value(c, "sql_first", -0.01) for c in ("join", "nested", "filter", "group_by")]
    v2 = {"version": "v1", "original_per_category": {"join": 50}, "synthetic_per_category": {"nested": 10}}
    untrained = make_state(dataset=v2, data_values=hurt[:1])
    decision = policy_decision(PlanView.from_state(untrained, RunBudget(), learning))
    assert decision.action == "train"
    assert decision.train_overrides == TrainOverrides(synthetic_weight=0.5)
    assert "weigh 0.5" in decision.rationale
    assert recommended_mix(PlanView.from_state(make_state(data_values=hurt[:3]), RunBudget(), learning)) == \
        TrainOverrides(synthetic_weight=0.25)  # halved three times, floored
    # No category's rows helped: no more generation, more passes over the original rows instead, once.
    trained = {"adapter_id": "a1", "iteration": 1, "dataset_version": "v1", "path": "/a/a1", "train_tokens": 900,
               "synthetic_weight": 0.5}
    done = make_state(dataset=v2, data_values=hurt, adapters=[trained], best_adapter="a1",
                      evaluations=[summary("a1", 0.9, {"join": 1.0, "nested": 1.5, "filter": 0.6, "group_by": 0.9})])
    done["task"]["strategies"] = ["sql_first"]
    view_done = PlanView.from_state(done, RunBudget(), learning)
    originals = policy_decision(view_done)
    assert originals.action == "train"
    assert originals.train_overrides == TrainOverrides(synthetic_weight=0.25, original_epochs=2)
    assert "more passes over the original rows" in originals.rationale
    repeated = {**done, "adapters": [trained, {**trained, "adapter_id": "a2", "synthetic_weight": 0.25,
                                               "original_epochs": 2}]}
    repeated["evaluations"] = [*done["evaluations"], summary("a2", 0.95, {"join": 1.0})]
    assert policy_decision(PlanView.from_state(repeated, RunBudget(), learning)).action == "submit"


def test_guardrail_checks_strategies_overrides_and_the_refit() -> None:
    state = make_state()
    state["task"]["strategies"] = STRATEGIES
    v = PlanView.from_state(state, RunBudget(max_synthetic_examples=120))
    generate = {"action": "generate", "targets": {"nested": 20}}
    assert "unknown strategies ['grammar']" in (check_decision(
        Decision(**generate, strategies={"nested": "grammar"}), v) or "")
    assert "without targets: ['join']" in (check_decision(
        Decision(**generate, strategies={"join": "mutate"}), v) or "")
    assert check_decision(Decision(**generate, strategies={"nested": "mutate"}), v) is None
    assert "strategies only apply to generate" in (check_decision(
        Decision(action="stop", strategies={"nested": "mutate"}), v) or "")
    assert "synthetic_weight 0.01 outside" in (check_decision(
        Decision(action="train", train_overrides=TrainOverrides(synthetic_weight=0.01)), v) or "")
    assert "original_epochs 9 outside" in (check_decision(
        Decision(action="train", train_overrides=TrainOverrides(original_epochs=9)), v) or "")
    assert "refit is off" in (check_decision(Decision(action="refit"), v) or "")
    # With the refit on, the best adapter's recipe is refit before it is submitted, and the refit is what goes.
    best = make_state(adapters=[adapter("a1", "v0")], best_adapter="a1",
                      evaluations=[summary("a1", 0.8, {"join": 0.9})], usage={"iterations": 3})
    refit_on = PlanView.from_state(best, RunBudget(max_iterations=3), LearningSettings(refit=True))
    assert "refit the best adapter's recipe before submitting" in (check_decision(Decision(action="submit"),
                                                                                   refit_on) or "")
    assert check_decision(Decision(action="refit"), refit_on) is None
    assert policy_decision(refit_on).action == "refit"
    refit = {**adapter("refit-1", "v0"), "refit_of": "a1"}
    refitted = PlanView.from_state({**best, "refit": refit}, RunBudget(max_iterations=3), LearningSettings(refit=True))
    assert refitted.submission_candidate == "refit-1"
    assert "already refit" in (check_decision(Decision(action="refit"), refitted) or "")
    assert policy_decision(refitted).action == "submit"
    sent = {**best, "refit": refit, "usage": {"iterations": 3, "submissions": 1},
            "submissions": [{"adapter_id": "refit-1", "repo_id": "r", "revision": "x", "task_id": 1}]}
    assert policy_decision(PlanView.from_state(sent, RunBudget(max_iterations=3),
                                               LearningSettings(refit=True))).action == "stop"


def test_recipe_overrides_repeat_an_adapters_settings_and_mix() -> None:
    trained = AdapterInfo(adapter_id="a1", iteration=1, dataset_version="v1", path="/a", train_tokens=10,
                          overrides={"learning_rate": 1e-4}, synthetic_weight=0.5, original_epochs=2)
    assert trained.recipe_overrides() == TrainOverrides(learning_rate=1e-4, synthetic_weight=0.5, original_epochs=2)


def test_the_planner_sees_the_evidence_and_may_set_strategies_and_the_mix() -> None:
    state = make_state(data_values=[value("nested", "sql_first", -0.02)],
                       memory=[ArmStats(category="join", strategy="sql_first", observations=[
                           ArmObservation(run_id="old", rows=20, gain=0.04)]).model_dump()])
    state["task"]["strategies"] = STRATEGIES
    text, _ = render_planner_prompt(PlanView.from_state(state, RunBudget()), None)
    assert 'Generation strategies (the first is the default): ["sql_first", "mutate"]' in text
    assert '"nested/sql_first (20 rows)": -0.02' in text
    assert '"synthetic_weight": 0.5' in text  # the round did not help: the policy's mix halves the weight
    assert "sql_first rows for 'join': dev BPC -20.00% per 100 rows" in text
    schema = decision_schema(["join", "nested"], ["generate", "train"], STRATEGIES)
    assert schema["properties"]["strategies"]["properties"]["join"]["enum"] == STRATEGIES
    assert schema["properties"]["train_overrides"]["anyOf"][1]["properties"]["synthetic_weight"]["minimum"] == 0.05
    assert decision_schema(["join"], ["generate"])["properties"]["train_overrides"] == {"type": "null"}
    decision, error = parse_decision('{"action": "train", "targets": {"join": 4}, "strategies": {"join": "mutate"},'
                                     ' "train_overrides": {"synthetic_weight": 0.5}, "rationale": "lower it"}')
    assert error is None and decision is not None
    assert decision.targets == {} and decision.strategies == {}  # only generate takes them
    assert decision.train_overrides == TrainOverrides(synthetic_weight=0.5)
    generate, _ = parse_decision('{"action": "generate", "targets": {"join": 4}, "train_overrides": '
                                 '{"synthetic_weight": 0.5}}')
    assert generate is not None and generate.train_overrides is None
