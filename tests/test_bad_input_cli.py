"""Bad input through the command line (issue 9 item 3): malformed task JSON, training files with every class of
defect, a 2 GB claimed download, bad configurations, unknown models and unreachable endpoints. Each one ends
``synthgen run`` with exit code 2 and one line, ``error: ...``, that names what is wrong and where; never a
traceback."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from agent.cli import app
from agent.runner import Runner
from memory.runs import RunStore
from tests.agent_helpers import SMOL, mini_task_dir, tiny_config
from tests.reliability_helpers import FAST_CLIENT, SIM_FAULTS_ENV, FakeFlock, faults_env
from tools.flock.simulator.faults import FaultRule

GOOD_LINE = json.dumps({"conversations": [{"role": "user", "content": "How many teams are there?"},
                                          {"role": "assistant", "content": "SELECT COUNT(*) FROM teams"}]})


@pytest.fixture(scope="module")
def good_task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_task_dir(tmp_path_factory.mktemp("task"))


def settings_for(task_dir: Path, weights: Path, runs_dir: Path) -> dict[str, Any]:
    return {
        "task": {"kind": "dir", "task_dir": str(task_dir), **FAST_CLIENT},
        "base_model": SMOL,
        "base_model_weights": str(weights),
        "generator": {"backend": "none", "batch_size": 8},
        "planner": {"kind": "policy"},
        "budget": {"max_iterations": 1, "max_synthetic_examples": 16},
        "train": {"epochs": 1, "lora_rank": 4, "lora_alpha": 8, "batch_tokens": 2048},
        "eval": {"task_metric": False, "dev_fraction": 0.15, "test_fraction": 0.15},
        "runs_dir": str(runs_dir),
    }


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def synthgen(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def one_clear_error(result: Result, *says: str) -> str:
    """Exit code 2, no traceback, and exactly one ``error:`` line, the last thing on stderr, saying ``says``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    for fragment in says:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def run_with(tmp_path: Path, good_task: Path, tiny_model_dir: Path) -> Any:
    """``synthgen run`` on a configuration file made of the tiny settings plus changes."""

    def run(changes: dict[str, Any] | None = None, *extra: str, env: dict[str, str | None] | None = None,
            task_dir: Path | None = None) -> Result:
        settings = merge(settings_for(task_dir or good_task, tiny_model_dir, tmp_path / "runs"), changes or {})
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(settings))
        return synthgen("run", "--config", str(path), "--runs-dir", str(tmp_path / "runs"), "--run-id", "bad",
                        *extra, env=env)

    return run


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----- configurations --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("budjet:\n  max_iterations: 2\n", "unknown key 'budjet' (did you mean 'budget'?)"),
        ("budget:\n  max_iterations: many\n", "budget.max_iterations: Input should be a valid integer"),
        ("budget: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("task:\n  timeout_s: -1\n", "task.timeout_s: Input should be greater than 0"),
        ("planner:\n  kind: oracle\n", "planner.kind: Input should be 'llm', 'local' or 'policy'"),
    ],
    ids=["unknown-key", "wrong-type", "bad-yaml", "not-a-mapping", "out-of-range", "unknown-choice"],
)
def test_bad_config_files(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    one_clear_error(synthgen("run", "--config", str(path), "--runs-dir", str(tmp_path / "runs")), str(path), says)


def test_missing_config_file_and_task_folder(tmp_path: Path) -> None:
    one_clear_error(synthgen("run", "--config", str(tmp_path / "nope.yaml")), "nope.yaml: config file not found")
    one_clear_error(synthgen("run", "--task-dir", str(tmp_path / "nowhere"), "--runs-dir", str(tmp_path)),
                    "task.task_dir:", "nowhere is not a readable folder")


def test_live_api_without_a_key_or_planner_without_an_endpoint(tmp_path: Path) -> None:
    one_clear_error(synthgen("run", "--task-id", "5", "--runs-dir", str(tmp_path), env={"FLOCK_API_KEY": None}),
                    "needs an API key in $FLOCK_API_KEY")
    one_clear_error(synthgen("run", "--planner", "llm", "--runs-dir", str(tmp_path),
                             env={"SYNTHGEN_LLM_API_KEY": None}), "planner.base_url or an API key")


def test_bad_fault_plan_in_the_environment(run_with: Any, tmp_path: Path) -> None:
    """A start that fails before anything is done keeps nothing and says to run again (a resume could not help)."""
    line = one_clear_error(run_with(env={SIM_FAULTS_ENV: '[{"endpoint": "submit_result", "kind": "meltdown"}]'}),
                           "$SYNTHGEN_SIM_FAULTS: 0.kind: Input should be",
                           "(nothing was kept; run the command again once this is fixed)")
    assert "resume" not in line
    assert not (tmp_path / "runs" / "bad").exists()
    assert RunStore(tmp_path / "runs").list() == []


# ----- task folders and training files -----------------------------------------------------------------------
def task_variant(good_task: Path, dest: Path, *, task_json: bytes | None = None,
                 training: bytes | None = None) -> Path:
    folder = dest / "variant"
    shutil.copytree(good_task, folder)
    if task_json is not None:
        (folder / "task.json").write_bytes(task_json)
    if training is not None:
        (folder / "training_set.jsonl").write_bytes(training)
    return folder


def task_json_with(good_task: Path, **data: Any) -> bytes:
    task = json.loads((good_task / "task.json").read_text())
    task["data"].update(data)
    return json.dumps(task).encode()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda t: b'{"id": 1, "data": {', ["task.json:1:", "bad JSON"]),
        (lambda t: b"[1, 2, 3]", ["task.json: expected a JSON object, got list"]),
        (lambda t: b"\xff\xfe{}", ["task.json: not UTF-8"]),
        (lambda t: task_json_with(t, context_length=-5), ["field data.context_length: must be a positive integer"]),
        (lambda t: task_json_with(t, training_set_key="../../../../etc/passwd"),
         ["field data.training_set_key: '../../../../etc/passwd' is not a file inside"]),
    ],
    ids=["truncated-json", "not-an-object", "not-utf8", "negative-context-length", "path-outside-the-folder"],
)
def test_malformed_task_json(make: Any, says: list[str], run_with: Any, good_task: Path, tmp_path: Path) -> None:
    folder = task_variant(good_task, tmp_path, task_json=make(good_task))
    one_clear_error(run_with(task_dir=folder), *says)


