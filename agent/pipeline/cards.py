"""Hub artifacts of a run (tools/hub_cards.py): the adapter's model card, grown stage by stage, and the synthetic
data as a dataset with its card.

- train: ``adapters/<id>.card.json`` records the task, the training data and settings, the run id and versions.
- submit: the model card, with the dev scores, is written into the adapter folder as ``README.md`` and published
  with it. It is built only from what the adapter's training and dev evaluation fixed, so a submit re-run after a
  crash publishes the same bytes (the same revision, no second submission). The simulator's score is recorded after.
- finish: the final card (test scores, the simulator's, the dataset's name) goes to ``hub/<adapter id>/README.md``,
  and the run's synthetic rows with their dataset card to ``hub/dataset/``; with ``publish.dataset`` the dataset is
  published, and on the Hub the model repo's README is updated (submitted revisions keep their files).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent.pipeline.environment import TaskEnvironment
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import read_result, write_result
from agent.state import EvalSummary
from agent.toolbox import GenerateOutcome, TestComparison
from tools.data import FlockRecord
from tools.hub_cards import (
    AdapterCard,
    CardScore,
    DatasetCardInfo,
    TrainingSummary,
    write_dataset_folder,
    write_model_card,
)
from tools.models import accepted_by_flock_validators
from tools.publish import DatasetPublisher, HubPublisher, dataset_repo_name
from tools.train import TrainResult
from tools.versions import software_versions

logger = logging.getLogger(__name__)

#: The run folder's sub-folder holding the final cards and the dataset's files.
HUB_DIR = "hub"
#: The repository owner a local task's artifacts are published under (its simulator's publisher).
LOCAL_USER = "synthgen-local"
#: Training settings a card lists.
CARD_SETTINGS = ("lora_r", "lora_alpha", "target_modules", "learning_rate", "epochs", "batch_tokens", "qlora")


def _score(summary: EvalSummary, base: EvalSummary, source: str) -> list[CardScore]:
    scores = [CardScore(split=summary.split, metric="bpc", value=summary.bpc, base_value=base.bpc, source=source)]
    if summary.task_metric_name and summary.task_metric is not None:
        scores.append(CardScore(split=summary.split, metric=summary.task_metric_name, value=summary.task_metric,
                                base_value=base.task_metric, source=source))
    return scores


class HubArtifacts:
    def __init__(self, run: PipelineRun):
        self.run = run
        self.hub_dir = run.paths.root / HUB_DIR

    def owner(self) -> str:
        return os.environ.get("HF_USERNAME", "") if self.run.config.publishes_to_hub else LOCAL_USER

    # ----- the adapter's card ------------------------------------------------------------------------------------
    def _card_path(self, adapter_id: str) -> Path:
        return self.run.paths.adapters_dir / f"{adapter_id}.card.json"

    def card(self, adapter_id: str) -> AdapterCard | None:
        return read_result(self._card_path(adapter_id), AdapterCard)

    def record_training(self, adapter_id: str, dataset_version: str, result: TrainResult,
                        originals: list[FlockRecord] | None = None) -> AdapterCard:
        """The card's training facts; ``originals``: the original rows trained on (default: the train split; a
        refit adds dev and test)."""
        run, info = self.run, self.run.task.info
        synthetic = run.versions.load(dataset_version).synthetic()
        settings = result.config.model_dump(include=set(CARD_SETTINGS))
        card = AdapterCard(
            base_model=run.config.base_model, template=info.template, task_id=info.task_id,
            task_title=info.title, task_type=info.task_type, task_tags=list(run.task.plugin.hub_tags),
            context_length=info.context_length,
            max_params=info.max_params or None, run_id=run.paths.run_id, adapter_id=adapter_id,
            accepted_by_flock_validators=accepted_by_flock_validators(run.config.base_model),
            training=TrainingSummary(
                dataset_version=dataset_version,
                original_per_category=run.task.plugin.primary_counts(
                    run.task.split("train") if originals is None else originals),
                synthetic_per_category=run.task.plugin.primary_counts(synthetic),
                real_tokens=result.real_tokens, steps=result.steps, epochs_completed=result.epochs_completed,
                settings=settings),
            versions=software_versions())
        write_result(self._card_path(adapter_id), card)
        return card

    def write_publish_card(self, adapter_id: str, adapter_dir: Path, repo_id: str, dev: EvalSummary,
                           base_dev: EvalSummary, refit_of: str | None = None) -> None:
        """The card published with the adapter: training facts and dev scores only (see the module's note); a
        refit's are those of the adapter whose recipe it retrained (``refit_of``), as it learned from dev."""
        card = self.card(adapter_id)
        if card is None:
            logger.warning("no card record for adapter %s (trained before cards existed): published without one",
                           adapter_id)
            return
        source = f"this run (dev split, of {refit_of}, whose recipe this adapter retrained on every original row)" \
            if refit_of else "this run (dev split)"
        dev_scores = _score(dev, base_dev, source)
        published = card.model_copy(update={"repo_id": repo_id, "revision": None, "dataset_repo_id": None,
                                            "scores": dev_scores})
        write_result(self._card_path(adapter_id), card.with_scores(*dev_scores).model_copy(update={"repo_id": repo_id}))
        try:
            write_model_card(adapter_dir, published)
        except Exception as exc:  # the card is an extra: the adapter is published and submitted without it
            logger.warning("model card for %s not written: %s: %s", adapter_id, type(exc).__name__, exc)

    def record_submission(self, adapter_id: str, repo_id: str, revision: str, validation_bpc: float | None,
                          base_validation_bpc: float | None) -> None:
        card = self.card(adapter_id)
        if card is None:
            return
        card = card.model_copy(update={"repo_id": repo_id, "revision": revision})
        if validation_bpc is not None:
            card = card.with_scores(CardScore(split="validation", metric="bpc", value=validation_bpc,
                                              base_value=base_validation_bpc,
                                              source="FLock's validator, simulated"))
        write_result(self._card_path(adapter_id), card)

    # ----- the end of the run ------------------------------------------------------------------------------------
    def finish(self, adapter_id: str | None, comparison: TestComparison, env: TaskEnvironment) -> None:
        """Write the final model card and the dataset into ``hub/``, and publish what the configuration asks for.
        Everything here comes after the submission: a failure is logged, never fatal to the run's result."""
        try:
            dataset_repo = self._dataset(env)
            if adapter_id is not None and comparison.adapter is not None:
                self._final_card(adapter_id, comparison, dataset_repo, env)
        except Exception as exc:  # extras after the submission: the run's result stands without them
            logger.warning("hub cards: %s: %s", type(exc).__name__, exc)

    def _final_card(self, adapter_id: str, comparison: TestComparison, dataset_repo: str | None,
                    env: TaskEnvironment) -> None:
        card = self.card(adapter_id)
        if card is None or comparison.adapter is None:
            return
        card = card.with_scores(*_score(comparison.adapter, comparison.base, "this run (test split)"))
        card = card.model_copy(update={"dataset_repo_id": dataset_repo})
        write_result(self._card_path(adapter_id), card)
        folder = self.hub_dir / adapter_id
        folder.mkdir(parents=True, exist_ok=True)
        path = write_model_card(folder, card)
        if isinstance(env.publisher, HubPublisher) and card.repo_id and card.revision:
            env.publisher.update_model_card(card.repo_id, path)

    def _dataset(self, env: TaskEnvironment) -> str | None:
        """The run's synthetic rows as a dataset folder in ``hub/dataset``; published when configured."""
        run, info = self.run, self.run.task.info
        version = run.versions.load(run.versions.latest())
        pairs = [(r, p) for r, p, k in zip(version.records, version.provenance, version.kinds, strict=True)
                 if k == "synthetic"]
        if not pairs:
            return None
        outcomes = [outcome for path in sorted(run.paths.data_dir.glob("generate-*.json"))
                    if (outcome := read_result(path, GenerateOutcome)) is not None]
        rejected: dict[str, int] = {}
        rates: dict[str, list[float]] = {}
        for outcome in outcomes:
            for reason, count in outcome.rejected_per_reason.items():
                rejected[reason] = rejected.get(reason, 0) + count
            for gate, rate in outcome.dataset.acceptance.items():
                rates.setdefault(gate, []).append(rate)
        generator = run.config.generator
        repo_id = dataset_repo_name(self.owner() or LOCAL_USER, info.task_id, run.paths.run_id)
        card = DatasetCardInfo(
            pretty_name=f"SynthGen synthetic data for FLock task {info.task_id}", run_id=run.paths.run_id,
            task_id=info.task_id, task_title=info.title, task_type=info.task_type,
            license=run.config.publish.dataset_license,
            generator=f"{generator.backend}: {generator.model}" if generator.backend != "none" else
            "deterministic writers only (no model)",
            base_model=run.config.base_model, dataset_version=version.manifest.name,
            original_per_category=run.task.plugin.primary_counts(run.task.split("train")),
            rejected_per_reason=rejected,
            gate_pass_rates={g: round(sum(v) / len(v), 4) for g, v in rates.items()},
            versions=software_versions())
        folder = write_dataset_folder(self.hub_dir / "dataset", [r for r, _ in pairs], [p for _, p in pairs], card)
        if not run.config.publish.dataset:
            return None
        if not isinstance(env.publisher, DatasetPublisher):
            raise TypeError(f"{env.publisher!r} cannot publish datasets")
        published = env.publisher.publish_dataset(folder, repo_id)
        logger.info("dataset published as %s@%s", published.repo_id, published.revision)
        return published.repo_id

