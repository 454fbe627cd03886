"""Experiment trackers people already use: TensorBoard, Weights & Biases and trackio, chosen like TRL's
``report_to``. Off by default; none needs the network (W&B runs offline unless ``WANDB_MODE`` says otherwise, and
trackio keeps its database on disk). Each is an optional extra: ``pip install 'synthgen-agent[tensorboard]'``
(``[wandb]``, ``[trackio]``, or ``[tracking]`` for all three).

A run opens its trackers with :func:`open_trackers` and logs run metrics (per round) through them; code that
does not know about the run, such as the trainer's step loop, calls :func:`log_metrics`, which reaches the tracker
made current with :func:`current` (and does nothing when there is none).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

TrackerName = Literal["tensorboard", "wandb", "trackio"]
#: The pip extra that brings each tracker's package.
EXTRAS: dict[str, str] = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


class TrackingConfig(BaseModel):
    """The ``tracking:`` section of a run's configuration."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    report_to: list[TrackerName] = Field(
        default_factory=list, description="trackers that get the run's metrics: tensorboard, wandb (offline unless "
                                          "WANDB_MODE is set), trackio (local); files go to the run's tracking/ "
                                          "folder (trackio: $TRACKIO_DIR when set)")
    project: str = Field(default="synthgen", min_length=1, description="project name for wandb and trackio")


class TrackingError(RuntimeError):
    """A chosen tracker cannot be used (its package is not installed)."""


class Tracker(Protocol):
    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Record scalar metrics at a step (non-finite values are skipped)."""
        ...

    def close(self) -> None: ...


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


class TensorBoardTracker:
    """Event files under ``log_dir`` (``tensorboard --logdir`` reads them)."""

    def __init__(self, log_dir: Path, run_name: str, config: Mapping[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.writer.add_text("run", f"{run_name}\n\n```json\n{json.dumps(config, indent=1, default=str)}\n```")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in _finite(metrics).items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


#: ``WANDB_MODE`` values that change the default (offline): syncing live is a choice made in the environment.
WANDB_MODES: dict[str, Literal["online", "offline", "disabled"]] = {"online": "online", "disabled": "disabled"}


class WandbTracker:
    """A W&B run in ``log_dir`` (offline: ``wandb sync`` uploads it later). W&B wants one increasing step per
    run, so each metric family (``train/...``, ``dev/...``) gets its own step metric instead."""

    def __init__(self, log_dir: Path, run_name: str, config: Mapping[str, Any], project: str):
        import wandb

        log_dir.mkdir(parents=True, exist_ok=True)
        mode = WANDB_MODES.get(os.environ.get("WANDB_MODE", ""), "offline")
        self.run = wandb.init(project=project, name=run_name, dir=str(log_dir), config=dict(config), mode=mode,
                              reinit="create_new")
        self._families: set[str] = set()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        values = _finite(metrics)
        for name in values:
            family = name.rpartition("/")[0] or "run"
            if family not in self._families:
                self.run.define_metric(f"{family}/step", hidden=True)
                self.run.define_metric(f"{family}/*", step_metric=f"{family}/step")
                self._families.add(family)
        steps = {f"{name.rpartition('/')[0] or 'run'}/step": step for name in values}
        self.run.log({**values, **steps})

    def close(self) -> None:
        self.run.finish()


class TrackioTracker:
    """A trackio run in its local database (``$TRACKIO_DIR``, set to ``log_dir`` unless already set before trackio
    was first imported; ``trackio show`` reads it)."""

    def __init__(self, log_dir: Path, run_name: str, config: Mapping[str, Any], project: str):
        os.environ.setdefault("TRACKIO_DIR", str(log_dir))
        import trackio

        self._trackio = trackio
        self.run = trackio.init(project=project, name=run_name, config=dict(config), embed=False,
                                auto_log_cpu=False, auto_log_gpu=False)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._trackio.log(_finite(metrics), step=step)

    def close(self) -> None:
        self._trackio.finish()


class Trackers:
    """The run's trackers as one: logs go to each; a tracker that fails is logged and dropped, never the run."""

    def __init__(self, trackers: Sequence[Tracker] = ()):
        self.trackers = list(trackers)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in list(self.trackers):
            try:
                tracker.log(metrics, step)
            except Exception as exc:  # a tracker is an observer: the run goes on without it
                logger.warning("tracker %s failed and is dropped: %s", type(tracker).__name__, exc)
                self.trackers.remove(tracker)

    def close(self) -> None:
        for tracker in self.trackers:
            with contextlib.suppress(Exception):
                tracker.close()
        self.trackers = []


def open_trackers(config: TrackingConfig, log_dir: Path, run_name: str,
                  run_config: Mapping[str, Any] | None = None) -> Trackers:
    """The trackers ``config.report_to`` names, writing under ``log_dir/<tracker>``."""
    opened: list[Tracker] = []
    settings = dict(run_config or {})
    try:
        for name in dict.fromkeys(config.report_to):
            folder = log_dir / name
            try:
                if name == "tensorboard":
                    opened.append(TensorBoardTracker(folder, run_name, settings))
                elif name == "wandb":
                    opened.append(WandbTracker(folder, run_name, settings, config.project))
                else:
                    opened.append(TrackioTracker(folder, run_name, settings, config.project))
            except ImportError as exc:
                raise TrackingError(f"tracking.report_to {name!r} needs the {exc.name or name} package: "
                                    f"pip install 'synthgen-agent[{EXTRAS[name]}]'") from None
    except BaseException:
        Trackers(opened).close()
        raise
    return Trackers(opened)


_CURRENT: contextvars.ContextVar[tuple[Tracker, str] | None] = contextvars.ContextVar("synthgen_tracker",
                                                                                      default=None)


@contextlib.contextmanager
def current(tracker: Tracker, prefix: str = "") -> Iterator[None]:
    """Make ``tracker`` the one :func:`log_metrics` reaches, with ``prefix`` before every metric name."""
    token = _CURRENT.set((tracker, prefix))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def log_metrics(metrics: Mapping[str, float], step: int) -> None:
    """Log to the current tracker, if any (the hook in code that knows nothing of the run, like the trainer)."""
    held = _CURRENT.get()
    if held is not None:
        tracker, prefix = held
        tracker.log({prefix + name: value for name, value in metrics.items()}, step)


__all__ = [
    "TrackerName",
    "Trackers",
    "TrackingConfig",
    "TrackingError",
    "current",
    "log_metrics",
    "open_trackers",
]
