"""The agent's toolbox on the real pipeline: :class:`agent.toolbox.Toolbox` implemented by the stages of this
package, on the task environment a run opens."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from agent.config import RunConfig
from agent.pipeline.cards import HubArtifacts
from agent.pipeline.environment import TaskEnvironment, open_environment
from agent.pipeline.evaluation import Evaluator
from agent.pipeline.generation import Generator
from agent.pipeline.run import PipelineRun
from agent.pipeline.submission import Submitter
from agent.pipeline.training import Trainer
from agent.state import AdapterInfo, EvalSummary, SubmissionInfo, TaskInfo, TrainOverrides
from agent.toolbox import GenerateOutcome, PreparedTask, TestComparison
from agent.trace import Redactor
from memory.runs import RunPaths
from tools.data import FlockRecord
from tools.tasks import TaskPlugin


class PipelineToolbox:
    """Every method is idempotent and keyed by run, iteration and content: results are kept in the run folder, so
    a method called again after a crash (the node that called it is re-run on resume) returns the same result
    without redoing finished work, and a submission is never sent twice."""

    def __init__(self, config: RunConfig, paths: RunPaths, env: TaskEnvironment,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.paths = paths
        self.env = env
        self.run = PipelineRun.open(config, paths, env, clock)
        self.evaluator = Evaluator(self.run)
        self.generator = Generator(self.run)
        self.trainer = Trainer(self.run)
        self.submitter = Submitter(self.run, self.evaluator)

    def close(self) -> None:
        self.run.models.close()
        self.generator.close()
        self.run.tracker.close()

    @property
    def task(self) -> TaskInfo:
        return self.run.task.info

    @property
    def plugin(self) -> TaskPlugin:
        return self.run.task.plugin

    def split(self, name: str) -> list[FlockRecord]:
        return self.run.task.split(name)

    def prepare_task(self) -> PreparedTask:
        """Fetch the task, check the base model against it, download and validate its training set, profile and
        split it. Done once per run: a second call returns the stored result."""
        return self.run.task.prepare(self.config, self.env, self.run.versions)

    def evaluate(self, adapter_id: str | None, split: str) -> EvalSummary:
        return self.evaluator.evaluate(adapter_id, split)

    def generate(self, targets: dict[str, int], strategies: dict[str, str], iteration: int,
                 max_generation_tokens: int, max_seconds: float | None = None) -> GenerateOutcome:
        return self.generator.generate(targets, strategies, iteration, max_generation_tokens, max_seconds)

    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        return self.trainer.train(dataset_version, iteration, overrides, max_train_tokens, max_seconds)

    def refit(self, refit_of: str, dataset_version: str, overrides: TrainOverrides | None, max_train_tokens: int,
              max_seconds: float | None = None) -> AdapterInfo:
        return self.trainer.refit(refit_of, dataset_version, overrides, max_train_tokens, max_seconds)

    def submit(self, adapter_id: str, max_seconds: float | None = None,
               refit_of: str | None = None) -> SubmissionInfo:
        return self.submitter.submit(adapter_id, max_seconds, refit_of)

    def compare_on_test(self, adapter_id: str | None, max_seconds: float | None = None) -> TestComparison:
        """The test comparison of the finish stage; the run's Hub artifacts are completed with it."""
        comparison = self.evaluator.compare_on_test(adapter_id, max_seconds)
        HubArtifacts(self.run).finish(adapter_id, comparison, self.env)
        return comparison


@contextlib.contextmanager
def open_pipeline(config: RunConfig, paths: RunPaths, redactor: Redactor,
                  clock: Callable[[], float] = time.monotonic) -> Iterator[PipelineToolbox]:
    """The toolbox of a run on its task environment, closed (models released) when the run ends. The stages time
    themselves with ``clock``."""
    with open_environment(config, paths, redactor) as env:
        toolbox = PipelineToolbox(config, paths, env, clock)
        try:
            yield toolbox
        finally:
            toolbox.close()
