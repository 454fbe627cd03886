"""``synthgen runs``, ``status``, ``trace``, ``report`` and ``replay``: look at runs that exist."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agent.cli.common import EXIT_REPLAY_MISMATCH, RunsDir, console, err_console, fail, number


def runs(runs_dir: RunsDir = Path("runs")) -> None:
    """Table of runs with their best scores."""
    from memory.runs import RunStore

    table = Table(title=f"Runs in {runs_dir}")
    for column in ("run", "task", "planner", "status", "rounds", "base dev BPC", "best dev BPC",
                   "validation BPC", "submissions"):
        table.add_column(column)
    for row in RunStore(runs_dir).list():
        table.add_row(row["run_id"], row["task"], row["planner"], row["status"], str(row["iterations"]),
                      number(row["base_dev_bpc"]), number(row["best_dev_bpc"]), number(row["validation_bpc"]),
                      str(row["submissions"]))
    console.print(table)


def status(run_id: Annotated[str | None, typer.Argument(help="Run (default: the latest)")] = None,
           runs_dir: RunsDir = Path("runs")) -> None:
    """Where a run stands: status, iteration, budget used, best adapter, last event."""
    from agent.runner import load_state
    from agent.trace import read_trace
    from memory.runs import RunNotFound, RunStore

    store = RunStore(runs_dir)
    try:
        run_id = run_id or (store.list() or [{}])[0].get("run_id")
        if not run_id:
            raise fail(f"no runs under {runs_dir}")
        paths = store.paths(run_id)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    state = load_state(paths)
    events = read_trace(paths.trace)
    row = store.get(run_id)
    console.print(f"[bold]{run_id}[/]: {row['status']}, iteration {state.get('iteration', 0)}, "
                  f"best adapter {state.get('best_adapter') or '—'}")
    if state.get("usage"):
        console.print("budget used: " + ", ".join(f"{k} {v}" for k, v in state["usage"].items()))
    if events:
        last = events[-1]
        console.print(f"last event: #{last.seq} {last.type} {last.node or ''} "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last.ts))}")
    if row["status"] in ("running", "interrupted", "failed"):
        console.print(f"resume with: synthgen resume {run_id} --runs-dir {runs_dir}")


def trace(
    run_id: Annotated[str, typer.Argument(help="Run to show")],
    node: Annotated[str | None, typer.Option(help="Only events of this node")] = None,
    iteration: Annotated[int | None, typer.Option(help="Only events of this iteration")] = None,
    all_events: Annotated[bool, typer.Option("--all", help="Every event, not only decisions and tool calls")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line, for machines")] = False,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Timeline of a run's decisions and tool calls."""
    from agent.trace import read_trace
    from memory.runs import RunNotFound, RunStore

    try:
        paths = RunStore(runs_dir).paths(run_id)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    shown = {"run_start", "run_resume", "decision", "tool_call", "tool_result", "metrics", "error", "run_end"}
    events = [e for e in read_trace(paths.trace)
              if (all_events or e.type in shown) and (node is None or e.node == node)
              and (iteration is None or e.iteration == iteration)]
    if as_json:
        for event in events:
            typer.echo(event.model_dump_json())
        return
    table = Table(title=f"Trace of {run_id}")
    for column in ("#", "it", "node", "event", "details"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(str(event.seq), str(event.iteration), event.node or "", event.type, _event_details(event))
    console.print(table)


def _event_details(event: Any) -> str:
    data = event.data
    if event.type == "decision":
        targets = ", ".join(f"{k}={v}" for k, v in (data.get("targets") or {}).items())
        guard = "" if data.get("guardrail") == "ok" else f" [guardrail: {data.get('guardrail')}]"
        return f"{data['action']} {targets} ({data['source']}){guard}: {data.get('rationale', '')}"
    if event.type == "tool_call":
        return f"{data.get('tool')}({', '.join(f'{k}={v}' for k, v in data.get('inputs', {}).items())})"
    if event.type == "tool_result":
        result = data.get("result", {})
        keys = ("bpc", "adapter_id", "version", "stop_reason", "train_tokens", "revision", "validation_bpc")
        brief = {k: result[k] for k in keys if k in result}
        return f"{data.get('tool')} -> {brief} in {data.get('seconds')}s"
    if event.type == "metrics":
        return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, dict))
    if event.type == "run_start":
        return f"versions {data.get('versions')}"
    return str(data)[:300]


def report(run_id: Annotated[str, typer.Argument(help="Run to report on")], runs_dir: RunsDir = Path("runs")) -> None:
    """Write report.html and PNG plots for a run."""
    from agent.report import write_report
    from agent.runner import load_state
    from agent.trace import read_trace
    from memory.runs import RunNotFound, RunStore

    try:
        paths = RunStore(runs_dir).paths(run_id)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    state = load_state(paths)
    if not state.get("baseline"):
        raise fail(f"run {run_id} has no baseline evaluation yet; nothing to report")
    console.print(f"report: [bold]{write_report(state, read_trace(paths.trace), paths.report_dir)}[/]")


def replay(run_id: Annotated[str, typer.Argument(help="Run to replay")],
           run_dir: Annotated[Path | None, typer.Option(help="Replay a run folder directly (e.g. a committed "
                                                             "recording)")] = None,
           runs_dir: RunsDir = Path("runs")) -> None:
    """Re-execute a recorded run and check it takes the same decisions in the same order."""
    from agent.runner import Runner
    from memory.runs import RunNotFound, RunStore

    try:
        outcome = Runner(RunStore(runs_dir)).replay(run_id, run_dir=run_dir)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    for index, (iteration_no, action, targets, source) in enumerate(outcome.decisions):
        console.print(f"decision #{index} (iteration {iteration_no}): {action} "
                      f"{', '.join(f'{k}={v}' for k, v in targets.items())} [{source}]")
    if not outcome.ok:
        for problem in outcome.problems:
            err_console.print(f"[bold red]replay mismatch:[/] {problem}")
        raise typer.Exit(EXIT_REPLAY_MISMATCH)
    console.print(f"[green]replay matches[/]: {len(outcome.decisions)} decisions, {outcome.calls_replayed} "
                  f"recorded calls")
