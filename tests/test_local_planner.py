"""The local planner: SmolLM2-135M with JSON-schema-constrained decoding always writes a schema-valid decision
(slow: loads the real model)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.planner import LocalPlanner, allowed_actions, decision_schema, parse_decision, render_planner_prompt
from agent.policy import PlanView, check_decision
from agent.state import RunBudget
from tests.test_policy import adapter, make_state, summary

pytestmark = pytest.mark.slow


def states() -> list[dict[str, Any]]:
    """A run's typical moments: first plan, after generating, after evaluating, with the budget spent."""
    after_generate = make_state(dataset={"version": "v1", "original_per_category": {"join": 50, "nested": 20},
                                         "synthetic_per_category": {"nested": 12}})
    evaluated = make_state(adapters=[adapter("a1", "v0")],
                           evaluations=[summary("a1", 0.8, {"join": 0.9, "nested": 1.3, "filter": 0.5,
                                                            "group_by": 0.8})],
                           best_adapter="a1", usage={"iterations": 1})
    spent = {**evaluated, "usage": {"iterations": 3}}
    return [make_state(), after_generate, evaluated, spent]


@pytest.fixture(scope="module")
def planner() -> LocalPlanner:
    return LocalPlanner("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.parametrize("index", range(4))
def test_smollm2_always_writes_a_schema_valid_decision(planner: LocalPlanner, index: int) -> None:
    view = PlanView.from_state(states()[index], RunBudget())
    actions = allowed_actions(view)
    prompt, _ = render_planner_prompt(view, None)
    raw = planner.propose([{"role": "user", "content": prompt}], decision_schema(list(view.task.categories), actions))
    decision, error = parse_decision(raw)
    assert error is None, raw
    assert decision is not None
    assert decision.action in actions
    assert set(decision.targets) <= set(view.task.categories)
    # Schema-valid is not always wise: whatever the guardrail says is recorded and handled by the node.
    check_decision(decision, view)
