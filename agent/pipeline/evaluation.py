"""Evaluation with its cache: FLock BPC (overall and per category) of the base model or an adapter on a split, and
the task's headline metric by decoding, each kept in ``evals/`` and computed once; the test comparison; and the
base model's score on the simulator's held-back validation file.

Dev is scored by BPC only. The task metric is decoded in the test comparison, for the base model and the final
adapter, on a fixed sample whose order spreads the categories evenly, in chunks until the time given runs out: a
prefix of the sample when the whole split does not fit, the same examples for both models.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from agent import progress
from agent.pipeline.base_model import with_adapter
from agent.pipeline.environment import PipelineError
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import adapter_folder, read_result, write_result
from agent.pipeline.training import adapter_iteration
from agent.state import CategoryMetrics, EvalSummary
from agent.toolbox import TestComparison
from tools.data import FlockRecord, load_jsonl
from tools.evaluate import CategoryScore, flock_score, task_metrics
from tools.fileio import atomic_write_text

#: Examples decoded in the first chunk, which measures the pace before the time left is spent on bigger ones.
FIRST_CHUNK = 4
#: Examples per later chunk (one decoding batch).
CHUNK = 16


class TaskMetricResult(BaseModel):
    """The headline task metric on the first ``examples`` of a split's fixed sample."""

    name: str
    overall: float | None
    per_category: dict[str, float]
    examples: int
    seconds: float


def fixed_sample(records: Sequence[FlockRecord], categories: Sequence[str], seed: int) -> list[int]:
    """Indices of every record in an order that takes the categories in turn (each shuffled by ``seed``), so any
    prefix spreads over the categories like the split."""
    by_category: dict[str, list[int]] = defaultdict(list)
    for index, category in enumerate(categories):
        by_category[category].append(index)
    rng = random.Random(f"task-metric-sample:{seed}")
    queues = [rng.sample(indices, len(indices)) for _, indices in sorted(by_category.items())]
    order: list[int] = []
    while any(queues):
        for queue in queues:
            if queue:
                order.append(queue.pop(0))
    return order


