"""LangGraph Studio and LangSmith: the graph's input, output and context JSON schemas as Studio builds them, a run
started through a real ``langgraph dev`` server on loopback, and the run id, task and iteration reaching the
callbacks as run metadata (no network: LangChain's run collector stands where LangSmith's tracer would)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from langchain_core.tracers.schemas import Run

from agent.graph import NODES
from agent.runner import RunOutcome
from agent.studio import LiveRun, StudioSettings, studio_graph
from agent.trace import read_trace
from memory.runs import RunStore
from tests.agent_helpers import mini_task_dir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_task_dir(tmp_path_factory.mktemp("task"))


def test_studio_builds_the_input_output_and_context_schemas() -> None:
    graph = studio_graph()
    schemas = {"input": graph.get_input_jsonschema(), "output": graph.get_output_jsonschema(),
               "context": graph.get_context_jsonschema()}
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
        json.dumps(schema)
    assert set(schemas["input"]["properties"]) == {"run_id"}
    assert {"run_id", "status", "decisions", "evaluations", "test_report"} <= set(schemas["output"]["properties"])
    context = schemas["context"]
    assert set(context["properties"]) == {"task", "config_path", "planner", "quick", "runs_dir"}
    # Plain settings a form can fill in; a wrong planner or an unknown key is refused by the schema itself.
    jsonschema.validate({"task": "demo", "config_path": "my-run.yaml", "planner": "policy"}, context)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"planner": "oracle"}, context)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"toolbox": "live"}, context)


def test_studio_settings_make_the_run_configuration(tmp_path: Path, task_dir: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump({"budget": {"max_iterations": 2}, "planner": {"kind": "local"}}))
    config = StudioSettings(task=str(task_dir), config_path=str(config_file), planner="policy",
                            runs_dir=str(tmp_path / "runs")).run_config()
    assert config.task.kind == "dir" and config.task.task_dir == task_dir
    assert config.planner.kind == "policy"  # the setting wins over the file
    assert config.budget.max_iterations == 2
    assert config.runs_dir == tmp_path / "runs"
    assert StudioSettings(task="demo-fc").run_config().task.kind == "demo-fc"


def test_a_graph_built_for_reading_refuses_to_run() -> None:
    with pytest.raises(RuntimeError, match="built to be read"):
        studio_graph().invoke({"run_id": "nope"}, context={"task": "demo"})


def test_a_run_id_that_would_leave_the_runs_folder_is_refused(tmp_path: Path) -> None:
    graph = studio_graph(LiveRun())
    with pytest.raises(ValueError, match="run_id '../outside'"):
        graph.invoke({"run_id": "../outside"}, context={"runs_dir": str(tmp_path / "runs")})
    assert not (tmp_path / "outside").exists()


def test_langsmith_runs_carry_the_run_id_task_and_iteration(traced_fc_run: tuple[RunOutcome, list[Run]]) -> None:
    outcome, traced = traced_fc_run
    assert outcome.state["status"] == "finished"
    task_dir = json.loads(outcome.paths.config.read_text())["task"]["task_dir"]
    expected = {"synthgen_run_id": "traced-fc", "synthgen_task": f"dir:{task_dir}", "synthgen_planner": "llm"}

    (graph_run,) = [r for r in traced if r.parent_run_id is None]
    assert graph_run.metadata.items() >= expected.items()
    assert "synthgen" in (graph_run.tags or [])
    node_runs = sorted((r for r in _descendants(graph_run) if r.name in NODES), key=lambda r: r.start_time)
    node_starts = [e for e in read_trace(outcome.paths.trace) if e.type == "node_start"]
    # One run per node, in order, each with the iteration the node started in.
    assert [(r.name, r.metadata["synthgen_iteration"]) for r in node_runs] == \
        [(e.node, e.iteration) for e in node_starts]
    assert {r.metadata["synthgen_iteration"] for r in node_runs} == {0, 1}
    assert all(r.metadata.items() >= expected.items() for r in node_runs)
    # The planner's model calls, made inside plan nodes, carry the same metadata.
    model_runs = sorted((r for r in _descendants(graph_run) if r.run_type in ("llm", "chat_model")),
                        key=lambda r: r.start_time)
    assert [r.metadata["synthgen_iteration"] for r in model_runs] == [0, 0, 1, 1]
    assert all(r.metadata.items() >= expected.items() for r in model_runs)


def _descendants(run: Run) -> Iterator[Run]:
    for child in run.child_runs:
        yield child
        yield from _descendants(child)


# ----- a run started through `langgraph dev` ---------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def langgraph_dev(tmp_path: Path) -> Iterator[str]:
    """``langgraph dev`` on a free loopback port with the project's langgraph.json, started from a scratch folder
    (the server keeps its state in the folder it starts from and reads the file's paths from there, so they are
    made absolute in a copy)."""
    spec = json.loads((ROOT / "langgraph.json").read_text())
    spec["graphs"] = {name: str(ROOT / path) for name, path in spec["graphs"].items()}
    spec["dependencies"] = [str(ROOT / folder) for folder in spec["dependencies"]]
    (tmp_path / "langgraph.json").write_text(json.dumps(spec))
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    log = (tmp_path / "langgraph-dev.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "langgraph_cli", "dev", "--config", str(tmp_path / "langgraph.json"), "--host",
         "127.0.0.1", "--port", str(port), "--no-browser", "--no-reload"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"langgraph dev exited with {server.returncode}: "
                            f"{(tmp_path / 'langgraph-dev.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("langgraph dev did not start in 120 s")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_a_run_starts_from_langgraph_dev(tmp_path: Path, task_dir: Path, tiny_model_dir: Path,
                                         langgraph_dev: str) -> None:
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump({
        "base_model_weights": str(tiny_model_dir), "generator": {"backend": "none", "batch_size": 8},
        # No improvement round: the run goes bootstrap, plan, finish (the in-process test above runs the loop).
        "budget": {"max_iterations": 0, "max_wall_seconds": 3600},
        "eval": {"task_metric": False, "dev_fraction": 0.15, "test_fraction": 0.15}}))
    runs_dir = tmp_path / "runs"
    context = {"task": str(task_dir), "config_path": str(config_file), "planner": "policy", "runs_dir": str(runs_dir)}
    schemas, state, run_status = asyncio.run(_run_through_the_server(langgraph_dev, context))

    for name in ("input_schema", "output_schema", "state_schema", "context_schema"):
        assert schemas[name] and schemas[name].get("properties"), name
    assert set(schemas["context_schema"]["properties"]) == {"task", "config_path", "planner", "quick", "runs_dir"}
    assert run_status == "success"
    values = state["values"]
    assert values["status"] == "finished"
    assert [d["decision"]["action"] for d in values["decisions"]] == ["stop"]
    assert values["baseline"]["bpc"] > 0 and values["test_report"]["base"]["bpc"] > 0
    run_id = values["run_id"]
    assert run_id.startswith("studio-")
    events = read_trace(runs_dir / run_id / "trace.jsonl")
    assert events[0].type == "run_start" and events[-1].type == "run_end"
    assert any(e.type == "node_end" and e.node == "bootstrap" for e in events)
    assert (runs_dir / run_id / "report" / "report.html").is_file()
    assert RunStore(runs_dir).get(run_id)["status"] == "finished"


async def _run_through_the_server(url: str, context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    from langgraph_sdk import get_client

    client = get_client(url=url)
    (assistant,) = await client.assistants.search(graph_id="synthgen")
    schemas = await client.assistants.get_schemas(assistant["assistant_id"])
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], assistant["assistant_id"], input={}, context=context)
    await client.runs.join(thread["thread_id"], run["run_id"])
    finished = await client.runs.get(thread["thread_id"], run["run_id"])
    state = await client.threads.get_state(thread["thread_id"])
    return dict(schemas), dict(state), str(finished["status"])
