"""What every ``synthgen`` command shares: the consoles, the one-line error, exit codes, the runs-folder option,
logging, and the command group class that keeps help and errors readable in a pipe."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from memory.runs import RUNS_DIR_ENV, default_runs_dir

#: Width of output that goes to a pipe or a file: wide enough that tables keep their rows on one line; text lines
#: are never wrapped there (soft wrap), so an error or a printed command stays one line that can be copied.
PIPE_WIDTH = 200


def _console(stderr: bool) -> Console:
    terminal = (sys.stderr if stderr else sys.stdout).isatty()
    return Console(stderr=stderr, soft_wrap=not terminal, width=None if terminal else PIPE_WIDTH)


console = _console(stderr=False)
err_console = _console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REPLAY_MISMATCH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

RunsDir = Annotated[Path | None, typer.Option(
    "--runs-dir", envvar=RUNS_DIR_ENV, show_default=False, metavar="DIR",
    help="Folder holding the run folders [default: ./runs; for run, the configuration's runs_dir]")]
LogLevel = Literal["debug", "info", "warning", "error"]
#: ``--skip-bad-lines`` (also ``--lenient``) for the commands that read a FLock JSONL file.
SkipBadLines = Annotated[bool, typer.Option("--skip-bad-lines", "--lenient", help="Skip lines that fail validation "
                                            "and report them (default: the first one is an error)")]


def runs_folder(option: Path | None) -> Path:
    """The runs folder a command looks in: ``--runs-dir`` (or ``$SYNTHGEN_RUNS_DIR``), else ``./runs``."""
    return option if option is not None else default_runs_dir()


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one clear error line and return the Exit to raise (whitespace folded, never wrapped, brackets in the
    message shown as written rather than read as markup)."""
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", soft_wrap=True)
    return typer.Exit(code)


def number(value: Any) -> str:
    """A score with four decimals, or a dash where there is none."""
    return f"{value:.4f}" if isinstance(value, int | float) else "—"


#: Our own loggers' names (their first part); every other logger is a library's.
PROJECT_LOGGERS = ("agent", "tools", "memory", "prompts")
#: The levels chosen by the last ``setup_logging``: (ours, the libraries').
_levels = [logging.INFO, logging.WARNING]
_installed_handlers: list[logging.Handler] = []


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test runner swaps it between commands)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _LevelFilter(logging.Filter):
    """Our records from our level on, the libraries' from theirs (the loggers' own levels are left alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ours, libraries = _levels
        return record.levelno >= (ours if record.name.split(".")[0] in PROJECT_LOGGERS else libraries)


def setup_logging(level: LogLevel, verbose: bool) -> None:
    """Our messages from ``level`` on (``--verbose``: debug), the libraries' from warning (``--verbose``: info).
    Records go to stderr: through rich in a terminal (above a live display), as plain timestamped lines
    elsewhere."""
    _levels[:] = [logging.DEBUG if verbose else getattr(logging, level.upper()),
                  logging.INFO if verbose else logging.WARNING]
    handler: logging.Handler
    if err_console.is_terminal:
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_LevelFilter())
    root = logging.getLogger()
    for old in _installed_handlers:
        root.removeHandler(old)
    _installed_handlers[:] = [handler]
    root.addHandler(handler)
    root.setLevel(min(_levels))


def progress_lines_wanted() -> bool:
    """Plain progress lines are information: shown unless the log level asks for warnings and errors only."""
    return _levels[0] <= logging.INFO


def _commands(command: Any) -> Iterator[Any]:
    """A command and every command under it (Typer builds them on its own copy of click's classes, so they are
    recognised by what they have, not by click's types)."""
    yield command
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from _commands(sub)


HELP_OPTION_NAMES = ["--help"]


def plain_output() -> bool:
    """Whether standard output is a pipe or a file rather than a terminal."""
    return not sys.stdout.isatty()


def _shows_str(param: Any) -> bool:
    return param.display_type_rich(None) == "<str>"


def _no_type(ctx: Any = None) -> None:
    return None


class SynthgenGroup(TyperGroup):
    """The root command group. Before parsing it tidies every command's help: a flag takes no value, so it shows
    no type (Typer shows ``<bool>``), nor does a named text argument (``RUN_ID``, not ``RUN_ID <str>``); and
    outside a terminal, help and usage errors are plain text, not boxes drawn 80 columns wide."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        plain = plain_output()
        for command in _commands(self):
            # The help option is made on first use and kept; made here, it gets the same treatment.
            help_option = command.get_help_option(SimpleNamespace(help_option_names=HELP_OPTION_NAMES))
            for param in [*command.params, *([help_option] if help_option is not None else [])]:
                if getattr(param, "is_flag", False) and param.metavar is None:
                    param.metavar = ""
                elif param.param_type_name == "argument" and param.metavar and _shows_str(param):
                    # A named argument (RUN_ID) says what it takes; "<str>" after it says nothing more.
                    setattr(param, "display_type_rich", _no_type)  # noqa: B010
            if plain:
                command.rich_markup_mode = None
        return super().main(*args, **kwargs)


#: Skipped lines named one by one before the rest are only counted.
SKIPPED_SHOWN = 20


def load_records(path: Path, skip_bad_lines: bool) -> list[Any]:
    """A FLock JSONL file's records: strict, or with ``--skip-bad-lines`` every skipped line named on stderr."""
    from tools.data import load_jsonl

    report = load_jsonl(path, strict=not skip_bad_lines)
    if report.issues:
        err_console.print(f"[yellow]skipped {report.skipped} bad line(s) of {escape(str(path))}:[/]", soft_wrap=True)
        for issue in report.issues[:SKIPPED_SHOWN]:
            err_console.print(f"  skipped {escape(str(issue))}", soft_wrap=True, highlight=False)
        if len(report.issues) > SKIPPED_SHOWN:
            err_console.print(f"  ... and {len(report.issues) - SKIPPED_SHOWN} more problems", soft_wrap=True)
    return report.records