_DEEP = b'{"conversations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
_LONG = json.dumps({"conversations": [{"role": "user", "content": "x" * 5_000_000},
                                      {"role": "assistant", "content": "SELECT 1"}]}).encode()
DEFECTIVE_FILES: dict[str, tuple[bytes, list[str]]] = {
    "empty-file": (b"", ["variant/training_set.jsonl: file holds no records"]),
    "blank-lines-only": (b"\n\n  \n", ["variant/training_set.jsonl: file holds no records"]),
    "invalid-utf8": (b'{"conversations": [{"role": "user", "content": "caf\xe9"}]}\n' * 3,
                     ["training_set.jsonl:1: not valid UTF-8 (byte 0xe9 at column 52)"]),
    "deep-nesting": (_DEEP + b"\n", ["training_set.jsonl:1: JSON nested deeper than 64 levels"]),
    "very-long-line": (_LONG + b"\n", ["training_set.jsonl:1:", "over the 4194304-byte limit"]),
    "not-json": (b"SELECT * FROM teams;\n" * 3, ["training_set.jsonl:1: bad JSON: Expecting value at column 1"]),
    "json-array": (b'["user", "assistant"]\n' * 3, ["training_set.jsonl:1: a record must be a JSON object, got "
                                                      "list"]),
    "wrong-roles": ((json.dumps({"conversations": [{"role": "system", "content": "be brief"},
                                                   {"role": "assistant", "content": "ok"}]}) + "\n").encode() * 3,
                    ["training_set.jsonl:1: conversations[0].role: unknown role 'system'"]),
    "no-assistant-turn": ((json.dumps({"conversations": [{"role": "user", "content": "hi"}]}) + "\n").encode() * 2,
                          ["training_set.jsonl:1: conversations: no assistant turn"]),
    "tools-not-json": ((json.dumps({"tools": "[{oops", "conversations": json.loads(GOOD_LINE)["conversations"]})
                        + "\n").encode(), ["training_set.jsonl:1: tools: tools is not valid JSON"]),
}


