"""What every stage of a run works with, opened once per run by the toolbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.config import RunConfig
from agent.pipeline.base_model import BaseModelCache
from agent.pipeline.environment import TaskEnvironment
from agent.pipeline.store import DatasetVersions
from agent.pipeline.task import PreparedTaskFiles
from memory.runs import RunPaths


@dataclass(frozen=True)
class PipelineRun:
    """A run's configuration and folder, its task environment, prepared task, dataset versions and base model,
    and the clock its stages time themselves with (tests pass a fake one)."""

    config: RunConfig
    paths: RunPaths
    env: TaskEnvironment
    task: PreparedTaskFiles
    versions: DatasetVersions
    models: BaseModelCache
    clock: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    def open(cls, config: RunConfig, paths: RunPaths, env: TaskEnvironment,
             clock: Callable[[], float] = time.monotonic) -> PipelineRun:
        return cls(config, paths, env, PreparedTaskFiles(paths.task_dir), DatasetVersions(paths.data_dir),
                   BaseModelCache(config), clock)
