"""The command line as a person meets it (issue 14): where runs are kept and found, help and errors that read
well in a pipe, the version and log level, config-doc's outputs, the decision source in replays, the defaults
that match the configuration, and a run that says what it is doing."""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml
from rich.console import Console
from typer.testing import CliRunner, Result

import agent.cli.common as common
from agent import progress
from agent.cli import app
from agent.cli.display import finish_run
from agent.config import GeneratorConfig, RunConfig
from agent.state import Decision, DecisionRecord
from agent.trace import TraceEvent
from memory.runs import RUNS_DIR_ENV, RunStore
from tests.agent_helpers import SMOL, mini_task_dir
from tools.data import DataValidationError, load_jsonl, validate_line

RECORDINGS = Path(__file__).resolve().parent / "recordings"


def synthgen(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={RUNS_DIR_ENV: None, **(env or {})})


def error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


# ----- where runs are kept and found ------------------------------------------------------------------------------
def existing_run(folder: Path) -> Path:
    """A run folder named ``taken``: starting a run with that id fails at once, naming the folder it looked in."""
    (folder / "taken").mkdir(parents=True)
    (folder / "taken" / "config.json").write_text("{}")
    return folder


@pytest.mark.parametrize("winner", ["config file", "environment", "flag"])
def test_runs_dir_comes_from_the_flag_then_the_environment_then_the_config_file(tmp_path: Path,
                                                                                winner: str) -> None:
    places = {name: existing_run(tmp_path / name.replace(" ", "-")) for name in ("config file", "environment",
                                                                                  "flag")}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"runs_dir": str(places["config file"]), "planner": {"kind": "policy"}}))
    args = ["run", "--config", str(config), "--run-id", "taken"]
    env: dict[str, str | None] = {}
    if winner in ("environment", "flag"):
        env[RUNS_DIR_ENV] = str(places["environment"])
    if winner == "flag":
        args += ["--runs-dir", str(places["flag"])]
    line = error_line(synthgen(*args, env=env))
    assert f"run taken already exists at {places[winner] / 'taken'}" in line


def test_commands_that_look_at_runs_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert synthgen("runs").exit_code == 0
    assert "no run 'NOPE'" in error_line(synthgen("status", "NOPE"))
    assert "no run 'NOPE'" in error_line(synthgen("trace", "NOPE"))
    assert "no runs under runs" in error_line(synthgen("status"))
    assert list(tmp_path.iterdir()) == []  # no runs/index.sqlite


def test_a_copied_run_folder_is_listed_and_its_status_shown(tmp_path: Path) -> None:
    runs_dir = tmp_path / "elsewhere"
    shutil.copytree(RECORDINGS / "retry-override-tiny", runs_dir / "copied-run")
    listed = synthgen("runs", env={RUNS_DIR_ENV: str(runs_dir)})
    assert listed.exit_code == 0 and "copied-run (not indexed)" in listed.stdout
    shown = synthgen("status", "copied-run", "--runs-dir", str(runs_dir))
    assert shown.exit_code == 0, shown.output
    assert "copied-run: finished" in shown.stdout and "Traceback" not in shown.output
    # An index that knows other runs but not this one.
    RunStore(runs_dir).adopt("another-run", task="demo", planner="policy")
    shown = synthgen("status", "copied-run", "--runs-dir", str(runs_dir))
    assert shown.exit_code == 0 and "copied-run: finished" in shown.stdout
    assert synthgen("status", env={RUNS_DIR_ENV: str(runs_dir)}).exit_code == 0


# ----- errors and help that read well in a pipe --------------------------------------------------------------------
def test_an_unknown_bundled_task_lists_only_the_bundled_tasks() -> None:
    line = error_line(synthgen("run", "--task", "nope"))
    assert "demo (text-to-SQL) and demo-fc (function calling)" in line and "--task-dir" in line
    assert "'dir'" not in line and "'flock'" not in line


def test_an_error_in_a_flag_names_the_flag() -> None:
    line = error_line(synthgen("run", "--planner", "oracle"))
    assert "command line: --planner (planner.kind): Input should be 'llm', 'local' or 'policy'" in line


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [("c.yaml", "budget: [1, 2\n", "c.yaml:2:1: not valid YAML: expected ',' or ']', but got '<stream end>' "
                                   "(while parsing a flow sequence that starts at line 1, column 9)"),
     ("c.yaml", "budget:\n  max_iterations: 2\n bad: 1\n", "c.yaml:3:2: not valid YAML"),
     ("c.yaml", "seed: 1\nbudget:\n  max_iterations: many\n", "c.yaml:3: budget.max_iterations: Input should be"),
     ("c.toml", "[budget]\nmax_iterations = \n", "c.toml:2:18: not valid TOML: Invalid value")],
    ids=["yaml-flow", "yaml-indent", "yaml-field", "toml"])