@pytest.mark.parametrize("defect", list(DEFECTIVE_FILES))
def test_training_file_defects(defect: str, run_with: Any, good_task: Path, tmp_path: Path) -> None:
    """The user's own file and line are named, before any run folder is made (nothing to resume)."""
    content, says = DEFECTIVE_FILES[defect]
    folder = task_variant(good_task, tmp_path, training=content)
    line = one_clear_error(run_with(task_dir=folder), str(folder / "training_set.jsonl"), *says)
    assert "resume" not in line
    assert len(line) < 1200
    assert not (tmp_path / "runs" / "bad").exists()


#: Lines with every kind of defect the issue names (broken, field-missing, empty assistant, 10 MB) and more.
BAD_LINES = [b'{"conversations": [{"role": "user", "content": "caf\xe9"}]}\n', _DEEP + b"\n", b"SELECT 1;\n",
             b'["a"]\n', (json.dumps({"conversations": [{"role": "robot", "content": "x"},
                                                        {"role": "assistant", "content": "y"}]}) + "\n").encode(),
             b'{"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}\n',
             b'{"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}\n',
             _LONG + b"\n"]


def mixed_training_file(good_task: Path) -> tuple[bytes, int]:
    """Good records with the bad lines among them (the 5 MB one last, longer than the download's probe), and
    the number of good records."""
    good = (good_task / "training_set.jsonl").read_bytes().splitlines(keepends=True)
    return b"".join(good[:1] + BAD_LINES[:-1] + good[1:] + BAD_LINES[-1:]), len(good)


def test_a_bad_line_among_good_ones_stops_the_run_naming_it(run_with: Any, good_task: Path, tmp_path: Path) -> None:
    """Strict by default, as `synthgen profile` is: the first bad line stops the run before it starts."""
    folder = task_variant(good_task, tmp_path, training=mixed_training_file(good_task)[0])
    one_clear_error(run_with(task_dir=folder), f"{folder / 'training_set.jsonl'}:2: not valid UTF-8",
                    "leave bad lines out with --skip-bad-lines")
    assert not (tmp_path / "runs" / "bad").exists()


def test_skip_bad_lines_reports_every_skipped_line(run_with: Any, good_task: Path, tmp_path: Path) -> None:
    """With --skip-bad-lines the run goes on and says which lines it left out."""
    folder = task_variant(good_task, tmp_path, training=mixed_training_file(good_task)[0])
    result = run_with({"budget": {"max_iterations": 0}}, "--skip-bad-lines", task_dir=folder)
    assert result.exit_code == 0, result.output
    assert f"skipped {len(BAD_LINES)} bad line(s) of the training set" in result.stderr
    skipped = [line for line in result.stderr.splitlines() if "  skipped " in line]
    assert len(skipped) == len(BAD_LINES)
    assert "training_set.jsonl:2: not valid UTF-8" in skipped[0]
    assert "over the 4194304-byte limit" in skipped[-1]
    assert "cut off" not in result.output


