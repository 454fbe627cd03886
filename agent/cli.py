"""The ``synthgen`` command line."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tools.data import DataValidationError, load_jsonl
from tools.tasks import detect_plugin, get_plugin

app = typer.Typer(
    name="synthgen",
    help="SynthGen Agent: targeted synthetic data and LoRA training for FLock.io AI Arena tasks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

DEMO_TASK_DIR = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "text2sql"


@app.callback()
def _root() -> None:
    """SynthGen Agent: targeted synthetic data and LoRA training for FLock.io AI Arena tasks."""
    import logging

    # httpx logs whole request URLs at INFO, presigned download links included: never let them reach a log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # bitsandbytes announces an optional CPU kernel package on import; it changes nothing here.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # Our own progress bars (with ETA) cover model loading; the libraries' bars would interleave with them.
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    import warnings

    # Noise with nothing to act on: peft looks the base model up on the Hub when saving (offline runs name the
    # Hub id but load local weights), and transformers 5 renamed its gradient-checkpointing properties.
    for text in ("Unable to fetch remote file", "Could not find a config file in", ".*is deprecated and will be "
                 "removed in v6"):
        warnings.filterwarnings("ignore", message=text)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear error line and return the Exit to raise (whitespace folded, never wrapped, brackets in the
    message shown as written rather than read as markup)."""
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", soft_wrap=True)
    return typer.Exit(code)


@app.command()
def profile(
    file: Annotated[Path | None, typer.Argument(help="FLock JSONL file (default: demo training set)")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer for token counts: Hub id, folder or GGUF")] = None,
    task_type: Annotated[str | None, typer.Option(help="text2sql | function_calling | chat (default: detect)")] = None,
    lenient: Annotated[bool, typer.Option(help="Skip bad lines and report them, instead of stopping")] = False,
) -> None:
    """Validate a FLock JSONL file and print counts per category, token lengths and problems."""
    path = file or DEMO_TASK_DIR / "training_set.jsonl"
    try:
        report = load_jsonl(path, strict=not lenient)
    except DataValidationError as exc:
        raise fail(str(exc)) from None
    plugin = get_plugin(task_type).fit(report.records) if task_type else detect_plugin(report.records)

    console.print(f"[bold]{path}[/]: {len(report.records)} records, task type [cyan]{plugin.name}[/], "
                  f"sha256 {report.sha256[:12]}")
    table = Table(title="Examples per primary category")
    table.add_column("category")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    table.add_column("description")
    descriptions = plugin.categories()
    counts = plugin.primary_counts(report.records)
    for name, count in counts.items():
        table.add_row(name, str(count), f"{count / max(1, len(report.records)):.1%}", descriptions.get(name, ""))
    console.print(table)

    lengths = _token_lengths(report.records, tokenizer)
    if lengths:
        unit, values = lengths
        stats = Table(title=f"Length per record ({unit})")
        for column in ("min", "median", "mean", "p95", "max"):
            stats.add_column(column, justify="right")
        ordered = sorted(values)
        stats.add_row(str(ordered[0]), f"{statistics.median(ordered):.0f}", f"{statistics.fmean(ordered):.1f}",
                      str(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]), str(ordered[-1]))
        console.print(stats)

    if report.issues:
        problems = Table(title=f"{report.skipped} lines skipped")
        problems.add_column("line", justify="right")
        problems.add_column("field")
        problems.add_column("problem")
        for issue in report.issues:
            problems.add_row(str(issue.line), issue.field, issue.message)
        console.print(problems)
    else:
        console.print("[green]no validation problems[/]")


