"""Trace, cassette, run store, lessons and configuration: the agent's bookkeeping, without models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cassette import Cassette, ReplayMismatch
from agent.config import ConfigError, build_config, check_environment, describe_fields
from agent.trace import REDACTED, Redactor, TraceWriter, read_trace
from memory.checkpoint import make_checkpointer
from memory.lessons import ArmObservation, arm_memory, lessons_for, make_store, record_arm
from memory.runs import RunNotFound, RunStore

SECRET = "flk-0123456789abcdef"


def test_trace_redacts_secrets_and_survives_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    writer = TraceWriter(path, "r1", Redactor(env={"FLOCK_API_KEY": SECRET}))
    writer.emit("run_start", config={"headers": {"flock-api-key": SECRET}}, note=f"key={SECRET}")
    writer.emit("node_start", node="plan", iteration=1)
    with path.open("a") as handle:  # a writer killed mid-line
        handle.write('{"v": 1, "seq": 2, "ts"')
    assert SECRET not in path.read_text()
    assert REDACTED in path.read_text()
    resumed = TraceWriter(path, "r1", Redactor(env={}))
    resumed.emit("run_resume")
    events = read_trace(path)
    assert [e.seq for e in events] == [0, 1, 2]
    assert [e.type for e in events] == ["run_start", "node_start", "run_resume"]


def test_cassette_records_then_replays_and_names_the_first_difference(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    recorder = Cassette(path, "record")
    calls = []

    def tool(x: int) -> dict[str, int]:
        calls.append(x)
        return {"y": x * 2}

    assert recorder.call("tool", "double", {"x": 2}, lambda: tool(2), encode=dict, decode=dict) == {"y": 4}
    assert recorder.call("planner", "smol", {"prompt_id": "plan", "prompt_file_hash": "aaa", "prompt_hash": "p1"},
                         lambda: '{"action": "stop"}', encode=str, decode=str) == '{"action": "stop"}'
    replayer = Cassette(path, "replay")
    assert replayer.call("tool", "double", {"x": 2}, lambda: tool(99), encode=dict, decode=dict) == {"y": 4}
    assert calls == [2]  # the replay did not run the tool
    with pytest.raises(ReplayMismatch, match=r"prompt file 'plan' \(prompts/plan.md\) changed"):
        replayer.call("planner", "smol", {"prompt_id": "plan", "prompt_file_hash": "bbb", "prompt_hash": "p2"},
                      lambda: "", encode=str, decode=str)
    other = Cassette(path, "replay")
    with pytest.raises(ReplayMismatch, match="the recording has tool 'double' but the graph asked for tool 'train'"):
        other.call("tool", "train", {}, lambda: {}, encode=dict, decode=dict)
    changed = Cassette(path, "replay")
    with pytest.raises(ReplayMismatch, match=r"x: 2 -> 3"):
        changed.call("tool", "double", {"x": 3}, lambda: {}, encode=dict, decode=dict)


def test_cassette_truncates_calls_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    recorder = Cassette(path, "record")
    for i in range(3):
        recorder.call("tool", "t", {"i": i}, lambda i=i: i, encode=int, decode=int)  # type: ignore[misc]
    resumed = Cassette(path, "record")
    resumed.truncate(1)
    assert len(resumed) == 1
    resumed.call("tool", "t", {"i": 1}, lambda: 10, encode=int, decode=int)
    assert [json.loads(line)["output"] for line in path.read_text().splitlines()] == [0, 10]


def test_cassette_never_stores_secrets(tmp_path: Path) -> None:
    path = tmp_path / "cassette.jsonl"
    cassette = Cassette(path, "record", Redactor(env={"HF_TOKEN": SECRET}))
    cassette.call("tool", "submit", {"token": SECRET}, lambda: {"echo": SECRET}, encode=dict, decode=dict)
    assert SECRET not in path.read_text()


def test_run_store_index_and_errors(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    paths = store.create({"seed": 1}, task="demo", planner="policy", run_id="r-1")
    assert paths.config.is_file()
    assert paths.adapters_dir.is_dir()
    store.update("r-1", status="finished", best_dev_bpc=0.5, iterations=2)
    assert store.get("r-1")["best_dev_bpc"] == 0.5
    assert [r["run_id"] for r in store.list()] == ["r-1"]
    with pytest.raises(FileExistsError):
        store.create({}, task="demo", planner="policy", run_id="r-1")
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        store.paths("nope")
    with pytest.raises(RunNotFound, match="invalid run id"):
        store.paths("../etc")
    with pytest.raises(ValueError, match="unknown run index fields"):
        store.update("r-1", colour="blue")


def test_lessons_store_keeps_each_arms_observations_across_runs(tmp_path: Path) -> None:
    store = make_store(tmp_path / "lessons.sqlite")
    record_arm(store, task_type="text2sql", category="nested", strategy="sql_first",
               observation=ArmObservation(run_id="a", rows=20, gain=0.2, seconds=30.0))
    record_arm(store, task_type="text2sql", category="join", strategy="sql_first",
               observation=ArmObservation(run_id="a", rows=20, gain=-0.01, seconds=30.0))
    record_arm(store, task_type="text2sql", category="nested", strategy="sql_first",
               observation=ArmObservation(run_id="b", rows=10, gain=0.0))
    # A lesson written before arms had observations ({examples, before, after}) reads as one.
    store.put(("lessons", "text2sql"), "targeted:filter", {"strategy": "targeted", "category": "filter", "history": [
        {"run_id": "old", "examples": 10, "before": 1.0, "after": 0.9, "at": 1.0}]})
    arms = arm_memory(make_store(tmp_path / "lessons.sqlite"), "text2sql")
    assert [(a.category, a.strategy, a.pulls, a.rows) for a in arms] == [
        ("filter", "targeted", 1, 10), ("join", "sql_first", 1, 20), ("nested", "sql_first", 2, 30)]
    nested = arms[2]
    assert nested.mean_reward == pytest.approx((100 * 0.2 / 20 + 0) / 2)  # gain per 100 rows, per observation
    assert nested.gain_per_minute == pytest.approx(60 * 0.2 / 30)
    assert arms[0].observations[0].gain == pytest.approx(0.1)
    lessons = lessons_for(arms)
    assert lessons[0].startswith("sql_first rows for 'nested': dev BPC -50.00% per 100 rows on average over 2 "
                                 "rounds (30 rows)")
    assert len(lessons) == 3
    assert arm_memory(store, "chat") == []

def test_checkpointer_is_strict(tmp_path: Path) -> None:
    saver = make_checkpointer(tmp_path / "c.sqlite")
    assert saver.serde._allowed_msgpack_modules is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("budgt: {max_iterations: 2}\n", "unknown key 'budgt' (did you mean 'budget'?)"),
        ("budget: {max_iterations: -1}\n", "budget.max_iterations: Input should be greater than or equal to 0"),
        ("planner: {kind: oracle}\n", "planner.kind: Input should be 'llm', 'local' or 'policy'"),
        ("- a list\n", "the top level must be a mapping"),
        ("budget: [\n", "not valid YAML"),
    ],
)
def test_bad_configs_give_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_config_precedence_and_environment_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.toml"
    path.write_text("seed = 3\n[budget]\nmax_iterations = 5\nmax_synthetic_examples = 10\n")
    config = build_config(path, {"budget": {"max_synthetic_examples": 99}}, quick=True)
    assert (config.seed, config.budget.max_iterations, config.budget.max_synthetic_examples) == (3, 1, 99)
    with pytest.raises(ConfigError, match="command line: budget.max_wall_seconds"):
        build_config(None, {"budget": {"max_wall_seconds": -5}})
    missing = build_config(None, {"task": {"kind": "dir", "task_dir": str(tmp_path / "absent")}})
    with pytest.raises(ConfigError, match="is not a readable folder"):
        check_environment(missing)
    monkeypatch.delenv("FLOCK_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"needs an API key in \$FLOCK_API_KEY"):
        check_environment(build_config(None, {"task": {"kind": "flock", "task_id": 7}}))
    documented = {name for name, _, description in describe_fields() if description}
    assert {name for name, _, _ in describe_fields()} == documented
