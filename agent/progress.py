"""Progress for people watching a run: the stage (graph node) it is in, the round, the budget used and left, and
the long steps inside a stage (download, scoring, generation, training, submission).

Nodes report their stage through :func:`stage` and pipeline stages their steps through :func:`step`; the CLI
installs a reporter for the run and puts the silent one back afterwards:

- :class:`LiveReporter` (a terminal): one live rich display with the stage, round and budget, and a bar with ETA
  for the current step;
- :class:`PlainReporter` (a pipe or a log file): a timestamped line when a stage or step starts and ends, and a
  line at most once a minute while a long step runs, so a log never goes quiet for minutes;
- :class:`SilentReporter`: tests and library use.

Kept separate from the trace: progress is for people watching, the trace is the record. The final summary's time
per stage is read from the trace (:func:`stage_seconds`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from agent.trace import TraceEvent

#: Advance callback handed to a stage: ``advance(n)`` adds n units; ``advance(n, total=T)`` also resets the total.
Advance = Callable[..., None]
#: How often a plain log shows a running step's progress.
PLAIN_PROGRESS_EVERY_S = 60.0


def clock(seconds: float) -> str:
    """``83`` -> ``1:23``; ``3723`` -> ``1:02:03``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _count(value: float) -> str:
    """A token count in a few characters: 950, 31k, 2.0M."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    return f"{value / 1000:.0f}k" if value >= 10_000 else f"{value:.0f}"


@dataclass
class StageStatus:
    """A stage as it runs: its name, the rounds done, and the budget used when it started."""

    name: str
    iteration: int
    usage: dict[str, Any]
    limits: dict[str, Any]
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rounds(self) -> str:
        return f"rounds done {self.iteration}/{self.limits.get('max_iterations', '?')}"

    def budget(self) -> str:
        """Budget used and left, the wall clock counted up to now."""
        used = float(self.usage.get("wall_seconds") or 0.0) + self.elapsed()
        limit = float(self.limits.get("max_wall_seconds") or 0.0)
        parts = [f"wall {clock(used)} of {clock(limit)} ({clock(max(0.0, limit - used))} left)"]
        for label, used_key, limit_key, show in (
                ("synthetic rows", "synthetic_examples", "max_synthetic_examples", str),
                ("train tokens", "train_tokens", "max_train_tokens", _count),
                ("generation tokens", "generation_tokens", "max_generation_tokens", _count),
                ("submissions", "submissions", "max_submissions", str)):
            if limit_key in self.limits:
                parts.append(f"{label} {show(self.usage.get(used_key) or 0)}/{show(self.limits[limit_key])}")
        return ", ".join(parts)


class Reporter(Protocol):
    def stage(self, status: StageStatus) -> contextlib.AbstractContextManager[None]: ...

    def step(self, description: str, total: float | None) -> contextlib.AbstractContextManager[Advance]: ...


class SilentReporter:
    @contextlib.contextmanager
    def stage(self, status: StageStatus) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def step(self, description: str, total: float | None) -> Iterator[Advance]:
        yield lambda *args, **kwargs: None


class _RunDisplay(Progress):
    """A rich progress display with a header line above the step bars (re-rendered on every refresh)."""

    def __init__(self, header: Callable[[], str], console: Console):
        self._header = header  # before Progress starts rendering
        super().__init__(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                         transient=True)

    def get_renderables(self) -> Iterable[RenderableType]:
        header = self._header()
        if header:
            yield Text.from_markup(header)
        yield self.make_tasks_table(self.tasks)


class LiveReporter:
    """The terminal display: the stage, rounds and budget on one line, a bar with ETA per running step. Use it as
    a context manager around the run; lines printed on the same console appear above it."""

    def __init__(self, console: Console):
        self.console = console
        self._status: StageStatus | None = None
        self.display = _RunDisplay(self._header, console)

    def _header(self) -> str:
        status = self._status
        if status is None:
            return ""
        return f"[bold cyan]{status.name}[/] · {status.rounds()}\n[dim]budget:[/] {status.budget()}"

    def __enter__(self) -> LiveReporter:
        self.display.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.display.stop()

    @contextlib.contextmanager
    def stage(self, status: StageStatus) -> Iterator[None]:
        self._status = status
        try:
            yield
        finally:
            self._status = None

    @contextlib.contextmanager
    def step(self, description: str, total: float | None) -> Iterator[Advance]:
        task_id = self.display.add_task(description, total=total)

        def advance(n: float = 1, total: float | None = None) -> None:
            if total is not None:
                self.display.update(task_id, total=total)
            self.display.advance(task_id, n)

        try:
            yield advance
        finally:
            self.display.remove_task(task_id)


class PlainReporter:
    """Timestamped lines for a pipe or a log file: a stage's start (with rounds and budget) and end, a step's start
    and end, and while a step runs, a line every ``every_s`` seconds with its progress and ETA where it reports
    them."""

    def __init__(self, console: Console, every_s: float = PLAIN_PROGRESS_EVERY_S):
        self.console = console
        self.every_s = every_s
        self._stage = ""
        self._steps = 0
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        prefix = time.strftime("%H:%M:%S")
        with self._lock:
            self.console.print(f"{prefix} {text}", markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def stage(self, status: StageStatus) -> Iterator[None]:
        self._stage, self._steps = status.name, 0
        self.line(f"[{status.name}] started; {status.rounds()}; budget used: {status.budget()}")
        try:
            yield
        except BaseException:
            self.line(f"[{status.name}] stopped after {clock(status.elapsed())}")
            raise
        else:
            if self._steps:  # closes the block of step lines; a stage without steps is one line
                self.line(f"[{status.name}] done in {clock(status.elapsed())}")
        finally:
            self._stage = ""

    @contextlib.contextmanager
    def step(self, description: str, total: float | None) -> Iterator[Advance]:
        where = f"[{self._stage}] " if self._stage else ""
        started = time.monotonic()
        counts: dict[str, float | None] = {"done": 0.0, "total": total}
        self._steps += 1
        count = f" ({total:g})" if total and f"{total:g}" not in description else ""
        self.line(f"{where}{description}{count} ...")
        finished = threading.Event()

        def heartbeat() -> None:
            # A step that reports no progress of its own (one long library call) still shows it is alive.
            while not finished.wait(self.every_s):
                elapsed = time.monotonic() - started
                self.line(f"{where}{description}: {_fraction(counts['done'], counts['total'])}, {clock(elapsed)} "
                          f"elapsed{_eta(counts['done'], counts['total'], elapsed)}")

        def advance(n: float = 1, total: float | None = None) -> None:
            if total is not None:
                counts["total"] = total
            counts["done"] = (counts["done"] or 0.0) + n

        beat = threading.Thread(target=heartbeat, name="progress-heartbeat", daemon=True)
        beat.start()
        try:
            yield advance
        finally:
            finished.set()
            beat.join()
        self.line(f"{where}{description}: done in {clock(time.monotonic() - started)}")


def _fraction(done: float | None, total: float | None) -> str:
    if total:
        return f"{done or 0:g}/{total:g}"
    return f"{done:g} done" if done else "running"


def _eta(done: float | None, total: float | None, elapsed: float) -> str:
    if not total or not done or done >= total:
        return ""
    return f", about {clock(elapsed * (total - done) / done)} left"


# A process-wide setting (not a ContextVar): stages may report from worker threads.
_reporter: list[Reporter] = [SilentReporter()]


def set_reporter(reporter: Reporter) -> None:
    _reporter[0] = reporter


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Use ``reporter`` for the block, then the one before it again."""
    previous = _reporter[0]
    set_reporter(reporter)
    try:
        yield reporter
    finally:
        set_reporter(previous)


def stage(name: str, iteration: int, usage: dict[str, Any] | None, budget: BaseModel) \
        -> contextlib.AbstractContextManager[None]:
    """A graph node running: shown with the rounds done and the budget used (``usage``) and allowed (``budget``)."""
    return _reporter[0].stage(StageStatus(name, iteration, dict(usage or {}), budget.model_dump()))


def step(description: str, total: float | None = None) -> contextlib.AbstractContextManager[Advance]:
    return _reporter[0].step(description, total)


def stage_seconds(events: Iterable[TraceEvent]) -> dict[str, tuple[int, float]]:
    """Per stage, in the order stages first ran: how many times it ran and its seconds in total (from the trace's
    ``node_end`` events, across resumes)."""
    found: dict[str, tuple[int, float]] = {}
    for event in events:
        if event.type == "node_end" and event.node:
            count, seconds = found.get(event.node, (0, 0.0))
            found[event.node] = (count + 1, seconds + float(event.data.get("seconds") or 0.0))
    return found
