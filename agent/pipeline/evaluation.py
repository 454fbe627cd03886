"""Evaluation with its cache: FLock BPC (overall and per category) and the task's headline metric of the base
model or an adapter on a split, each kept in ``evals/`` and computed once; the test comparison; and the base
model's score on the simulator's held-back validation file."""

from __future__ import annotations

import json
from pathlib import Path

from agent import progress
from agent.pipeline.base_model import with_adapter
from agent.pipeline.environment import PipelineError
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import adapter_folder, read_result, write_result
from agent.pipeline.training import adapter_iteration
from agent.state import CategoryMetrics, EvalSummary
from agent.toolbox import TestComparison
from tools.data import load_jsonl
from tools.evaluate import CategoryScore, flock_score, task_metrics
from tools.fileio import atomic_write_text


def _category_metrics(score: CategoryScore, task_metric: float | None) -> CategoryMetrics:
    return CategoryMetrics(bpc=score.bpc, examples=score.num_examples, task_metric=task_metric)


class Evaluator:
    def __init__(self, run: PipelineRun):
        self.run = run

    def evaluate(self, adapter_id: str | None, split: str, with_task_metric: bool | None = None) -> EvalSummary:
        if split not in ("dev", "test"):
            raise PipelineError(f"split must be dev or test, got {split!r}")
        run = self.run
        with_task_metric = run.config.eval.task_metric if with_task_metric is None else with_task_metric
        cache = run.paths.evals_dir / f"{adapter_id or 'base'}-{split}{'-tm' if with_task_metric else ''}.json"
        stored = read_result(cache, EvalSummary)
        if stored is not None:
            return stored
        info, records = run.task.info, run.task.split(split)
        categories = [run.task.plugin.categorize(r).primary for r in records]
        model, tokenizer = run.models.load()
        adapter = adapter_folder(run.paths.adapters_dir, adapter_id) if adapter_id else None
        with progress.step(f"score {adapter_id or 'base model'} on {split}", len(records)) as advance:
            score = flock_score(model, records, template=info.template, context_length=info.context_length,
                                tokenizer=tokenizer, adapter=adapter, categories=categories)
            advance(len(records))
        metric_name: str | None = None
        overall_metric: float | None = None
        per_category_metric: dict[str, float] = {}
        if with_task_metric:
            metric_name = run.task.plugin.headline_metric
            with progress.step(f"decode {adapter_id or 'base model'} on {split}", len(records)) as advance, \
                    with_adapter(model, adapter) as scoring_model:
                report = task_metrics(scoring_model, tokenizer, records, template=info.template,
                                      task_type=info.task_type, categories=categories, metrics=[metric_name],
                                      max_new_tokens=run.config.eval.max_new_tokens)
                advance(len(records))
            overall_metric = report.overall.get(metric_name)
            per_category_metric = {c: m[metric_name] for c, m in report.per_category.items() if metric_name in m}
        summary = EvalSummary(
            split=split,
            adapter_id=adapter_id, bpc=score.bpc,
            per_category={c: _category_metrics(s, per_category_metric.get(c)) for c, s in score.per_category.items()},
            task_metric_name=metric_name, task_metric=overall_metric,
        )
        write_result(cache, summary)
        self._track(summary)
        return summary

    def _track(self, summary: EvalSummary) -> None:
        """The evaluation's metrics for the run's trackers: the base model at step 0, an adapter at its round."""
        who = "adapter" if summary.adapter_id else "base"
        metrics = {f"{summary.split}/{who}/bpc": summary.bpc,
                   **{f"{summary.split}/{who}/bpc/{c}": m.bpc for c, m in summary.per_category.items()}}
        if summary.task_metric_name and summary.task_metric is not None:
            metrics[f"{summary.split}/{who}/{summary.task_metric_name}"] = summary.task_metric
        self.run.tracker.log(metrics, adapter_iteration(summary.adapter_id) if summary.adapter_id else 0)

    def compare_on_test(self, adapter_id: str | None) -> TestComparison:
        """Base model vs an adapter on the test split, per category and on the task metric."""
        base = self.evaluate(None, "test")
        adapter = self.evaluate(adapter_id, "test") if adapter_id else None
        deltas: dict[str, float] = {}
        if adapter is not None:
            deltas["overall"] = round(adapter.bpc - base.bpc, 6)
            for category, score in base.per_category.items():
                if category in adapter.per_category:
                    deltas[category] = round(adapter.per_category[category].bpc - score.bpc, 6)
            if base.task_metric_name and base.task_metric is not None and adapter.task_metric is not None:
                deltas[base.task_metric_name] = round(adapter.task_metric - base.task_metric, 6)
        return TestComparison(base=base, adapter=adapter, deltas=deltas)

    def base_validation_bpc(self, task_dir: Path) -> float:
        """The base model's score on the simulator's held-back validation file of a local task folder, for
        comparison with a submission's (the agent never sees this file otherwise)."""
        cache = self.run.paths.evals_dir / "base-validation.json"
        if cache.is_file():
            return float(json.loads(cache.read_text())["bpc"])
        task_json = json.loads((task_dir / "task.json").read_text(encoding="utf-8"))
        key = task_json.get("data", {}).get("validation_set_key", "validation_set.jsonl")
        records = load_jsonl(task_dir / Path(key).name).records
        model, tokenizer = self.run.models.load()
        info = self.run.task.info
        score = flock_score(model, records, template=info.template, context_length=info.context_length,
                            tokenizer=tokenizer, max_params=info.max_params or None)
        atomic_write_text(cache, json.dumps({"bpc": score.bpc}))
        return score.bpc
