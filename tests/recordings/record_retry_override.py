"""Record tests/recordings/retry-override-tiny again: the scripted retry-and-override scenario of
tests/test_graph.py on the tiny random model, run under /tmp/rec (the paths the recording names), then its
config.json, trace.jsonl and cassette.jsonl copied here. Needed when the planner prompt changes.

    PYTHONPATH=. python tests/recordings/record_retry_override.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.planner import LLMPlanner
from agent.runner import Runner
from memory.runs import RunStore
from tests.agent_helpers import (
    RETRY_OVERRIDE_BUDGET,
    RETRY_OVERRIDE_SCRIPT,
    SMOL,
    ScriptedChatModel,
    build_tiny_model,
    mini_task_dir,
    tiny_config,
)
from tools.models import load_tokenizer

RUN_ID = "retry-override-tiny"
WORK = Path("/tmp/rec")
HERE = Path(__file__).resolve().parent


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    weights = build_tiny_model(Path("/tmp/tiny"), load_tokenizer(SMOL))
    config = tiny_config(WORK, mini_task_dir(WORK), weights, planner="llm", overrides=RETRY_OVERRIDE_BUDGET)
    model = ScriptedChatModel(script=RETRY_OVERRIDE_SCRIPT)
    runner = Runner(RunStore(config.runs_dir), planner_factory=lambda c: LLMPlanner(model, name=c.planner.model))
    outcome = runner.start(config, run_id=RUN_ID)
    assert outcome.state["status"] == "finished", outcome.state.get("error")
    target = HERE / RUN_ID
    for name in ("config.json", "trace.jsonl", "cassette.jsonl"):
        shutil.copy(outcome.paths.root / name, target / name)
    print(f"recorded {RUN_ID}: {[d['source'] for d in outcome.state['decisions']]}")


if __name__ == "__main__":
    main()
