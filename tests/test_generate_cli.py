"""``synthgen generate`` end to end on the demo tasks with a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli.generate import app, parse_targets
from tools.data import load_jsonl
from tools.datastore import DataStore
from tools.tasks.function_calling import FunctionCallingPlugin
from tools.tasks.text2sql import Text2SQLPlugin

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def common(model: Path, out: Path) -> list[str]:
    return ["--model", str(model), "--out", str(out), "--max-new-tokens", "4", "--batch-size", "4",
            "--no-embeddings", "--seed", "5"]


def test_function_calling_demo_writes_rows_provenance_report_and_a_version(tiny_model_dir, smol_tokenizer,
                                                                           tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke("--task", "demo-fc", "--targets", "single_call=2,no_call=1", *common(tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    accepted = load_jsonl(out / "accepted.jsonl").records
    assert sorted(FunctionCallingPlugin().categorize(r).primary for r in accepted) == \
        ["no_call", "single_call", "single_call"]
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert [p["record_id"] for p in provenance] == [r.record_id for r in accepted]
    assert all([g["gate"] for g in p["gates"]] == ["format", "privacy", "validity", "category", "length",
                                                   "dedup", "decontamination"] for p in provenance)
    report = json.loads((out / "report.json").read_text())
    assert report["stop_reason"] == "targets_met" and report["task"] == "demo-fc"
    assert report["embedding_note"] == "disabled (--no-embeddings)"
    version = DataStore(out / "store").load_version("iter0")
    assert version.synthetic() == accepted
    assert len(version.records) == 167 + 3
    assert (out / "store" / "dedup_index.npz").is_file()
    assert "Quality gates" in result.output

    again = tmp_path / "again"
    rerun = invoke("--task", "demo-fc", "--targets", "single_call=2,no_call=1", *common(tiny_model_dir, again))
    assert rerun.exit_code == 0, rerun.output
    assert (again / "accepted.jsonl").read_bytes() == (out / "accepted.jsonl").read_bytes()


def test_text2sql_demo_rows_execute_and_match_their_category(tiny_model_dir, smol_tokenizer, tmp_path) -> None:
    out = tmp_path / "sql"
    result = invoke("--task", "demo", "--targets", "join=2,nested=1", *common(tiny_model_dir, out))
    assert result.exit_code == 0, result.output
    from tools.tasks.text2sql.sql.sandbox import check_sql

    plugin = Text2SQLPlugin()
    accepted = load_jsonl(out / "accepted.jsonl").records
    assert sorted(plugin.categorize(r).primary for r in accepted) == ["join", "join", "nested"]
    for record in accepted:
        prompt = plugin.prompt_of(record)
        assert check_sql(prompt.schema, record.assistant_texts()[-1]).ok
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert {p["writer"] for p in provenance} <= {"llm", "renderer"}
    assert all(p["strategy"] == "sql_first" for p in provenance)


def test_a_budget_stopped_run_resumes_with_a_larger_budget_to_the_uninterrupted_rows(tiny_model_dir, tmp_path) -> None:
    targets = ["--task", "demo", "--targets", "join=2,group_by=2", "--no-length-gate"]
    whole = invoke(*targets, *common(tiny_model_dir, tmp_path / "whole"), "--batch-size", "2")
    assert whole.exit_code == 0, whole.output
    out = tmp_path / "staged"
    first = invoke(*targets, *common(tiny_model_dir, out), "--batch-size", "2", "--max-attempts", "1")
    assert first.exit_code == 0, first.output
    assert "stop: max_attempts" in " ".join(first.output.split())
    assert len(load_jsonl(out / "accepted.jsonl").records) < 4
    second = invoke(*targets, *common(tiny_model_dir, out), "--batch-size", "2")
    assert second.exit_code == 0, second.output
    assert (out / "accepted.jsonl").read_bytes() == (tmp_path / "whole" / "accepted.jsonl").read_bytes()
    assert DataStore(out / "store").load_version("iter0").synthetic() == load_jsonl(out / "accepted.jsonl").records


@pytest.mark.parametrize(("args", "message"), [
    (["--targets", "join"], "expected CATEGORY=COUNT"),
    (["--targets", "join=2,join=3"], "given twice"),
    (["--targets", "teleport=2"], "unknown categories teleport for task type text2sql"),
    (["--targets", "join=2", "--task", "/nowhere/task"], "no such demo task, folder or file"),
    (["--targets", "join=2", "--backend", "carrier-pigeon"], "expected local or openai"),
    (["--targets", "join=2", "--backend", "openai"], "needs base_url"),
])
def test_bad_input_is_one_clear_error(args: list[str], message: str, tmp_path) -> None:
    result = invoke(*args, "--out", str(tmp_path / "x"), "--no-length-gate", "--no-embeddings")
    assert result.exit_code == 2
    assert message in result.output


def test_bad_training_file_names_file_and_line(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"conversations": [{"role": "user", "content": "hi"}]}\n')
    result = invoke("--targets", "short=1", "--task", str(bad), "--out", str(tmp_path / "x"), "--no-length-gate")
    assert result.exit_code == 2
    assert f"{bad}:1" in result.output and "no assistant turn" in result.output


def test_parse_targets() -> None:
    assert parse_targets("join=20, nested=5") == {"join": 20, "nested": 5}
    assert parse_targets("persona:chef-1a2b3c=3") == {"persona:chef-1a2b3c": 3}
