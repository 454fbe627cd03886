"""Smoke test of benchmarks/learning_gain.py on the tiny model and the mini task: every condition runs through its
real code path (agent run, reference recipe, uniform generation, our trainer, test evaluation with SQL execution,
submissions to the simulator), the budget is equal, and the summary and table render."""

from __future__ import annotations

import json

import pytest

from benchmarks.learning_gain import (
    CONDITIONS,
    SeedBench,
    render_markdown,
    summarize,
    uniform_targets,
    write_summary,
)
from tests.agent_helpers import mini_task_dir, tiny_config


def test_uniform_targets_spread_evenly():
    assert uniform_targets(10, ["a", "b", "c"]) == {"a": 4, "b": 3, "c": 3}
    assert uniform_targets(2, ["a", "b", "c"]) == {"a": 1, "b": 1}
    assert uniform_targets(0, ["a"]) == {}


@pytest.fixture
def one_torch_thread():
    """The tiny model's matmuls gain nothing from threads, and on a shared, busy machine threads waiting for each
    other made this test three times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_torch_thread")
def test_learning_gain_conditions_end_to_end(tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, mini_task_dir(tmp_path), tiny_model_dir, overrides={
        "budget": {"max_iterations": 1, "max_synthetic_examples": 8, "max_train_tokens": 500},
        "eval": {"task_metric": True, "max_new_tokens": 8},
    })
    out = tmp_path / "bench"
    result = SeedBench(config, out).run()

    conditions = result["conditions"]
    assert set(conditions) == set(CONDITIONS)
    budget = result["budget_T"]
    assert budget > 0
    assert conditions["a"]["train_tokens"] == 0
    # Equal budget: each trained condition stops at the first step that reaches T (a step holds at most
    # batch_tokens padded tokens in our trainer, four examples in the reference recipe).
    for key in ("b", "c", "e"):
        assert budget <= conditions[key]["train_tokens"] < budget + config.train.batch_tokens, key
    assert conditions["d"]["train_tokens"] == budget
    assert conditions["c"]["synthetic_rows"] == result["agent"]["synthetic_rows"] > 0
    assert conditions["e"]["synthetic_rows"] == 0
    for key, condition in conditions.items():
        assert condition["validation_bpc"] > 0, key
        assert condition["test"]["exec"] is not None, key
        assert set(condition["test"]["per_category_bpc"]) == set(conditions["a"]["test"]["per_category_bpc"])
    # The untrained adapter goes through the simulator and scores exactly as the base model.
    assert abs(conditions["a"]["validation_bpc"] - conditions["a"]["validation_bpc_direct"]) < 1e-6
    # (a) and (d) are the agent's own test evaluations, (d)'s validation score is its own submission's.
    assert conditions["a"]["test"] == result["agent"]["test"]["base"]
    assert conditions["d"]["test"] == result["agent"]["test"]["best"]
    assert conditions["d"]["validation_source"] == "the agent's own submission"

    # A second run reuses every finished condition.
    assert SeedBench(config, out).run()["conditions"] == conditions

    twice = [result, {**json.loads(json.dumps(result)), "seed": 1}]
    summary = summarize(twice)
    assert summary["conditions"]["b"]["validation_bpc"]["n"] == 2
    assert set(summary["targets"]) >= {"d_beats_b_by_10pct", "d_beats_c", "d_exec_above_a_and_b"}
    table = render_markdown(summary, twice, {"mode": "test", "command": "pytest", "seconds": 1.0,
                                             "load": {"cpu_count": 2, "samples": 1, "load1_mean": 1.0,
                                                      "load1_min": 1.0, "load1_max": 1.0}})
    assert "| (d) agent, adaptive targeted loop |" in table
    assert "Test BPC per category" in table

    # Seeds run by separate processes combine into one table; a seed that has not finished is named.
    meta = {"mode": "test", "command": "pytest", "seconds": 2.0,
            "load": {"cpu_count": 2, "samples": 2, "load1_mean": 1.0, "load1_min": 0.5, "load1_max": 1.5}}
    for seed in (0, 1):
        (out / f"seed{seed}").mkdir(parents=True, exist_ok=True)
        (out / f"seed{seed}" / "seed_result.json").write_text(json.dumps({"meta": meta, "result": twice[seed]}))
    combined = write_summary(out, [0, 1])
    assert "seeds 0, 1" in combined and (out / "results.json").is_file()
    with pytest.raises(SystemExit, match="seed 2 has not finished"):
        write_summary(out, [0, 2])
