"""``synthgen run``, ``resume`` and ``config-doc``: run the agent, follow it step by step, show the result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agent.cli.common import EXIT_INTERRUPTED, RunsDir, console, err_console, fail, number
from tools.data import DataValidationError


def _runner(runs_dir: Path) -> Any:
    from agent.progress import RichReporter, set_reporter
    from agent.runner import Runner
    from memory.runs import RunStore

    set_reporter(RichReporter(console))
    return Runner(RunStore(runs_dir), on_step=_print_step)


def _bootstrap_line(update: dict[str, Any]) -> str:
    task, base = update["task"], update["baseline"]
    return (f"task {task['title']!r} ({task['task_type']}, {len(task['categories'])} categories, "
            f"splits {task['split_sizes']}); base model dev BPC {base['bpc']:.4f}")


def _plan_line(update: dict[str, Any]) -> str:
    pending = update["pending"]
    decision = pending["decision"]
    targets = ", ".join(f"{k}={v}" for k, v in decision["targets"].items())
    return (f"{decision['action']}{' ' + targets if targets else ''} "
            f"[dim]({pending['source']}: {decision['rationale'][:110]})[/]")


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


def _print_step(node: str, update: dict[str, Any]) -> None:
    """One line per graph step, so a long run can be followed (and grepped) as it goes."""
    entry = _STEP_LINES.get(node)
    if entry is not None and update.get(entry[0]):
        console.print(f"[cyan]{node:>9}[/] {entry[1](update)}")


def _finish_run(outcome: Any, runs_dir: Path) -> None:
    from agent.report import write_report
    from agent.trace import read_trace

    run_id = outcome.run_id
    if outcome.interrupted:
        err_console.print(f"[yellow]interrupted.[/] The run stopped at a resumable point: "
                          f"[bold]synthgen resume {run_id} --runs-dir {runs_dir}[/]")
        raise typer.Exit(EXIT_INTERRUPTED)
    state = outcome.state
    report = write_report(state, read_trace(outcome.paths.trace), outcome.paths.report_dir)
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
    console.print(table)
    console.print(f"report: [bold]{report}[/]")
    console.print(f"replay: [bold]synthgen replay {run_id} --runs-dir {runs_dir}[/]   "
                  f"trace: [bold]synthgen trace {run_id} --runs-dir {runs_dir}[/]")


def run(
    task_id: Annotated[int | None, typer.Option(help="Live FLock task id (needs FLOCK_API_KEY, HF_TOKEN, "
                                                    "HF_USERNAME)")] = None,
    task_dir: Annotated[Path | None, typer.Option(help="A local task folder (task.json + JSONL files)")] = None,
    task: Annotated[str | None, typer.Option(help="Bundled task: demo (text-to-SQL) or demo-fc (function "
                                                 "calling)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML or TOML configuration file")] = None,
    planner: Annotated[str | None, typer.Option(help="llm | local | policy")] = None,
    planner_model: Annotated[str | None, typer.Option(help="Planner model id")] = None,
    planner_url: Annotated[str | None, typer.Option(help="LLM planner endpoint (OpenAI-compatible)")] = None,
    generator: Annotated[str | None, typer.Option(help="Generator backend: local | openai | none")] = None,
    generator_model: Annotated[str | None, typer.Option(help="Generator model id")] = None,
    generator_url: Annotated[str | None, typer.Option(help="OpenAI-compatible generator endpoint")] = None,
    base_model: Annotated[str | None, typer.Option(help="Model to train the adapter on")] = None,
    iterations: Annotated[int | None, typer.Option(help="Budget: improvement rounds")] = None,
    max_synthetic: Annotated[int | None, typer.Option(help="Budget: synthetic examples over the run")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Budget: wall-clock minutes")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, generation and training")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="One short round, BPC only (~5 min on 2 cores)")] = False,
    run_id: Annotated[str | None, typer.Option(help="Name the run (default: a timestamp)")] = None,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Run the agent on a FLock task: the bundled demo on an in-process FLock simulator by default."""
    from agent.config import ConfigError, build_config, check_environment
    from memory.runs import RunStore

    overrides: dict[str, Any] = {"runs_dir": str(runs_dir)}
    chosen = [name for name, value in (("--task-id", task_id), ("--task-dir", task_dir), ("--task", task))
              if value is not None]
    if len(chosen) > 1:
        raise fail(f"choose one of {', '.join(chosen)}")
    if task_id is not None:
        overrides["task"] = {"kind": "flock", "task_id": task_id}
    elif task_dir is not None:
        overrides["task"] = {"kind": "dir", "task_dir": str(task_dir)}
    elif task is not None:
        overrides["task"] = {"kind": task}
    for section, key, value in (("planner", "kind", planner), ("planner", "model", planner_model),
                                ("planner", "base_url", planner_url), ("generator", "backend", generator),
                                ("generator", "model", generator_model), ("generator", "base_url", generator_url),
                                ("budget", "max_iterations", iterations),
                                ("budget", "max_synthetic_examples", max_synthetic),
                                ("budget", "max_wall_seconds", max_minutes * 60 if max_minutes else None)):
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    if base_model is not None:
        overrides["base_model"] = base_model
    if seed is not None:
        overrides["seed"] = seed
    try:
        run_config = build_config(config, overrides, quick=quick)
        check_environment(run_config)
        _check_endpoints(run_config)
        name = run_id or RunStore.new_run_id()
        outcome = _runner(run_config.runs_dir).start(run_config, run_id=name)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except FileExistsError as exc:
        raise fail(str(exc)) from None
    except _user_fixable_errors() as exc:
        raise _stopped(exc, run_config, name) from None
    _finish_run(outcome, run_config.runs_dir)


