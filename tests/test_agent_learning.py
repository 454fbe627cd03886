"""Graph scenarios on the real pipeline with the tiny model: the with/without measurement of each round's rows,
the cross-run memory, the final refit and what is submitted, the per-example loss weight, and a run on a fake
clock whose stages all fit the wall-clock budget."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from agent.pipeline import open_pipeline
from agent.runner import Runner
from agent.trace import read_trace
from memory.lessons import arm_memory, make_store
from memory.runs import RunStore
from tests.agent_helpers import mini_task_dir, tiny_config


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_task_dir(tmp_path_factory.mktemp("task"))


class TickClock:
    """A clock that moves ``tick`` seconds each time it is read: every stage takes time in proportion to how
    often it looks at the clock, the same on every machine."""

    def __init__(self, tick: float = 1.0):
        self.now = 0.0
        self.tick = tick

    def __call__(self) -> float:
        now = self.now
        self.now += self.tick
        return now


def test_rounds_are_measured_with_and_without_their_rows_and_the_refit_is_submitted(
        tmp_path: Path, task_dir: Path, tiny_model_dir: Path) -> None:
    config = tiny_config(tmp_path, task_dir, tiny_model_dir, overrides={
        "learning": {"data_value": "with_without", "refit": True}, "budget": {"max_iterations": 1,
                                                                              "max_synthetic_examples": 8}})
    runner = Runner(RunStore(config.runs_dir))
    state = runner.start(config, run_id="measured").state
    assert state["status"] == "finished"
    actions = [d["decision"]["action"] for d in state["decisions"]]
    assert actions == ["generate", "train", "refit", "submit", "stop"]
    [value] = state["data_values"]
    assert value["method"] == "with_without" and value["estimate"] is not None
    assert value["reference"] not in {a["adapter_id"] for a in state["adapters"]}  # the ablation is no candidate
    assert {(a["category"], a["strategy"]) for a in value["arms"]} == {
        (c, "sql_first") for c in state["datasets"][-1]["synthetic_per_category"]}
    assert sum(a["rows"] for a in value["arms"]) == 8
    refit, best = state["refit"], state["best_adapter"]
    assert refit["refit_of"] == best and refit["adapter_id"] != best
    sizes = state["task"]["split_sizes"]
    assert refit["examples"] == sizes["train"] + sizes["dev"] + sizes["test"] + 8  # every original row + synthetic
    assert state["submissions"][0]["adapter_id"] == refit["adapter_id"]  # the refit is what goes to FLock
    assert state["test_report"]["adapter"]["adapter_id"] == best  # test is in the refit's data: its recipe is shown
    # The refit learned from dev: its card shows its recipe's dev score, and counts every original row it saw.
    paths = runner.store.paths("measured")
    card = json.loads((paths.adapters_dir / f"{refit['adapter_id']}.card.json").read_text())
    [dev_score] = [s for s in card["scores"] if s["split"] == "dev"]
    assert best in dev_score["source"]
    assert dev_score["value"] == next(e["bpc"] for e in state["evaluations"] if e["adapter_id"] == best)
    assert sum(card["training"]["original_per_category"].values()) == sizes["train"] + sizes["dev"] + sizes["test"]
    assert not (paths.evals_dir / f"{refit['adapter_id']}-dev.json").exists()  # never scored on dev
    events = read_trace(paths.trace)
    scopes = [e.data.get("scope") for e in events if e.type == "metrics"]
    assert "data_value" in scopes and "refit" in scopes and "data_memory" in scopes
    generate = next(e for e in events if e.type == "decision" and e.data["action"] == "generate")
    assert generate.data["strategies"] == dict.fromkeys(generate.data["targets"], "sql_first")
    assert set(generate.data["arms"]) == set(generate.data["targets"])
    # What the rows were worth is in the cross-run memory; the next run reads it at the start.
    arms = arm_memory(make_store(config.runs_dir / "lessons.sqlite"), "text2sql")
    assert {(a.category, a.strategy) for a in arms} == {(a["category"], a["strategy"]) for a in value["arms"]}
    assert all(a.observations[0].method == "with_without" for a in arms)
    replay = runner.replay("measured")
    assert replay.ok, replay.problems


def test_a_lower_synthetic_weight_reaches_the_trainer(tmp_path: Path, task_dir: Path, tiny_model_dir: Path) -> None:
    config = tiny_config(tmp_path, task_dir, tiny_model_dir,
                         overrides={"learning": {"synthetic_weight": 0.5, "original_epochs": 2},
                                    "budget": {"max_iterations": 1, "max_synthetic_examples": 8}})
    state = Runner(RunStore(config.runs_dir)).start(config, run_id="weighted").state
    [adapter] = state["adapters"]
    assert adapter["synthetic_weight"] == 0.5 and adapter["original_epochs"] == 2
    assert adapter["examples"] == 2 * state["task"]["split_sizes"]["train"] + 8
    metrics = json.loads(Path(adapter["path"] + ".metrics.json").read_text())
    assert metrics["examples"] == adapter["examples"]


def test_every_stage_fits_the_wall_clock_budget_on_a_fake_clock(tmp_path: Path, task_dir: Path,
                                                                tiny_model_dir: Path) -> None:
    """Each clock reading costs a second, so the run's arithmetic is exact: the loop stops when another round
    would not leave time for the submission (the simulator scores its file), the test comparison and the report;
    the task metric decodes the part of the test split that fits the evaluation share; the total stays within the
    budget, and the same run gives the same decisions again."""

    def run(run_id: str) -> tuple[dict, list[str]]:
        clock = TickClock()
        config = tiny_config(tmp_path / run_id, task_dir, tiny_model_dir, overrides={
            "budget": {"max_iterations": 6, "max_synthetic_examples": 40, "max_wall_seconds": 140},
            "eval": {"task_metric": True, "max_new_tokens": 8}})
        runner = Runner(RunStore(config.runs_dir), clock=clock,
                        toolbox_factory=functools.partial(open_pipeline, clock=clock))
        state = runner.start(config, run_id=run_id).state
        return state, [d["decision"]["action"] for d in state["decisions"]]

    state, actions = run("timed")
    assert state["status"] == "finished"
    assert state["usage"]["wall_seconds"] <= 140
    assert state["usage"]["iterations"] < 6  # the clock, not the iteration budget, ended the loop
    assert "submit" in actions
    submission = state["submissions"][0]
    assert submission["validation_bpc"] is not None  # the simulator's validation was kept time for
    test = state["test_report"]
    assert 0 < test["base"]["task_metric_examples"] < state["task"]["split_sizes"]["test"]
    assert test["adapter"]["task_metric_examples"] == test["base"]["task_metric_examples"]
    evaluation = (state["baseline"]["seconds"] + sum(e["seconds"] for e in state["evaluations"])
                  + test["base"]["seconds"] + test["base"]["task_metric_seconds"]
                  + test["adapter"]["seconds"] + test["adapter"]["task_metric_seconds"])
    assert evaluation <= 0.1 * 140 + 2  # the share, give or take the clock reading that ends the last chunk
    again, again_actions = run("timed-again")
    assert again_actions == actions
    assert again["usage"]["wall_seconds"] == state["usage"]["wall_seconds"]
