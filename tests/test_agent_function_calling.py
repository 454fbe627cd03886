"""The agent on the second task type: a function-calling task cut from the bundled demo-fc task, the tiny model, the
policy planner. Generation targets the call-pattern categories where dev BPC is weakest, the new rows land in
those categories, and the run ends with a scored submission to the simulator."""

from __future__ import annotations

from pathlib import Path

from agent.runner import Runner
from memory.runs import RunStore
from tests.agent_helpers import mini_task_dir, tiny_config
from tools.tasks.function_calling import FunctionCallingPlugin

DEMO_FC = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "function_calling"


def test_agent_targets_weak_function_calling_categories(tmp_path: Path, tiny_model_dir: Path) -> None:
    plugin = FunctionCallingPlugin()
    task_dir = mini_task_dir(tmp_path, 8, source=DEMO_FC, categorize=lambda r: plugin.categorize(r).primary,
                             name="mini_fc_task")
    config = tiny_config(tmp_path, task_dir, tiny_model_dir, overrides={
        "budget": {"max_iterations": 1, "max_synthetic_examples": 8}})
    outcome = Runner(RunStore(config.runs_dir)).start(config, run_id="fc")
    state = outcome.state

    assert state["status"] == "finished"
    assert state["task"]["task_type"] == "function_calling"
    categories = set(plugin.categories())
    assert categories == {"no_tools", "no_call", "single_call", "multi_call"}
    generate = [d["decision"] for d in state["decisions"] if d["decision"]["action"] == "generate"]
    assert len(generate) == 1
    targets = generate[0]["targets"]
    assert targets and set(targets) <= categories
    # The targets are the categories with the largest dev-BPC gap over the overall score.
    baseline = state["baseline"]
    gaps = {c: s["bpc"] - baseline["bpc"] for c, s in baseline["per_category"].items()}
    assert max(gaps, key=lambda c: gaps[c]) in targets
    # The accepted synthetic rows are in the targeted categories, and the adapter trained on them was submitted.
    final = state["datasets"][-1]
    synthetic = {c: n for c, n in final["synthetic_per_category"].items() if n}
    assert synthetic and set(synthetic) <= set(targets)
    submission = state["submissions"][-1]
    assert submission["validation_bpc"] is not None and submission["validation_bpc"] > 0
