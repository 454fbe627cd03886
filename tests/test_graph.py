"""Graph scenarios on the real pipeline with the tiny model: a scripted LLM planner, the policy planner, the
guardrail's retry and override path, replay of the recorded run, and snapshots of what the model sees."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent.graph import compile_graph
from agent.planner import LLMPlanner, render_planner_prompt
from agent.policy import PlanView
from agent.runner import Runner
from agent.state import RunBudget
from memory.runs import RunStore
from tests.agent_helpers import (
    RETRY_OVERRIDE_BUDGET,
    RETRY_OVERRIDE_SCRIPT,
    ScriptedChatModel,
    mini_task_dir,
    read_state,
    tiny_config,
)
from tests.test_policy import make_state

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("SYNTHGEN_UPDATE_SNAPSHOTS") == "1"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_task_dir(tmp_path_factory.mktemp("task"))


def scripted_runner(runs_dir: Path, script: list[Any]) -> tuple[Runner, ScriptedChatModel]:
    model = ScriptedChatModel(script=script)
    return Runner(RunStore(runs_dir), planner_factory=lambda config: LLMPlanner(model, name=config.planner.model)), \
        model


def test_full_loop_with_an_llm_planner_submits_to_the_simulator(tmp_path: Path, task_dir: Path,
                                                                tiny_model_dir: Path) -> None:
    config = tiny_config(tmp_path, task_dir, tiny_model_dir, planner="llm",
                         overrides={"tracking": {"report_to": ["tensorboard"]}, "publish": {"dataset": True}})
    runner, model = scripted_runner(config.runs_dir, [
        {"action": "generate", "targets": {"nested": 4, "join": 4}, "train_overrides": None,
         "rationale": "nested and join are weakest"},
        {"action": "train", "targets": {}, "train_overrides": None, "rationale": "train on the new data"},
        {"action": "submit", "targets": {}, "train_overrides": None, "rationale": "it beats the base model"},
        {"action": "stop", "targets": {}, "train_overrides": None, "rationale": "submitted"},
    ])
    outcome = runner.start(config, run_id="llm-loop")
    state = outcome.state
    assert state["status"] == "finished"
    assert [d["decision"]["action"] for d in state["decisions"]] == ["generate", "train", "submit", "stop"]
    assert {d["source"] for d in state["decisions"]} == {"llm"}
    assert state["datasets"][-1]["synthetic_per_category"] == {"join": 4, "nested": 4}
    assert len(state["adapters"]) == len(state["evaluations"]) == 1
    best = state["evaluations"][0]
    assert best["bpc"] < state["baseline"]["bpc"]
    submission = state["submissions"][0]
    assert submission["adapter_id"] == state["best_adapter"]
    assert submission["validation_bpc"] is not None  # scored by the simulator's validator over HTTP
    assert submission["validation_bpc"] < submission["base_validation_bpc"]
    assert state["test_report"]["adapter"]["adapter_id"] == state["best_adapter"]
    assert model.position == 4
    assert "nested" in model.prompts[0]
    # The recording replays: same decisions, every call answered from the cassette.
    replay = runner.replay("llm-loop")
    assert replay.ok, replay.problems
    assert [d.decision.action for d in replay.decisions] == ["generate", "train", "submit", "stop"]
    _check_hub_artifacts_and_tracking(config.runs_dir / "llm-loop", state)


def _check_hub_artifacts_and_tracking(run_dir: Path, state: dict[str, Any]) -> None:
    """The run's model card (published with the adapter, and the final one), its dataset, its TensorBoard metrics."""
    import datasets
    from huggingface_hub import DatasetCard, ModelCard

    from agent.pipeline.cards import LOCAL_USER
    from tests.test_tracking import read_scalars
    from tools.publish import LocalPublisher, dataset_repo_name

    best, submission = state["best_adapter"], state["submissions"][0]
    store = LocalPublisher(run_dir / "flock-sim" / "publisher")
    published = store.fetch(submission["repo_id"], submission["revision"], run_dir.parent / "fetched")
    card = ModelCard.load(published / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    assert (published / "README.md").read_bytes() == (run_dir / "adapters" / best / "README.md").read_bytes()
    final = ModelCard.load(run_dir / "hub" / best / "README.md")
    assert {(r.dataset_split, r.metric_type) for r in final.data.eval_results} == \
        {("dev", "bpc"), ("test", "bpc"), ("validation", "bpc")}
    assert submission["revision"] in final.text and "Not accepted by FLock's validators" in final.text
    assert submission["accepted_by_flock_validators"] is False

    dataset_id = dataset_repo_name(LOCAL_USER, state["task"]["task_id"], "llm-loop")
    assert final.data.datasets == [dataset_id]
    fetched = store.fetch_dataset(dataset_id, "main", run_dir.parent / "dataset")
    rows = datasets.load_dataset(str(fetched), split="train")
    assert sorted(rows["category"]) == ["join"] * 4 + ["nested"] * 4
    assert DatasetCard.load(fetched / "README.md").data.pretty_name.startswith("SynthGen synthetic data")

    scalars = read_scalars(run_dir / "tracking" / "tensorboard")
    adapter = state["adapters"][0]
    assert len(scalars[f"{best}/train/loss"]) == len(adapter["loss_curve"])
    assert scalars["dev/adapter/bpc"] == [(1, pytest.approx(state["evaluations"][0]["bpc"], rel=1e-6))]
    assert scalars["dev/base/bpc"] == [(0, pytest.approx(state["baseline"]["bpc"], rel=1e-6))]
    assert scalars["generation/accepted"] == [(1, 8.0)]
    assert scalars["submission/validation_bpc"] == [(1, pytest.approx(submission["validation_bpc"], rel=1e-6))]
    assert [step for step, _ in scalars["test/adapter/bpc"]] == [1]


def test_invalid_unknown_and_over_budget_decisions_are_retried_then_overridden(tmp_path: Path, task_dir: Path,
                                                                                 tiny_model_dir: Path) -> None:
    config = tiny_config(tmp_path, task_dir, tiny_model_dir, planner="llm", overrides=RETRY_OVERRIDE_BUDGET)
    runner, _ = scripted_runner(config.runs_dir, RETRY_OVERRIDE_SCRIPT)
    state = runner.start(config, run_id="guarded").state
    records = state["decisions"]
    assert records[0]["source"] == "override"
    assert "unknown categories ['joins']" in records[0]["guardrail"]
    assert records[0]["decision"]["action"] == "generate"
    assert records[1]["source"] == "retry"
    assert records[1]["decision"]["action"] == "train"
    assert [r["source"] for r in records[2:]] == ["llm", "llm"]
    assert state["status"] == "finished"
    replay = runner.replay("guarded")
    assert replay.ok, replay.problems
    assert [d.source for d in replay.decisions] == ["override", "retry", "llm", "llm"]


def test_policy_run_resumes_after_an_interrupt_without_redoing_work(tmp_path: Path, task_dir: Path,
                                                                   tiny_model_dir: Path) -> None:
    config = tiny_config(tmp_path, task_dir, tiny_model_dir, overrides={"budget": {"max_iterations": 1}})
    seen: list[str] = []

    def stop_after_generate(node: str, update: dict[str, Any]) -> None:
        seen.append(node)
        if node == "generate":
            raise KeyboardInterrupt

    runner = Runner(RunStore(config.runs_dir), on_step=stop_after_generate)
    first = runner.start(config, run_id="interrupted")
    assert first.interrupted
    assert RunStore(config.runs_dir).get("interrupted")["status"] == "interrupted"
    resumed = Runner(RunStore(config.runs_dir), on_step=lambda node, update: seen.append(node)).resume("interrupted")
    assert resumed.state["status"] == "finished"
    assert seen.count("generate") == 1  # the finished node was not run again
    assert seen.count("bootstrap") == 1
    state = read_state(config.runs_dir, "interrupted")
    assert [d["decision"]["action"] for d in state["decisions"]][-1] == "stop"
    assert Runner(RunStore(config.runs_dir)).replay("interrupted").ok


def _check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), (
        f"{path} changed; if intended, refresh with SYNTHGEN_UPDATE_SNAPSHOTS=1")


def test_graph_diagram_snapshot() -> None:
    _check_snapshot("graph.mmd", compile_graph().get_graph().draw_mermaid())


def test_planner_prompt_snapshot() -> None:
    state = make_state(evaluations=[{"split": "dev", "adapter_id": "a1", "bpc": 0.9,
                                     "per_category": {"join": {"bpc": 1.0, "examples": 5}}}],
                       adapters=[{"adapter_id": "a1", "iteration": 1, "dataset_version": "v0", "path": "/a",
                                  "train_tokens": 10}], best_adapter="a1", usage={"iterations": 1},
                       data_values=[{"iteration": 1, "adapter_id": "a1", "method": "estimate", "reference": "base",
                                     "gain": 0.01, "arms": [{"category": "join", "strategy": "sql_first", "rows": 20,
                                                             "gain": 0.04}]}],
                       memory=[{"category": "join", "strategy": "sql_first",
                                "observations": [{"run_id": "r0", "rows": 20, "gain": 0.02, "seconds": 30}]}])
    state["task"]["strategies"] = ["sql_first"]
    text, _ = render_planner_prompt(PlanView.from_state(state, RunBudget()), "unknown categories ['joins']")
    _check_snapshot("planner_prompt.txt", text + "\n")
