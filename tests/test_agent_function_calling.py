"""The agent on the second task type: a function-calling task cut from the bundled demo-fc task, the tiny model, the
policy planner. Generation targets the call-pattern categories where dev BPC is weakest, the new rows land in
those categories, and the run ends with a scored submission to the simulator."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from agent.runner import Runner
from memory.runs import RunStore
from tests.agent_helpers import tiny_config
from tools.data import load_jsonl, write_jsonl
from tools.tasks.function_calling import FunctionCallingPlugin

DEMO_FC = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "function_calling"


def mini_fc_task(root: Path, per_category: int = 8, validation_per_category: int = 2) -> Path:
    plugin = FunctionCallingPlugin()
    folder = root / "mini_fc_task"
    folder.mkdir(parents=True)
    for name, count in (("training_set.jsonl", per_category), ("validation_set.jsonl", validation_per_category)):
        by_category: dict[str, list[Any]] = defaultdict(list)
        for record in load_jsonl(DEMO_FC / name).records:
            category = plugin.categorize(record).primary
            if len(by_category[category]) < count:
                by_category[category].append(record)
        write_jsonl([r for c in sorted(by_category) for r in by_category[c]], folder / name)
    shutil.copy(DEMO_FC / "task.json", folder / "task.json")
    return folder


def test_agent_targets_weak_function_calling_categories(tmp_path: Path, tiny_model_dir: Path) -> None:
    task_dir = mini_fc_task(tmp_path)
    config = tiny_config(tmp_path, task_dir, tiny_model_dir, overrides={
        "budget": {"max_iterations": 1, "max_synthetic_examples": 8}})
    outcome = Runner(RunStore(config.runs_dir)).start(config, run_id="fc")
    state = outcome.state

    assert state["status"] == "finished"
    assert state["task"]["task_type"] == "function_calling"
    categories = set(FunctionCallingPlugin().categories())
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
