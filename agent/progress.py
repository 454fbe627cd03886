"""Progress reporting for long steps (download, generation, training, evaluation).

Stages report through :func:`step`; the CLI installs a rich progress display with ETA, tests and library use get
a silent reporter. Kept separate from the trace: progress is for people watching, the trace is the record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Advance callback handed to a stage: ``advance(n)`` adds n units; ``advance(n, total=T)`` also resets the total.
Advance = Callable[..., None]


class Reporter(Protocol):
    @contextlib.contextmanager
    def step(self, description: str, total: float | None) -> Iterator[Advance]: ...


class SilentReporter:
    @contextlib.contextmanager
    def step(self, description: str, total: float | None) -> Iterator[Advance]:
        yield lambda *args, **kwargs: None


class RichReporter:
    """A rich progress bar per step, with elapsed time and ETA."""

    def __init__(self, console: Any):
        self.console = console

    @contextlib.contextmanager
    def step(self, description: str, total: float | None) -> Iterator[Advance]:
        columns = (TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task_id = progress.add_task(description, total=total)

            def advance(n: float = 1, total: float | None = None) -> None:
                if total is not None:
                    progress.update(task_id, total=total)
                progress.advance(task_id, n)

            yield advance


# A process-wide setting (not a ContextVar): stages may report from worker threads.
_reporter: list[Reporter] = [SilentReporter()]


def set_reporter(reporter: Reporter) -> None:
    _reporter[0] = reporter


def step(description: str, total: float | None = None) -> contextlib.AbstractContextManager[Advance]:
    return _reporter[0].step(description, total)
