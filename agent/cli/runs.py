"""``synthgen runs``, ``status``, ``trace``, ``report`` and ``replay``: look at runs that exist."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agent.cli.common import EXIT_REPLAY_MISMATCH, RunsDir, console, err_console, fail, number, runs_folder
from agent.state import placeholder_rationale


def _run_row(store: Any, run_id: str) -> dict[str, Any]:
    """A run's index row; for a run folder the index does not know (copied from elsewhere), the same fields read
    from its files: status from its checkpoint and trace, scores from its checkpoint."""
    from agent.trace import read_trace
    from memory.checkpoint import load_state
    from memory.runs import RunNotFound, index_fields, task_label

    try:
        return dict(store.get(run_id))
    except RunNotFound:
        pass
    paths = store.paths(run_id)
    config = store.load_config(run_id)
    state = load_state(paths)
    events = read_trace(paths.trace)
    last = events[-1] if events else None
    status = "finished" if state.get("status") == "finished" else "incomplete"
    if last is not None and last.type == "run_end":
        status = str(last.data.get("status") or status)
    elif last is not None and last.type == "error":
        status = "interrupted" if "interrupted by the user" in str(last.data.get("error")) else "failed"
    created = events[0].ts if events else paths.config.stat().st_mtime
    return {"run_id": run_id, "created_at": created, "updated_at": events[-1].ts if events else created,
            "task": task_label(config.get("task") or {}), "planner": (config.get("planner") or {}).get("kind"),
            "status": status, "indexed": False, **index_fields(state)}


def _all_runs(store: Any) -> list[dict[str, Any]]:
    """Run folders, newest first: the index's rows (of folders still there) and folders it does not know."""
    indexed = [row for row in store.list() if (store.root / row["run_id"] / "config.json").is_file()]
    rows = indexed + [_run_row(store, run_id) for run_id in store.unindexed()]
    return sorted(rows, key=lambda row: row["created_at"] or 0, reverse=True)


def runs(runs_dir: RunsDir = None) -> None:
    """Table of runs with their best scores (run folders copied here from elsewhere too)."""
    from memory.runs import RunStore

    store = RunStore(runs_folder(runs_dir))
    table = Table(title=f"Runs in {store.root}")
    for column in ("run", "task", "planner", "status", "rounds", "base dev BPC", "best dev BPC",
                   "validation BPC", "submissions"):
        table.add_column(column)
    rows = _all_runs(store)
    if not rows:
        console.print(f"no runs under {escape(str(store.root))}")
        return
    for row in rows:
        table.add_row(row["run_id"] + ("" if row.get("indexed", True) else " (not indexed)"), row["task"],
                      row["planner"], row["status"], str(row["iterations"]), number(row["base_dev_bpc"]),
                      number(row["best_dev_bpc"]), number(row["validation_bpc"]), str(row["submissions"]))
    console.print(table)


def status(run_id: Annotated[str | None, typer.Argument(metavar="RUN_ID", help="Run (default: the latest)")]
           = None,
           runs_dir: RunsDir = None) -> None:
    """Where a run stands: status, iteration, budget used, best adapter, last event."""
    from agent.trace import read_trace
    from memory.checkpoint import load_state
    from memory.runs import RunNotFound, RunStore

    store = RunStore(runs_folder(runs_dir))
    try:
        run_id = run_id or next((row["run_id"] for row in _all_runs(store)), None)
        if not run_id:
            raise fail(f"no runs under {store.root}")
        paths = store.paths(run_id)
        row = _run_row(store, run_id)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    state = load_state(paths)
    events = read_trace(paths.trace)
    console.print(f"[bold]{run_id}[/]: {row['status']}, iteration {state.get('iteration', 0)}, "
                  f"best adapter {state.get('best_adapter') or '—'}")
    if state.get("usage"):
        console.print("budget used: " + ", ".join(f"{k} {v}" for k, v in state["usage"].items()))
    if events:
        last = events[-1]
        console.print(f"last event: #{last.seq} {last.type} {last.node or ''} "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last.ts))}")
    if row["status"] not in ("finished",):
        console.print(f"resume with: synthgen resume {run_id} --runs-dir {escape(str(store.root))}", soft_wrap=True)


def trace(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run to show")],
    node: Annotated[str | None, typer.Option(metavar="NODE", help="Only events of this node")] = None,
    iteration: Annotated[int | None, typer.Option(help="Only events of this iteration")] = None,
    all_events: Annotated[bool, typer.Option("--all", help="Every event, not only decisions and tool calls")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line, for machines")] = False,
    runs_dir: RunsDir = None,
) -> None:
    """Timeline of a run's decisions and tool calls."""
    from agent.trace import read_trace
    from memory.runs import RunNotFound, RunStore

    try:
        paths = RunStore(runs_folder(runs_dir)).paths(run_id)
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
        table.add_row(str(event.seq), str(event.iteration), event.node or "", event.type,
                      escape(_event_details(event)))
    console.print(table)


def _event_details(event: Any) -> str:
    data = event.data
    if event.type == "decision":
        targets = ", ".join(f"{k}={v}" for k, v in (data.get("targets") or {}).items())
        guard = "" if data.get("guardrail") == "ok" else f" [guardrail: {data.get('guardrail')}]"
        rationale = "(no rationale)" if placeholder_rationale(str(data.get("rationale") or "")) \
            else data.get("rationale")
        return f"{data['action']} {targets} ({data['source']}){guard}: {rationale}"
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


def report(run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run to report on")],
           runs_dir: RunsDir = None) -> None:
    """Write report.html and PNG plots for a run."""
    from agent.report import write_report
    from agent.trace import read_trace
    from memory.checkpoint import load_state
    from memory.runs import RunNotFound, RunStore

    try:
        paths = RunStore(runs_folder(runs_dir)).paths(run_id)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    state = load_state(paths)
    if not state.get("baseline"):
        raise fail(f"run {run_id} has no baseline evaluation yet; nothing to report")
    console.print(f"report: [bold]{escape(str(write_report(state, read_trace(paths.trace), paths.report_dir)))}[/]")


def replay(run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run to replay")],
           run_dir: Annotated[Path | None, typer.Option(metavar="DIR", help="Replay a run folder directly (e.g. "
                                                                            "a committed recording)")] = None,
           runs_dir: RunsDir = None) -> None:
    """Re-execute a recorded run and check it takes the same decisions in the same order."""
    from agent.runner import Runner
    from memory.runs import RunNotFound, RunStore

    try:
        outcome = Runner(RunStore(runs_folder(runs_dir))).replay(run_id, run_dir=run_dir)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    for index, (iteration_no, action, targets, source) in enumerate(d.replay_key for d in outcome.decisions):
        console.print(f"decision #{index} (iteration {iteration_no}): {action} "
                      f"{', '.join(f'{k}={v}' for k, v in targets.items())} [{source}]", markup=False,
                      highlight=False)
    if not outcome.ok:
        for problem in outcome.problems:
            err_console.print(f"[bold red]replay mismatch:[/] {escape(problem)}", soft_wrap=True)
        raise typer.Exit(EXIT_REPLAY_MISMATCH)
    console.print(f"[green]replay matches[/]: {len(outcome.decisions)} decisions, {outcome.calls_replayed} "
                  f"recorded calls")