def _token_lengths(records: list, tokenizer_spec: str | None) -> tuple[str, list[int]] | None:
    """Token counts with the named tokenizer; whitespace words when none is named."""
    if tokenizer_spec is None:
        return "words", [sum(len(t.content.split()) for t in r.conversations) + len((r.system or "").split())
                         for r in records]
    from tools.models import load_tokenizer

    tok = load_tokenizer(tokenizer_spec)
    texts = [(r.system or "") + "\n" + "\n".join(t.content for t in r.conversations) for r in records]
    return f"tokens, {tokenizer_spec}", [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


# ----- running the agent ------------------------------------------------------------------------------------------
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REPLAY_MISMATCH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _runner(runs_dir: Path) -> Any:
    from agent.progress import RichReporter, set_reporter
    from agent.runner import Runner
    from memory.runs import RunStore

    set_reporter(RichReporter(console))
    return Runner(RunStore(runs_dir), on_step=_print_step)


def _print_step(node: str, update: dict[str, Any]) -> None:
    """One line per graph step, so a long run can be followed (and grepped) as it goes."""
    iteration = update.get("iteration")
    prefix = f"[cyan]{node:>9}[/]"
    if node == "bootstrap" and update.get("baseline"):
        task, base = update["task"], update["baseline"]
        console.print(f"{prefix} task {task['title']!r} ({task['task_type']}, {len(task['categories'])} categories, "
                      f"splits {task['split_sizes']}); base model dev BPC {base['bpc']:.4f}")
    elif node == "plan" and update.get("pending"):
        pending = update["pending"]
        decision = pending["decision"]
        targets = ", ".join(f"{k}={v}" for k, v in decision["targets"].items())
        console.print(f"{prefix} {decision['action']}{' ' + targets if targets else ''} "
                      f"[dim]({pending['source']}: {decision['rationale'][:110]})[/]")
    elif node == "generate" and update.get("dataset"):
        dataset = update["dataset"]
        console.print(f"{prefix} dataset {dataset['version'][:10]}: "
                      f"{sum(dataset['synthetic_per_category'].values())} synthetic rows in total")
    elif node == "train" and update.get("adapters"):
        adapter = update["adapters"][-1]
        loss = adapter.get("final_loss")
        console.print(f"{prefix} adapter {adapter['adapter_id']} trained on {adapter['train_tokens']} tokens "
                      f"in {adapter['seconds']:.0f}s" + (f", final loss {loss:.3f}" if loss is not None else ""))
    elif node == "evaluate" and update.get("evaluations"):
        latest = update["evaluations"][-1]
        console.print(f"{prefix} round {iteration}: dev BPC {latest['bpc']:.4f} "
                      f"(best adapter {update.get('best_adapter')})")
    elif node == "submit" and update.get("submissions"):
        sub = update["submissions"][-1]
        score = sub.get("validation_bpc")
        console.print(f"{prefix} submitted {sub['repo_id']}@{sub['revision'][:10]}"
                      + (f": validation BPC {score:.4f}" if score is not None else ""))
    elif node == "finish" and update.get("test_report"):
        report = update["test_report"]
        adapter = report.get("adapter")
        console.print(f"{prefix} test BPC base {report['base']['bpc']:.4f}"
                      + (f" -> best adapter {adapter['bpc']:.4f}" if adapter else " (no adapter beat the base)"))


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
    table.add_row("dev BPC", _num(base_dev), _num(best_dev))
    test = state.get("test_report") or {}
    if test:
        table.add_row("test BPC", _num(test["base"]["bpc"]), _num((test.get("adapter") or {}).get("bpc")))
        metric = test["base"].get("task_metric_name")
        if metric:
            table.add_row(f"test {metric}", _num(test["base"].get("task_metric")),
                          _num((test.get("adapter") or {}).get("task_metric")))
    for sub in state.get("submissions", []):
        table.add_row("FLock validation BPC (simulator)" if sub.get("validation_bpc") is not None
                      else "submitted", _num(sub.get("base_validation_bpc")), _num(sub.get("validation_bpc")))
    console.print(table)
    console.print(f"report: [bold]{report}[/]")
    console.print(f"replay: [bold]synthgen replay {run_id} --runs-dir {runs_dir}[/]   "
                  f"trace: [bold]synthgen trace {run_id} --runs-dir {runs_dir}[/]")


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "—"


RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Folder holding the run folders")]


@app.command()
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


@app.command()
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


@app.command()
def runs(runs_dir: RunsDir = Path("runs")) -> None:
    """Table of runs with their best scores."""
    from memory.runs import RunStore

    table = Table(title=f"Runs in {runs_dir}")
    for column in ("run", "task", "planner", "status", "rounds", "base dev BPC", "best dev BPC",
                   "validation BPC", "submissions"):
        table.add_column(column)
    for row in RunStore(runs_dir).list():
        table.add_row(row["run_id"], row["task"], row["planner"], row["status"], str(row["iterations"]),
                      _num(row["base_dev_bpc"]), _num(row["best_dev_bpc"]), _num(row["validation_bpc"]),
                      str(row["submissions"]))
    console.print(table)


@app.command()
def status(run_id: Annotated[str | None, typer.Argument(help="Run (default: the latest)")] = None,
           runs_dir: RunsDir = Path("runs")) -> None:
    """Where a run stands: status, iteration, budget used, best adapter, last event."""
    from agent.trace import read_trace
    from memory.checkpoint import load_state
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


@app.command()
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


@app.command()
def report(run_id: Annotated[str, typer.Argument(help="Run to report on")], runs_dir: RunsDir = Path("runs")) -> None:
    """Write report.html and PNG plots for a run."""
    from agent.report import write_report
    from agent.trace import read_trace
    from memory.checkpoint import load_state
    from memory.runs import RunNotFound, RunStore

    try:
        paths = RunStore(runs_dir).paths(run_id)
    except RunNotFound as exc:
        raise fail(str(exc)) from None
    state = load_state(paths)
    if not state.get("baseline"):
        raise fail(f"run {run_id} has no baseline evaluation yet; nothing to report")
    console.print(f"report: [bold]{write_report(state, read_trace(paths.trace), paths.report_dir)}[/]")


@app.command()
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
    for index, (iteration_no, action, targets, source) in enumerate(d.replay_key for d in outcome.decisions):
        console.print(f"decision #{index} (iteration {iteration_no}): {action} "
                      f"{', '.join(f'{k}={v}' for k, v in targets.items())} [{source}]")
    if not outcome.ok:
        for problem in outcome.problems:
            err_console.print(f"[bold red]replay mismatch:[/] {problem}")
        raise typer.Exit(EXIT_REPLAY_MISMATCH)
    console.print(f"[green]replay matches[/]: {len(outcome.decisions)} decisions, {outcome.calls_replayed} "
                  f"recorded calls")


@app.command("config-doc")
def config_doc() -> None:
    """Every configuration field with its default and meaning."""
    from agent.config import describe_fields

    table = Table(title="synthgen configuration (YAML/TOML keys; dotted names are nested sections)")
    for column in ("key", "default", "meaning"):
        table.add_column(column, overflow="fold")
    for name, default, description in describe_fields():
        table.add_row(name, default, description)
    console.print(table)


def _wire_stage_commands() -> None:
    """Commands that live with their stages: the FLock simulator, data generation, the OpenAI-compatible server."""
    from tools.flock.cli import app as flock_sim_app
    from tools.generate_cli import generate_command
    from tools.openai_server import serve_openai
    from tools.train import app as model_app

    app.add_typer(flock_sim_app, name="flock-sim")
    app.add_typer(model_app, name="model", help="Train a LoRA adapter or score a model with FLock's metric.")
    app.command("generate")(generate_command)
    app.command("serve-openai")(serve_openai)


_wire_stage_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
