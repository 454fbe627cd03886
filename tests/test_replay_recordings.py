"""Recorded runs committed under tests/recordings replay in seconds, take the same decisions, and fail loudly,
naming the prompt file, when the planner prompt changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import prompts
from agent import planner
from agent.cli import app
from agent.runner import Runner
from memory.runs import RunStore

RECORDINGS = Path(__file__).resolve().parent / "recordings"
RUNS = sorted(p.name for p in RECORDINGS.iterdir() if (p / "cassette.jsonl").is_file())


def copy_recording(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(RECORDINGS / name, target)
    return target


def recorded_decisions(folder: Path) -> list[tuple[str, str]]:
    events = [json.loads(line) for line in (folder / "trace.jsonl").read_text().splitlines() if line]
    return [(e["data"]["action"], e["data"]["source"]) for e in events if e["type"] == "decision"]


@pytest.mark.parametrize("name", RUNS)
def test_recorded_run_replays_with_the_same_decisions(name: str, tmp_path: Path) -> None:
    folder = copy_recording(name, tmp_path)
    outcome = Runner(RunStore(tmp_path / "runs")).replay(name, run_dir=folder)
    assert outcome.ok, outcome.problems
    assert [(d.decision.action, d.source) for d in outcome.decisions] == recorded_decisions(folder)
    assert outcome.calls_replayed == len((folder / "cassette.jsonl").read_text().splitlines())


def test_the_retry_override_recording_shows_every_source(tmp_path: Path) -> None:
    folder = copy_recording("retry-override-tiny", tmp_path)
    assert [s for _, s in recorded_decisions(folder)] == ["override", "retry", "llm", "llm"]
    store = tmp_path / "runs"
    shutil.copytree(folder, store / "retry-override-tiny")
    RunStore(store)
    result = CliRunner().invoke(app, ["trace", "retry-override-tiny", "--runs-dir", str(store), "--json"])
    assert result.exit_code == 0, result.output
    decisions = [json.loads(line) for line in result.output.splitlines() if '"decision"' in line]
    assert [d["data"]["source"] for d in decisions] == ["override", "retry", "llm", "llm"]
    assert all(d["data"]["rationale"] for d in decisions)
    assert "unknown categories ['joins']" in decisions[0]["data"]["guardrail"]


@pytest.mark.parametrize("name", [n for n in RUNS if json.loads((RECORDINGS / n / "config.json").read_text())
                                  ["planner"]["kind"] != "policy"])
def test_editing_the_planner_prompt_breaks_the_replay_naming_the_prompt(name: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    edited = tmp_path / "prompts"
    shutil.copytree(prompts.PROMPT_DIR, edited, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    plan = edited / "plan.md"
    plan.write_text(plan.read_text().replace("You are the planner", "You are the careful planner"))

    original = prompts.load_prompt

    def load_edited(prompt_id: str, directory: Path = edited) -> prompts.Prompt:
        return original(prompt_id, edited)

    monkeypatch.setattr(prompts, "load_prompt", load_edited)
    monkeypatch.setattr(planner, "load_prompt", load_edited)
    folder = copy_recording(name, tmp_path)
    outcome = Runner(RunStore(tmp_path / "runs")).replay(name, run_dir=folder)
    assert not outcome.ok
    assert "prompt file 'plan' (prompts/plan.md) changed since the recording" in outcome.problems[0]


def test_a_decision_lost_to_a_kill_before_the_checkpoint_is_not_counted() -> None:
    """A plan node killed after tracing its decision runs again on resume; the resume event says how many
    decisions the checkpoint kept, so the replay compares against the decisions the run really took."""
    from agent.replay import recorded_decisions
    from agent.trace import TraceEvent

    def event(seq: int, type_: str, iteration: int = 0, **data: object) -> TraceEvent:
        return TraceEvent(seq=seq, ts=float(seq), run_id="r", type=type_, node="plan", iteration=iteration,
                          data=dict(data))

    events = [event(0, "decision", 0, action="generate", source="policy"),
              event(1, "decision", 1, action="submit", source="policy"),  # killed before the checkpoint
              event(2, "run_resume", decisions=1),
              event(3, "decision", 1, action="submit", source="policy"),
              event(4, "run_resume", decisions=2),
              event(5, "decision", 1, action="stop", source="policy")]
    assert [(d.iteration, d.decision.action) for d in recorded_decisions(events)] == [
        (0, "generate"), (1, "submit"), (1, "stop")]
    # a trace written before resume events carried the count keeps every decision
    old = [event(0, "decision", 0, action="generate", source="policy"), event(1, "run_resume")]
    assert len(recorded_decisions(old)) == 1
