"""``synthgen run`` and ``resume``: run the agent, show it as it goes (agent/cli/display.py), and when it stops
for a reason the user can fix, say so in one line with what to do next."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.cli.common import RunsDir, fail, runs_folder
from agent.cli.display import finish_run, print_step, watching
from tools.data import DataValidationError

#: Bundled tasks ``--task`` names (the other task kinds come from --task-dir and --task-id).
BUNDLED_TASKS = {"demo": "text-to-SQL", "demo-fc": "function calling"}
#: The configuration field each ``synthgen run`` flag sets, so an error about the field names the flag.
FLAG_FIELDS = {
    "--task": "task.kind", "--task-id": "task.task_id", "--task-dir": "task.task_dir",
    "--skip-bad-lines": "task.skip_bad_lines", "--planner": "planner.kind", "--planner-model": "planner.model",
    "--planner-url": "planner.base_url", "--generator": "generator.backend", "--generator-model": "generator.model",
    "--generator-url": "generator.base_url", "--base-model": "base_model", "--iterations": "budget.max_iterations",
    "--max-synthetic": "budget.max_synthetic_examples", "--max-minutes": "budget.max_wall_seconds",
    "--seed": "seed", "--runs-dir": "runs_dir",
}


def _set(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, key = dotted.split(".")
    for section in sections:
        overrides = overrides.setdefault(section, {})
    overrides[key] = value


def run(
    task_id: Annotated[int | None, typer.Option(metavar="N", help="Live FLock task id (needs FLOCK_API_KEY, "
                                                                  "HF_TOKEN, HF_USERNAME)")] = None,
    task_dir: Annotated[Path | None, typer.Option(metavar="DIR", help="A local task folder (task.json + JSONL "
                                                                      "files)")] = None,
    task: Annotated[str | None, typer.Option(metavar="demo|demo-fc", help="Bundled task: demo (text-to-SQL) or "
                                                                           "demo-fc (function calling)")] = None,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE", help="YAML or TOML configuration "
                                                "file (examples/ has some)")] = None,
    skip_bad_lines: Annotated[bool, typer.Option("--skip-bad-lines", help="Skip training lines that fail "
                                                 "validation and report them (default: the first one stops the "
                                                 "run)")] = False,
    planner: Annotated[str | None, typer.Option(metavar="llm|local|policy", help="Who decides each step")] = None,
    planner_model: Annotated[str | None, typer.Option(metavar="MODEL", help="Planner model id")] = None,
    planner_url: Annotated[str | None, typer.Option(metavar="URL", help="LLM planner endpoint "
                                                                        "(OpenAI-compatible)")] = None,
    generator: Annotated[str | None, typer.Option(metavar="local|openai|none", help="Generator backend")] = None,
    generator_model: Annotated[str | None, typer.Option(metavar="MODEL", help="Generator model id")] = None,
    generator_url: Annotated[str | None, typer.Option(metavar="URL", help="OpenAI-compatible generator "
                                                                          "endpoint")] = None,
    base_model: Annotated[str | None, typer.Option(metavar="HUB_ID", help="Model to train the adapter on "
                                                                           "(one FLock has a template for)")] = None,
    iterations: Annotated[int | None, typer.Option(metavar="N", help="Budget: improvement rounds")] = None,
    max_synthetic: Annotated[int | None, typer.Option(metavar="N", help="Budget: synthetic examples over the "
                                                                        "run")] = None,
    max_minutes: Annotated[float | None, typer.Option(metavar="MIN", help="Budget: wall-clock minutes")] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", help="Seed for splits, generation and training")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="One short round, BPC only (~5 min on 2 cores)")] = False,
    run_id: Annotated[str | None, typer.Option(metavar="NAME", help="Name the run (default: a timestamp)")] = None,
    runs_dir: RunsDir = None,
) -> None:
    """Run the agent on a FLock task: the bundled demo on an in-process FLock simulator by default."""
    from agent.config import ConfigError, build_config, check_environment
    from memory.runs import RunStore
    from tools.flock.simulator.tasks import TaskFolderError

    chosen = [name for name, value in (("--task-id", task_id), ("--task-dir", task_dir), ("--task", task))
              if value is not None]
    if len(chosen) > 1:
        raise fail(f"choose one of {', '.join(chosen)}")
    if task is not None and task not in BUNDLED_TASKS:
        raise fail(f"--task {task!r}: the bundled tasks are "
                   + " and ".join(f"{name} ({kind})" for name, kind in BUNDLED_TASKS.items())
                   + "; for a task folder use --task-dir DIR, for a live FLock task --task-id N")
    overrides: dict[str, Any] = {}
    if task_id is not None:
        overrides["task"] = {"kind": "flock", "task_id": task_id}
    elif task_dir is not None:
        overrides["task"] = {"kind": "dir", "task_dir": str(task_dir)}
    elif task is not None:
        overrides["task"] = {"kind": task}
    for flag, value in (("--skip-bad-lines", True if skip_bad_lines else None), ("--planner", planner),
                        ("--planner-model", planner_model), ("--planner-url", planner_url),
                        ("--generator", generator), ("--generator-model", generator_model),
                        ("--generator-url", generator_url), ("--base-model", base_model),
                        ("--iterations", iterations), ("--max-synthetic", max_synthetic),
                        ("--max-minutes", max_minutes * 60 if max_minutes is not None else None),
                        ("--seed", seed), ("--runs-dir", str(runs_dir) if runs_dir is not None else None)):
        if value is not None:
            _set(overrides, FLAG_FIELDS[flag], value)
    try:
        run_config = build_config(config, overrides, quick=quick,
                                  flags={field: flag for flag, field in FLAG_FIELDS.items()})
        check_environment(run_config)
        _check_endpoints(run_config)
    except DataValidationError as exc:  # the local task's own file, checked before a run folder is made
        raise fail(f"{exc} (fix it, or leave bad lines out with --skip-bad-lines: each one is then listed)") \
            from None
    except (ConfigError, TaskFolderError) as exc:
        raise fail(str(exc)) from None  # refused before a run folder was made
    store = RunStore(run_config.runs_dir)
    name = run_id or RunStore.new_run_id()
    try:
        outcome = _drive(store, lambda runner: runner.start(run_config, run_id=name))
    except FileExistsError as exc:
        raise fail(str(exc)) from None
    except _user_fixable_errors() as exc:
        raise _stopped(exc, run_config, store, name, started_here=True) from None
    finish_run(outcome, store.root, run_config.budget.model_dump())


def _drive(store: Any, action: Callable[[Any], Any]) -> Any:
    from agent.runner import Runner

    with watching():
        return action(Runner(store, on_step=print_step))


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


def _settings_errors() -> tuple[type[Exception], ...]:
    """Errors caused by a run's own settings (a model that is not there, a base model the task refuses): a
    resume keeps the settings, so it would meet them again."""
    from tools.flock.errors import BaseModelRejectedError
    from tools.models import ModelNotAvailableError

    return (ModelNotAvailableError, BaseModelRejectedError)


def _stopped(exc: Exception, config: Any, store: Any, run_id: str, *, started_here: bool) -> typer.Exit:
    """The one error line for a run that stopped, with what to do next: run again (a start that kept nothing,
    whose folder is removed), start a new run (the run's settings are at fault), or resume."""
    import openai

    from memory.checkpoint import load_state
    from memory.runs import RunPaths

    message = str(exc)
    if isinstance(exc, openai.APIError):
        message = f"planner endpoint {config.planner.base_url}: {type(exc).__name__}: {exc}"
    paths = RunPaths(store.root / run_id)
    if not paths.config.is_file():
        return fail(message)
    # LangGraph checkpoints the input at once; a run has done something worth keeping once bootstrap is done.
    if started_here and not load_state(paths).get("baseline"):
        store.remove(run_id)
        return fail(f"{message} (nothing was kept; run the command again once this is fixed)")
    if isinstance(exc, _settings_errors()):
        return fail(f"{message} (run {run_id} keeps what it did in {paths.root}, but a resume keeps its "
                    "settings: start a new run with the fix)")
    return fail(f"{message} (run {run_id} stopped; once fixed: synthgen resume {run_id} --runs-dir {store.root})")


def resume(run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="Run to continue")],
           runs_dir: RunsDir = None) -> None:
    """Continue a run that was interrupted or killed, from its last checkpoint (with the settings it started
    with)."""
    from agent.config import ConfigError, RunConfig, check_environment
    from memory.runs import RunNotFound, RunStore
    from tools.flock.simulator.tasks import TaskFolderError

    store = RunStore(runs_folder(runs_dir))
    try:
        config = RunConfig.model_validate(store.load_config(run_id))
        check_environment(config)
        _check_endpoints(config)
    except (RunNotFound, ConfigError, DataValidationError, TaskFolderError) as exc:
        raise fail(str(exc)) from None
    try:
        outcome = _drive(store, lambda runner: runner.resume(run_id))
    except _user_fixable_errors() as exc:
        raise _stopped(exc, config, store, run_id, started_here=False) from None
    finish_run(outcome, store.root, config.budget.model_dump())