def test_a_broken_last_line_is_named_not_taken_for_a_cut_off_download(run_with: Any, good_task: Path,
                                                                      tmp_path: Path) -> None:
    """The simulator serves a local file whole (with its length): a broken last line is the file's, not a cut. It
    was retried 5 times and reported as "the body was probably cut off"."""
    good = (good_task / "training_set.jsonl").read_bytes()
    folder = task_variant(good_task, tmp_path, training=good + b'{"conversations": [{"role": "user", "cont')
    last = len(good.splitlines()) + 1
    line = one_clear_error(run_with(task_dir=folder),
                           f"{folder / 'training_set.jsonl'}:{last}: bad JSON: Unterminated string starting at "
                           "column")
    assert "cut off" not in line and " at at " not in line
    skipped = run_with({"budget": {"max_iterations": 0}}, "--skip-bad-lines", task_dir=folder)
    assert skipped.exit_code == 0, skipped.output
    assert f"training_set.jsonl:{last}: bad JSON" in skipped.stderr and "cut off" not in skipped.output


def test_defective_lines_among_good_ones_are_skipped_and_counted(good_task: Path, tmp_path: Path,
                                                                tiny_model_dir: Path) -> None:
    """With task.skip_bad_lines a file with good records keeps going: each bad line is skipped (and counted), the
    rest is used."""
    mixed, good = mixed_training_file(good_task)
    bad = BAD_LINES
    folder = task_variant(good_task, tmp_path, training=mixed)
    config = tiny_config(tmp_path, folder, tiny_model_dir, overrides={"task": {**FAST_CLIENT, "skip_bad_lines": True}})

    def stop(node: str, update: dict[str, Any]) -> None:
        if node == "bootstrap":
            raise KeyboardInterrupt

    outcome = Runner(RunStore(config.runs_dir), on_step=stop).start(config, run_id="mixed")
    prepared = json.loads((outcome.paths.task_dir / "prepared.json").read_text())
    assert prepared["skipped_lines"] == len(bad)
    assert sum(prepared["task"]["split_sizes"].values()) == good


# ----- a 2 GB claim from the storage host ------------------------------------------------------------------
def claim_two_gigabytes(handler: Any) -> None:
    """A storage answer that claims 2 GiB + 1 byte and sends a few KB of real records until the client leaves."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(2 * 1024**3 + 1))
    handler.end_headers()
    chunk = (GOOD_LINE + "\n").encode() * 16
    for _ in range(64):
        handler.wfile.write(chunk)
        handler.server.body_bytes_sent += len(chunk)


@pytest.fixture
def fake_flock(good_task: Path) -> Iterator[FakeFlock]:
    with FakeFlock(json.loads((good_task / "task.json").read_text()), claim_two_gigabytes) as server:
        yield server


def test_two_gigabyte_claim_is_refused_without_downloading_it(run_with: Any, fake_flock: FakeFlock,
                                                              tmp_path: Path) -> None:
    # A live task takes only a base model FLock's validators accept (the tiny weights stand in for it).
    result = run_with({"task": {"kind": "flock", "task_id": 1, "api_base_url": fake_flock.url + "/api/v1"},
                       "base_model": "Qwen/Qwen2.5-0.5B-Instruct"},
                      env={"FLOCK_API_KEY": "node-key-for-the-fake-api", "HF_TOKEN": "hf-x", "HF_USERNAME": "x"})
    one_clear_error(result, "/storage/data.jsonl: 2147483649 bytes is over the 2147483648-byte download cap")
    assert fake_flock.body_bytes_sent < 1024 * 1024
    assert not (tmp_path / "runs" / "bad").exists()  # a start that kept nothing leaves no folder (nor a partial file)


def serve_whole(body: bytes) -> Callable[[Any], None]:
    """A storage answer that sends ``body`` whole, with its length."""

    def storage(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return storage


def test_a_live_tasks_bad_last_line_is_named_once_not_retried_as_a_cut(run_with: Any, good_task: Path,
                                                                       tmp_path: Path) -> None:
    """A whole body with a broken last line: one download, then the task's training set and line are named (not
    the run's copy, which a failed start removes), with the option that skips such lines."""
    good = (good_task / "training_set.jsonl").read_bytes()
    task = json.loads((good_task / "task.json").read_text())
    with FakeFlock(task, serve_whole(good + b'{"conversations": [')) as server:
        result = run_with({"task": {"kind": "flock", "task_id": 1, "api_base_url": server.url + "/api/v1"},
                           "base_model": "Qwen/Qwen2.5-0.5B-Instruct"},
                          env={"FLOCK_API_KEY": "node-key-for-the-fake-api", "HF_TOKEN": "hf-x", "HF_USERNAME": "x"})
        downloads = [path for path in server.requests if path.startswith("/storage/")]
    line = one_clear_error(result, f"training set of task 1, line {len(good.splitlines()) + 1}: bad JSON",
                           "--skip-bad-lines")
    assert "cut off" not in line and len(downloads) == 1
    assert not (tmp_path / "runs" / "bad").exists()


