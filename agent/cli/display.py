"""What a person watching ``synthgen run`` or ``resume`` sees: the progress reporter for the output (a live
display in a terminal, timestamped lines elsewhere), one result line per graph step, and the final summary (scores,
time per stage, budget used, where the report is, how to replay)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from agent import progress
from agent.cli.common import EXIT_INTERRUPTED, console, err_console, number, progress_lines_wanted


@contextlib.contextmanager
def watching() -> Iterator[None]:
    """Show the run's progress for the block: live in a terminal, as plain lines in a pipe or a log (unless the
    log level is above info), then put the silent reporter back."""
    reporter: progress.Reporter
    if console.is_terminal:
        live = progress.LiveReporter(console)
        with progress.reporting(live), live:
            yield
        return
    reporter = progress.PlainReporter(console) if progress_lines_wanted() else progress.SilentReporter()
    with progress.reporting(reporter):
        yield


def _bootstrap_line(update: dict[str, Any]) -> str:
    task, base = update["task"], update["baseline"]
    return (f"task {escape(repr(task['title']))} ({task['task_type']}, {len(task['categories'])} categories, "
            f"splits {task['split_sizes']}); base model dev BPC {base['bpc']:.4f}")


def _plan_line(update: dict[str, Any]) -> str:
    pending = update["pending"]
    decision = pending["decision"]
    targets = ", ".join(f"{k}={v}" for k, v in decision["targets"].items())
    rationale = decision["rationale"].strip()
    from agent.state import placeholder_rationale

    shown = "no rationale given" if placeholder_rationale(rationale) else escape(rationale[:110])
    return f"{decision['action']}{' ' + targets if targets else ''} [dim]({pending['source']}: {shown})[/]"


def _generate_line(update: dict[str, Any]) -> str:
    dataset = update["dataset"]
    return (f"dataset {dataset['version'][:10]}: "
            f"{sum(dataset['synthetic_per_category'].values())} synthetic rows in total")


def _train_line(update: dict[str, Any]) -> str:
    adapter = update["adapters"][-1]
    loss = adapter.get("final_loss")
    return (f"adapter {adapter['adapter_id']} trained on {adapter['train_tokens']} tokens "
            f"in {adapter['seconds']:.0f}s" + (f", final loss {loss:.3f}" if loss is not None else ""))


def _evaluate_line(update: dict[str, Any]) -> str:
    latest = update["evaluations"][-1]
    return f"round {update.get('iteration')}: dev BPC {latest['bpc']:.4f} (best adapter {update.get('best_adapter')})"


def _submit_line(update: dict[str, Any]) -> str:
    sub = update["submissions"][-1]
    score = sub.get("validation_bpc")
    return (f"submitted {sub['repo_id']}@{sub['revision'][:10]}"
            + (f": validation BPC {score:.4f}" if score is not None else ""))


def _finish_line(update: dict[str, Any]) -> str:
    report = update["test_report"]
    if report is None:
        return str(update.get("error") or "no test comparison")
    adapter = report.get("adapter")
    return (f"test BPC base {report['base']['bpc']:.4f}"
            + (f" -> best adapter {adapter['bpc']:.4f}" if adapter else " (no adapter beat the base)"))


#: Per node: the update field that makes a step worth a line, and the line.
_STEP_LINES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "bootstrap": ("baseline", _bootstrap_line),
    "plan": ("pending", _plan_line),
    "generate": ("dataset", _generate_line),
    "train": ("adapters", _train_line),
    "evaluate": ("evaluations", _evaluate_line),
    "submit": ("submissions", _submit_line),
    "finish": ("test_report", _finish_line),
}


def print_step(node: str, update: dict[str, Any]) -> None:
    """One line per graph step, so a long run can be followed (and grepped) as it goes; timestamped in a log."""
    entry = _STEP_LINES.get(node)
    if entry is not None and update.get(entry[0]):
        stamp = "" if console.is_terminal else time.strftime("%H:%M:%S ")
        console.print(f"{stamp}[cyan]{node:>9}[/] {entry[1](update)}")


def _scores_table(run_id: str, state: dict[str, Any]) -> Table:
    table = Table(title=f"Run {run_id}: {state.get('status')}")
    table.add_column("measure")
    table.add_column("base model", justify="right")
    table.add_column("best adapter", justify="right")
    base_dev = (state.get("baseline") or {}).get("bpc")
    best = state.get("best_adapter")
    best_dev = next((e["bpc"] for e in state.get("evaluations", []) if e["adapter_id"] == best), None)
    table.add_row("dev BPC", number(base_dev), number(best_dev))
    test = state.get("test_report") or {}
    if test:
        table.add_row("test BPC", number(test["base"]["bpc"]), number((test.get("adapter") or {}).get("bpc")))
        metric = test["base"].get("task_metric_name")
        if metric:
            table.add_row(f"test {metric}", number(test["base"].get("task_metric")),
                          number((test.get("adapter") or {}).get("task_metric")))
    for sub in state.get("submissions", []):
        table.add_row("FLock validation BPC (simulator)" if sub.get("validation_bpc") is not None
                      else "submitted", number(sub.get("base_validation_bpc")), number(sub.get("validation_bpc")))
    return table


def _stage_table(events: list[Any]) -> Table:
    times = progress.stage_seconds(events)
    total = sum(seconds for _, seconds in times.values()) or 1.0
    table = Table(title="Time per stage")
    for column, justify in (("stage", "left"), ("runs", "right"), ("time", "right"), ("share", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, (count, seconds) in times.items():
        table.add_row(name, str(count), progress.clock(seconds), f"{seconds / total:.0%}")
    table.add_row("total", "", progress.clock(sum(seconds for _, seconds in times.values())), "")
    return table


def _budget_line(state: dict[str, Any], budget: dict[str, Any]) -> str:
    status = progress.StageStatus("", state.get("iteration", 0), dict(state.get("usage") or {}), budget,
                                  started=time.monotonic())
    return f"budget used: {status.rounds()}, {status.budget()}"


def finish_run(outcome: Any, runs_dir: Path, budget: dict[str, Any]) -> None:
    """The summary after a run or resume (or, when interrupted, the command that continues it)."""
    from agent.report import write_report
    from agent.trace import read_trace

    run_id = outcome.run_id
    if outcome.interrupted:
        err_console.print(f"[yellow]interrupted.[/] The run stopped at a resumable point: "
                          f"[bold]synthgen resume {run_id} --runs-dir {escape(str(runs_dir))}[/]", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    state = outcome.state
    events = read_trace(outcome.paths.trace)
    report = write_report(state, events, outcome.paths.report_dir)
    console.print(_scores_table(run_id, state))
    console.print(_stage_table(events))
    console.print(_budget_line(state, budget), markup=False, highlight=False)
    # Paths and commands are printed unwrapped even in a terminal, so a copied line is whole.
    console.print(f"report: [bold]{escape(str(report))}[/]", soft_wrap=True)
    console.print(f"replay: [bold]synthgen replay {run_id} --runs-dir {escape(str(runs_dir))}[/]", soft_wrap=True)
    console.print(f"trace:  [bold]synthgen trace {run_id} --runs-dir {escape(str(runs_dir))}[/]", soft_wrap=True)
