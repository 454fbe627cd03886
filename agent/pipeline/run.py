"""What every stage of a run works with, opened once per run by the toolbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.config import RunConfig
from agent.pipeline.base_model import BaseModelCache
from agent.pipeline.environment import PipelineError, TaskEnvironment
from agent.pipeline.store import DatasetVersions
from agent.pipeline.task import PreparedTaskFiles
from memory.runs import RunPaths
from tools.tracking import Trackers, TrackingError, open_trackers

#: The run folder's sub-folder the trackers write to.
TRACKING_DIR = "tracking"


@dataclass(frozen=True)
class PipelineRun:
    """A run's configuration and folder, its task environment, prepared task, dataset versions, base model, the
    trackers its metrics go to (none unless ``tracking.report_to`` names some), and the clock its stages time
    themselves with (tests pass a fake one)."""

    config: RunConfig
    paths: RunPaths
    env: TaskEnvironment
    task: PreparedTaskFiles
    versions: DatasetVersions
    models: BaseModelCache
    tracker: Trackers
    clock: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    def open(cls, config: RunConfig, paths: RunPaths, env: TaskEnvironment,
             clock: Callable[[], float] = time.monotonic) -> PipelineRun:
        try:
            tracker = open_trackers(config.tracking, paths.root / TRACKING_DIR, paths.run_id,
                                    config.model_dump(mode="json"))
        except TrackingError as exc:
            raise PipelineError(str(exc)) from None
        return cls(config, paths, env, PreparedTaskFiles(paths.task_dir), DatasetVersions(paths.data_dir),
                   BaseModelCache(config), tracker, clock)