class _WeightedMeans:
    """Means of chunk results weighted by what each chunk's mean was taken over (examples or probes)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.weights: dict[str, float] = defaultdict(float)

    def add(self, key: str, value: float, weight: float) -> None:
        if weight > 0:
            self.sums[key] += value * weight
            self.weights[key] += weight

    def mean(self, key: str) -> float | None:
        return self.sums[key] / self.weights[key] if self.weights.get(key) else None


def _category_metrics(score: CategoryScore, task_metric: float | None) -> CategoryMetrics:
    return CategoryMetrics(bpc=score.bpc, examples=score.num_examples, task_metric=task_metric)


class Evaluator:
    def __init__(self, run: PipelineRun):
        self.run = run
        self.clock = run.clock

    def evaluate(self, adapter_id: str | None, split: str) -> EvalSummary:
        """FLock BPC of the base model or an adapter on dev or test, overall and per category."""
        if split not in ("dev", "test"):
            raise PipelineError(f"split must be dev or test, got {split!r}")
        run = self.run
        cache = run.paths.evals_dir / f"{adapter_id or 'base'}-{split}.json"
        stored = read_result(cache, EvalSummary)
        if stored is not None:
            return stored
        info, records = run.task.info, run.task.split(split)
        categories = [run.task.plugin.categorize(r).primary for r in records]
        started = self.clock()
        model, tokenizer = run.models.load()
        adapter = adapter_folder(run.paths.adapters_dir, adapter_id) if adapter_id else None
        with progress.step(f"score {adapter_id or 'base model'} on {split}", len(records)) as advance:
            score = flock_score(model, records, template=info.template, context_length=info.context_length,
                                tokenizer=tokenizer, adapter=adapter, categories=categories)
            advance(len(records))
        summary = EvalSummary(split=split, adapter_id=adapter_id, bpc=score.bpc,
                              per_category={c: _category_metrics(s, None) for c, s in score.per_category.items()},
                              seconds=round(self.clock() - started, 3))
        write_result(cache, summary)
        self._track(summary)
        return summary

    def _track(self, summary: EvalSummary, *, task_metric_only: bool = False) -> None:
        """The evaluation's metrics for the run's trackers: the base model at step 0, an adapter at its round."""
        who = "adapter" if summary.adapter_id else "base"
        metrics: dict[str, float] = {} if task_metric_only else {
            f"{summary.split}/{who}/bpc": summary.bpc,
            **{f"{summary.split}/{who}/bpc/{c}": m.bpc for c, m in summary.per_category.items()}}
        if summary.task_metric_name and summary.task_metric is not None:
            metrics[f"{summary.split}/{who}/{summary.task_metric_name}"] = summary.task_metric
        if metrics:
            self.run.tracker.log(metrics, adapter_iteration(summary.adapter_id) if summary.adapter_id else 0)

    def task_metric(self, adapter_id: str | None, split: str, max_seconds: float | None,
                    max_examples: int | None = None) -> TaskMetricResult:
        """The headline task metric on as much of the split's fixed sample as fits in ``max_seconds`` (and at most
        ``max_examples``), decoded in chunks; the pace of the chunks so far says whether the next one fits."""
        run = self.run
        cache = run.paths.evals_dir / f"{adapter_id or 'base'}-{split}-taskmetric.json"
        stored = read_result(cache, TaskMetricResult)
        if stored is not None:
            return stored
        plugin, info, records = run.task.plugin, run.task.info, run.task.split(split)
        categories = [plugin.categorize(r).primary for r in records]
        order = fixed_sample(records, categories, run.config.seed)[:max_examples]
        name = plugin.headline_metric
        on_probes = plugin.metric(name).on_probes
        means = _WeightedMeans()
        started = self.clock()
        done = 0
        model, tokenizer = run.models.load()
        adapter = adapter_folder(run.paths.adapters_dir, adapter_id) if adapter_id else None
        with progress.step(f"decode {adapter_id or 'base model'} on {split}", len(order)) as advance, \
                with_adapter(model, adapter) as scoring_model:
            while done < len(order):
                size = FIRST_CHUNK if done == 0 else CHUNK
                chunk = order[done:done + size]
                elapsed = self.clock() - started
                if max_seconds is not None and (
                        elapsed >= max_seconds or (done and elapsed / done * len(chunk) > max_seconds - elapsed)):
                    break
                chunk_records = [records[i] for i in chunk]
                chunk_categories = [categories[i] for i in chunk]
                report = task_metrics(scoring_model, tokenizer, chunk_records, template=info.template,
                                      task_type=info.task_type, categories=chunk_categories, metrics=[name],
                                      max_new_tokens=run.config.eval.max_new_tokens)
                weight = dict.fromkeys(chunk_categories, 0.0)
                for record, category in zip(chunk_records, chunk_categories, strict=True):
                    weight[category] += len(plugin.probes(record)) if on_probes else 1
                for category, metrics in report.per_category.items():
                    if name in metrics:
                        means.add(category, metrics[name], weight[category])
                if name in report.overall:
                    means.add("", report.overall[name], sum(weight.values()))
                done += len(chunk)
                advance(len(chunk))
        per_category = {c: m for c in sorted(set(categories)) if (m := means.mean(c)) is not None}
        result = TaskMetricResult(name=name, overall=means.mean(""), per_category=per_category, examples=done,
                                  seconds=round(self.clock() - started, 3))
        write_result(cache, result)
        return result

    def compare_on_test(self, adapter_id: str | None, max_seconds: float | None = None) -> TestComparison:
        """Base model vs an adapter on the test split, per category; with the task metric when configured, on the
        same examples for both, as many as fit in what is left of ``max_seconds`` after scoring."""
        started = self.clock()
        base = self.evaluate(None, "test")
        adapter = self.evaluate(adapter_id, "test") if adapter_id else None
        if self.run.config.eval.task_metric:
            # Each model gets the same share of what is left, the adapter the examples the base model got to.
            left = None if max_seconds is None else max(0.0, max_seconds - (self.clock() - started))
            share = None if left is None else left / (2 if adapter else 1)
            base_metric = self.task_metric(None, "test", share)
            base = with_task_metric(base, base_metric)
            self._track(base, task_metric_only=True)
            if adapter is not None:
                adapter = with_task_metric(adapter, self.task_metric(adapter_id, "test", share, base_metric.examples))
                self._track(adapter, task_metric_only=True)
        deltas: dict[str, float] = {}
        if adapter is not None:
            deltas["overall"] = round(adapter.bpc - base.bpc, 6)
            for category, score in base.per_category.items():
                if category in adapter.per_category:
                    deltas[category] = round(adapter.per_category[category].bpc - score.bpc, 6)
            comparable = adapter.task_metric_examples == base.task_metric_examples
            if base.task_metric_name and base.task_metric is not None and adapter.task_metric is not None \
                    and comparable:
                deltas[base.task_metric_name] = round(adapter.task_metric - base.task_metric, 6)
        return TestComparison(base=base, adapter=adapter, deltas=deltas)

    def pace(self) -> float | None:
        """Seconds per example of BPC scoring, the slowest of this run's stored evaluations (None before any)."""
        paces = []
        for path in self.run.paths.evals_dir.glob("*-dev.json"):
            summary = read_result(path, EvalSummary)
            examples = sum(c.examples for c in summary.per_category.values()) if summary else 0
            if summary is not None and summary.seconds and examples:
                paces.append(summary.seconds / examples)
        return max(paces) if paces else None

    def base_validation_bpc(self, validation_file: Path) -> float:
        """The base model's score on the simulator's held-back validation file of a local task, for comparison
        with a submission's (the agent never sees this file otherwise)."""
        cache = self.run.paths.evals_dir / "base-validation.json"
        if cache.is_file():
            return float(json.loads(cache.read_text())["bpc"])
        records = load_jsonl(validation_file).records
        model, tokenizer = self.run.models.load()
        info = self.run.task.info
        score = flock_score(model, records, template=info.template, context_length=info.context_length,
                            tokenizer=tokenizer, max_params=info.max_params or None)
        atomic_write_text(cache, json.dumps({"bpc": score.bpc}))
        return score.bpc


def with_task_metric(summary: EvalSummary, metric: TaskMetricResult) -> EvalSummary:
    """An evaluation with its task metric (None when no example could be decoded in the time given)."""
    per_category = {c: m.model_copy(update={"task_metric": metric.per_category.get(c)})
                    for c, m in summary.per_category.items()}
    return summary.model_copy(update={"per_category": per_category, "task_metric_name": metric.name,
                                      "task_metric": metric.overall, "task_metric_examples": metric.examples,
                                      "task_metric_seconds": metric.seconds})