def test_configuration_errors_give_the_line_and_column(tmp_path: Path, name: str, text: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert says in error_line(synthgen("run", "--config", str(path)))


def test_json_errors_say_at_only_once() -> None:
    _, problems = validate_line(b'{"conversations": [{"role": "user", "content": "no end', file="f", line=3)
    assert str(problems[0]) == "f:3: bad JSON: Unterminated string starting at column 48"


def test_long_errors_and_the_resume_command_stay_on_one_line_in_a_pipe(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / ("a-long-folder-name-" * 8) / "runs"
    line = error_line(synthgen("run", "--config", str(deep / "missing.yaml")))
    assert line.endswith("missing.yaml: config file not found")

    @dataclass
    class Interrupted:
        run_id: str = "20261206-120000-abcd"
        interrupted: bool = True

    with pytest.raises(typer.Exit):
        finish_run(Interrupted(), deep, {})
    printed = capsys.readouterr().err.splitlines()
    assert f"synthgen resume 20261206-120000-abcd --runs-dir {deep}" in printed[-1]


def all_commands() -> list[list[str]]:
    def walk(command: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in (getattr(command, "commands", None) or {}).items():
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_help_shows_no_bool_or_str_placeholders(terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "plain_output", lambda: not terminal)
    for path in all_commands():
        result = synthgen(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output and "<str>" not in result.output, (path, result.output)
        assert ("╭" in result.output) == terminal  # boxes only in a terminal


def option_default(path: list[str], name: str) -> Any:
    command: Any = typer.main.get_command(app)
    for part in path:
        command = command.commands[part]
    return next(p.default for p in command.params if p.name == name)


def test_command_defaults_are_the_configuration_defaults() -> None:
    train = RunConfig().train
    assert option_default(["model", "train"], "epochs") == train.epochs == 1
    assert option_default(["model", "train"], "learning_rate") == train.learning_rate
    assert option_default(["generate"], "batch_size") == GeneratorConfig().batch_size == 16
    assert option_default(["generate"], "forward_batch") is None  # the batch size, as in a run


def test_version_and_log_level() -> None:
    result = synthgen("--version")
    assert result.exit_code == 0 and result.stdout.startswith("synthgen ") and "python " in result.stdout
    assert synthgen("--log-level", "loud", "runs").exit_code == 2
    assert synthgen("--log-level", "warning", "config-doc").exit_code == 0
    assert not common.progress_lines_wanted()
    assert synthgen("--verbose", "config-doc").exit_code == 0
    assert common.progress_lines_wanted()


@pytest.mark.parametrize("output", ["plain", "markdown"])
def test_config_doc_reads_well_in_a_pipe(output: str) -> None:
    result = synthgen("config-doc", *(["--format", output] if output == "markdown" else []))
    assert result.exit_code == 0
    text = result.stdout
    assert not any(ch in text for ch in "┃│┏━")
    for key in ("budget.max_iterations", "task.skip_bad_lines", "train.epochs", "runs_dir"):
        assert key in text
    assert "Qwen/Qwen2.5-0.5B-Instruct" in text
    if output == "markdown":
        assert text.startswith("# synthgen configuration") and "| `budget.max_iterations` | `3` |" in text
    else:
        assert "budget.max_iterations" in text.splitlines()[0] or any(
            line.startswith("budget.max_iterations ") for line in text.splitlines())


@pytest.mark.timeout(120)
def test_profile_of_an_endless_stream_returns() -> None:
    """``synthgen profile /dev/zero`` read forever: the first line never ends."""
    with pytest.raises(DataValidationError, match="line has no end after 64 MiB: not a JSONL file"):
        load_jsonl("/dev/zero", strict=False)
    line = error_line(synthgen("profile", "/dev/zero"))
    assert "/dev/zero:1:" in line


# ----- decisions --------------------------------------------------------------------------------------------------
def test_replay_prints_the_decision_source_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "retry-override-tiny"
    shutil.copytree(RECORDINGS / "retry-override-tiny", folder)
    result = synthgen("replay", "retry-override-tiny", "--run-dir", str(folder))
    assert result.exit_code == 0, result.output
    sources = [line.rsplit(" ", 1)[-1] for line in result.stdout.splitlines() if line.startswith("decision #")]
    assert sources == ["[override]", "[retry]", "[llm]", "[llm]"]


@pytest.mark.parametrize(("rationale", "placeholder"), [
    ("...", True), ("", True), ("  ", True), ("…", True), ('"..."', True), ("<rationale>", True), ("string", True),
    ("TODO", True), ("n/a", True),
    # SmolLM2 as planner wrote this: the prompt's own instruction, not a reason
    ("This action now and which numbers above decide it.", True),
    ("join is the weakest category (+30% BPC)", False), ("2 rows", False), ("stop: no budget left", False)])
def test_a_placeholder_rationale_is_marked_on_the_decision_event(rationale: str, placeholder: bool) -> None:
    record = DecisionRecord(iteration=0, decision=Decision(action="stop", rationale=rationale), source="llm",
                            guardrail="ok")
    assert record.trace_data()["rationale_placeholder"] is placeholder


def test_the_planner_prompt_shows_no_value_to_copy() -> None:
    from prompts import load_prompt

    body = load_prompt("plan").body
    assert '"..."' not in body and "rationale" in body


# ----- watching a run ---------------------------------------------------------------------------------------------
def test_plain_progress_lines_show_stage_budget_and_a_heartbeat() -> None:
    out = io.StringIO()
    reporter = progress.PlainReporter(Console(file=out, width=300), every_s=0.05)
    budget = RunConfig().budget
    with progress.reporting(reporter), \
            progress.stage("bootstrap", 0, {"wall_seconds": 30.0, "synthetic_examples": 0}, budget), \
            progress.step("score base model on dev", 120) as advance:
        advance(40)
        time.sleep(0.3)
        advance(80)
    lines = out.getvalue().splitlines()
    assert "[bootstrap] started; rounds done 0/3; budget used: wall 0:30 of 25:00 (24:30 left), synthetic rows " \
           "0/300" in lines[0]
    assert lines[1].endswith("[bootstrap] score base model on dev (120) ...")
    beats = [line for line in lines if "score base model on dev: 40/120" in line and "elapsed" in line]
    assert beats and "left" in beats[0]  # the heartbeat shows progress and an ETA while the step runs
    assert "[bootstrap] score base model on dev: done in 0:00" in lines[-2]
    assert "[bootstrap] done in 0:00" in lines[-1]
    assert isinstance(progress._reporter[0], progress.SilentReporter)  # put back after the block


def test_the_live_header_shows_stage_rounds_and_budget() -> None:
    reporter = progress.LiveReporter(Console(file=io.StringIO(), width=200))
    with reporter.stage(progress.StageStatus("train", 1, {"wall_seconds": 600.0, "train_tokens": 61_000},
                                             RunConfig().budget.model_dump())):
        header = reporter._header()
    assert "train" in header and "rounds done 1/3" in header
    assert "wall 10:00 of 25:00 (15:00 left)" in header and "train tokens 61k/2.0M" in header


def test_time_per_stage_adds_up_every_run_of_a_stage() -> None:
    def end(node: str, seconds: float) -> TraceEvent:
        return TraceEvent(seq=0, ts=0.0, run_id="r", type="node_end", node=node, data={"seconds": seconds})

    events = [end("bootstrap", 480.0), end("plan", 0.5), end("train", 90.0), end("plan", 0.25), end("train", 60.0)]
    assert progress.stage_seconds(events) == {"bootstrap": (1, 480.0), "plan": (2, 0.75), "train": (2, 150.0)}


def test_a_run_in_a_pipe_says_what_it_does_and_ends_with_time_per_stage(tmp_path: Path,
                                                                        tiny_model_dir: Path) -> None:
    settings = {"task": {"kind": "dir", "task_dir": str(mini_task_dir(tmp_path))}, "base_model": SMOL,
                "base_model_weights": str(tiny_model_dir), "generator": {"backend": "none"},
                "planner": {"kind": "policy"}, "budget": {"max_iterations": 0},
                "eval": {"task_metric": False, "dev_fraction": 0.15, "test_fraction": 0.15},
                "runs_dir": str(tmp_path / "runs")}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(settings))
    result = synthgen("run", "--config", str(config), "--run-id", "watched")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for said in ("[bootstrap] started; rounds done 0/0; budget used: wall 0:00 of 25:00",
                 "[bootstrap] download training set ...", f"[bootstrap] load base model {tiny_model_dir} ...",
                 "[bootstrap] score base model on dev (", "[bootstrap] done in", "[finish] started",
                 "Time per stage", "budget used: rounds done 0/0", "replay: synthgen replay watched --runs-dir"):
        assert said in out, said
    stage_rows = [line.split("│")[1].strip() for line in out.splitlines() if line.count("│") == 5]
    assert {"bootstrap", "plan", "finish", "total"} <= set(stage_rows)
    assert json.loads((tmp_path / "runs" / "watched" / "config.json").read_text())["runs_dir"] == \
        str(tmp_path / "runs")
