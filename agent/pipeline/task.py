"""Task preparation and splits: fetch the task, check the base model against it, download, validate, profile and
split its training set, once per run. Afterwards the files in the run's task folder are the truth: a restarted
process reads the task, its splits and its fitted plugin back from them."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from agent import progress
from agent.config import RunConfig
from agent.pipeline.environment import PipelineError, TaskEnvironment
from agent.pipeline.store import DatasetVersions, read_result, write_result
from agent.state import DatasetInfo, TaskInfo
from agent.toolbox import PreparedTask
from tools.data import (
    DataIssue,
    DataValidationError,
    FlockRecord,
    SplitFractions,
    load_jsonl,
    stratified_split,
    write_jsonl,
)
from tools.flock.submit import check_base_model
from tools.models import template_for
from tools.tasks import TaskPlugin, detect_plugin, get_plugin

SplitName = Literal["train", "dev", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "dev", "test")
TRAINING_SET = "training_set.jsonl"
#: Skipped lines reported one by one (the rest as a count); all of them are counted in prepared.json.
SKIPPED_LINES_SHOWN = 20

logger = logging.getLogger(__name__)


def _report_skipped(issues: Sequence[DataIssue], skipped: int) -> None:
    """Say which training lines were left out (task.skip_bad_lines), so a skipped line is never silent."""
    if not issues:
        return
    logger.warning("skipped %d bad line(s) of the training set (task.skip_bad_lines):", skipped)
    for issue in issues[:SKIPPED_LINES_SHOWN]:
        logger.warning("  skipped %s", issue)
    if len(issues) > SKIPPED_LINES_SHOWN:
        logger.warning("  ... and %d more problems", len(issues) - SKIPPED_LINES_SHOWN)


def _bad_training_set(task_id: int | str, issue: DataIssue) -> str:
    """A problem of the task's training set as the task's, not the run's copy's (a failed start removes it)."""
    where = f"training set of task {task_id}" + (f", line {issue.line}" if issue.line else "")
    what = f"{issue.field}: {issue.message}" if issue.field else issue.message
    return f"{where}: {what} (--skip-bad-lines, or task.skip_bad_lines, leaves bad lines out and lists them)"


def _line_count(path: Path | None) -> int:
    """Non-empty lines of a JSONL file (0 when there is none)."""
    if path is None or not path.is_file():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _plain_text(html_text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html_text or "")).strip()


class PreparedTaskFiles:
    """A run's prepared task: ``prepared.json``, the downloaded training set and the split files."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.prepared_path = folder / "prepared.json"
        self._prepared: PreparedTask | None = None
        self._plugin: TaskPlugin | None = None
        self._splits: dict[str, list[FlockRecord]] = {}

    def prepare(self, config: RunConfig, env: TaskEnvironment, versions: DatasetVersions) -> PreparedTask:
        """Fetch, check, download, validate, profile and split the task; dataset version 0 is the train split.
        Done once per run: a second call returns the stored result."""
        stored = read_result(self.prepared_path, PreparedTask)
        if stored is not None:
            return stored
        task = env.client.get_task(env.task_id)
        if config.task.kind == "flock" and not task.in_submission_phase:
            raise PipelineError(f"task {task.id} is in status {task.status!r}, not submission_phase: "
                                "FLock would refuse a submission")
        check_base_model(task, config.base_model, real_validators=config.task.kind == "flock")
        with progress.step("download training set", None):
            downloaded = env.client.download_training_set(env.task_id, self.folder / TRAINING_SET, task=task)
        try:
            report = load_jsonl(downloaded.path, strict=not config.task.skip_bad_lines)
        except DataValidationError as exc:
            raise PipelineError(_bad_training_set(task.id, exc.issues[0])) from None
        _report_skipped(report.issues, report.skipped)
        plugin = detect_plugin(report.records)
        fractions = SplitFractions(train=1 - config.eval.dev_fraction - config.eval.test_fraction,
                                   dev=config.eval.dev_fraction, test=config.eval.test_fraction)
        splits = stratified_split(report.records, category=lambda r: plugin.categorize(r).primary,
                                  key=lambda r: r.record_id, fractions=fractions, seed=config.seed)
        for name, records in (("train", splits.train), ("dev", splits.dev), ("test", splits.test)):
            write_jsonl(records, self.folder / f"{name}.jsonl")
        base = versions.store.put_shard(splits.train, kind="base")
        version = versions.save(0, [base])
        info = TaskInfo(
            task_id=task.id, title=task.title, task_type=plugin.name, categories=plugin.categories(),
            context_length=int(task.data.context_length or 4096), max_params=int(task.data.max_params or 0),
            base_model=config.base_model, template=template_for(config.base_model),
            split_sizes=splits.sizes(), description_excerpt=_plain_text(task.description)[:400],
            strategies=list(plugin.strategy_names()), validation_examples=_line_count(env.validation_file),
        )
        dataset = DatasetInfo(version=version, original_per_category=plugin.category_counts(splits.train),
                              synthetic_per_category={})
        prepared = PreparedTask(task=info, dataset=dataset, skipped_lines=report.skipped,
                                training_sha256=downloaded.sha256)
        write_result(self.prepared_path, prepared)
        return prepared

    def _load(self) -> PreparedTask:
        """The prepared task, read back from its files on first use."""
        if self._prepared is None:
            prepared = read_result(self.prepared_path, PreparedTask)
            if prepared is None:
                raise PipelineError("the task is not prepared yet (bootstrap did not finish)")
            self._splits = {name: load_jsonl(self.folder / f"{name}.jsonl").records for name in SPLITS}
            self._plugin = get_plugin(prepared.task.task_type).fit(
                load_jsonl(self.folder / TRAINING_SET, strict=False).records)
            self._prepared = prepared
        return self._prepared

    @property
    def info(self) -> TaskInfo:
        return self._load().task

    @property
    def plugin(self) -> TaskPlugin:
        self._load()
        assert self._plugin is not None
        return self._plugin

    def split(self, name: str) -> list[FlockRecord]:
        self._load()
        return self._splits[name]