def _check_endpoints(config: Any) -> None:
    """Refuse at once an endpoint that does not accept connections, instead of failing minutes into the run."""
    import socket
    from urllib.parse import urlsplit

    from agent.config import ConfigError

    endpoints = [("task.api_base_url", config.task.api_base_url if config.task.kind == "flock" else None),
                 ("generator.base_url", config.generator.base_url if config.generator.backend == "openai" else None),
                 ("planner.base_url", config.planner.base_url if config.planner.kind == "llm" else None)]
    for field, url in endpoints:
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{field}: {url!r} is not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=10).close()
        except OSError as exc:
            raise ConfigError(f"{field}: {url} is unreachable ({exc.strerror or exc})") from None


def _user_fixable_errors() -> tuple[type[Exception], ...]:
    """Errors that stop a run for a reason the user fixes (bad task or data, a refused or missing model, an
    endpoint down): shown as one line, not a traceback."""
    import openai

    from agent.pipeline import PipelineError
    from tools.backends import BackendError
    from tools.flock.errors import FlockError
    from tools.flock.simulator.tasks import TaskFolderError
    from tools.models import ModelNotAvailableError
    from tools.publish import PublishError

    return (DataValidationError, PipelineError, FlockError, BackendError, TaskFolderError, ModelNotAvailableError,
            PublishError, openai.APIError)


def _stopped(exc: Exception, config: Any, run_id: str) -> typer.Exit:
    import openai

    message = str(exc)
    if isinstance(exc, openai.APIError):
        message = f"planner endpoint {config.planner.base_url}: {type(exc).__name__}: {exc}"
    if (config.runs_dir / run_id / "config.json").is_file():
        message += f" (run {run_id} stopped; once fixed: synthgen resume {run_id} --runs-dir {config.runs_dir})"
    return fail(message)


def resume(run_id: Annotated[str, typer.Argument(help="Run to continue")], runs_dir: RunsDir = Path("runs")) -> None:
    """Continue a run that was interrupted or killed, from its last checkpoint."""
    from agent.config import ConfigError, RunConfig, check_environment
    from memory.runs import RunNotFound, RunStore

    try:
        config = RunConfig.model_validate(RunStore(runs_dir).load_config(run_id))
        check_environment(config)
        _check_endpoints(config)
        outcome = _runner(runs_dir).resume(run_id)
    except (RunNotFound, ConfigError) as exc:
        raise fail(str(exc)) from None
    except _user_fixable_errors() as exc:
        raise _stopped(exc, config.model_copy(update={"runs_dir": runs_dir}), run_id) from None
    _finish_run(outcome, runs_dir)


def config_doc() -> None:
    """Every configuration field with its default and meaning."""
    from agent.config import describe_fields

    table = Table(title="synthgen configuration (YAML/TOML keys; dotted names are nested sections)")
    for column in ("key", "default", "meaning"):
        table.add_column(column, overflow="fold")
    for name, default, description in describe_fields():
        table.add_row(name, default, description)
    console.print(table)