# ----- models and endpoints -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"base_model": "nobody/no-such-model"},
         ["base_model: 'nobody/no-such-model' has no FLock template", "synthgen config-doc"]),
        ({"base_model_weights": "/nonexistent/weights"}, ["/nonexistent/weights", "(nothing was kept; run the "
                                                                                  "command again"]),
        ({"generator": {"backend": "local", "model": "nobody/no-such-generator"}},
         ["nobody/no-such-generator", "a resume keeps its settings: start a new run with the fix"]),
        ({"planner": {"kind": "local", "model": "nobody/no-such-planner"}},
         ["nobody/no-such-planner", "a resume keeps its settings: start a new run with the fix"]),
    ],
    ids=["base-model", "base-weights", "generator-model", "planner-model"],
)
def test_unknown_models(changes: dict[str, Any], says: list[str], run_with: Any, tmp_path: Path) -> None:
    """A model the run cannot have is never followed by "synthgen resume" (a resume keeps the model): before
    bootstrap is done the failed start leaves nothing behind; after it, the run keeps what it did."""
    line = one_clear_error(run_with(changes), *says)
    assert "synthgen resume" not in line
    assert len(line) < 600
    kept = (tmp_path / "runs" / "bad").exists()
    assert kept == ("start a new run" in line)


def test_unknown_base_model_flag_is_one_short_line_with_a_suggestion(tmp_path: Path) -> None:
    """It was one line of 1,329 characters listing every known model, after a run folder was made."""
    line = one_clear_error(synthgen("run", "--base-model", "Qwen/Qwen2.5-0.5B-instruct", "--runs-dir",
                                    str(tmp_path / "runs")),
                           "did you mean 'Qwen/Qwen2.5-0.5B-Instruct'?")
    assert len(line) < 250
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task": {"kind": "flock", "task_id": 1, "api_base_url": "http://127.0.0.1:{port}/api/v1"}},
         "task.api_base_url"),
        ({"generator": {"backend": "openai", "base_url": "http://127.0.0.1:{port}/v1"}}, "generator.base_url"),
        ({"planner": {"kind": "llm", "base_url": "http://127.0.0.1:{port}/v1"}}, "planner.base_url"),
    ],
    ids=["flock-api", "generator", "planner"],
)
def test_unreachable_endpoints(changes: dict[str, Any], field: str, run_with: Any, tmp_path: Path) -> None:
    port = closed_port()
    changes = json.loads(json.dumps(changes).replace("{port}", str(port)))
    result = run_with(changes, env={"FLOCK_API_KEY": "node-key", "SYNTHGEN_LLM_API_KEY": "llm-key",
                                    "HF_TOKEN": "hf-x", "HF_USERNAME": "x"})
    one_clear_error(result, f"{field}: http://127.0.0.1:{port}", "is unreachable (Connection refused)")
    assert not (tmp_path / "runs" / "bad").exists()  # refused before a run folder was made


def test_api_down_at_the_start_is_one_line_saying_to_run_again(run_with: Any, tmp_path: Path) -> None:
    result = run_with(env={SIM_FAULTS_ENV: faults_env(FaultRule(endpoint="get_task", kind="drop", times=20))})
    one_clear_error(result, "GET /tasks/get: RemoteProtocolError", "(nothing was kept; run the command again")
    assert not (tmp_path / "runs" / "bad").exists()
