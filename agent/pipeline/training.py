"""The train stage: a fresh LoRA adapter from the base model on a dataset version, with the configured training
settings and the planner's overrides, including the data mix (the synthetic rows' loss weight, passes over the
original rows); and the final refit of a recipe on every original row. An adapter is named by its data and
settings, and the trainer resumes from its checkpoints, so a re-run finishes the same adapter."""

from __future__ import annotations

import re
from typing import Any

from agent import progress
from agent.pipeline.cards import HubArtifacts
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import content_digest
from agent.state import PLANNER_MIX_FIELDS, AdapterInfo, LearningSettings, TrainOverrides, override_values
from tools import tracking
from tools.data import FlockRecord
from tools.datastore import DatasetVersion
from tools.train import TrainConfig, TrainProgress, train_adapter

#: Loss points an AdapterInfo keeps (the trainer logs one per step).
LOSS_CURVE_POINTS = 200
_ADAPTER_ID = re.compile(r"^a(\d+)-")


def adapter_iteration(adapter_id: str) -> int:
    """The round an adapter was trained in (its id is ``a<round>-<digest>``, see :meth:`Trainer.train`)."""
    found = _ADAPTER_ID.match(adapter_id)
    return int(found.group(1)) if found else 0


def trainer_overrides(overrides: TrainOverrides | None) -> dict[str, Any]:
    """The overrides that change the trainer's settings (the rest set the data mix)."""
    return {k: v for k, v in override_values(overrides).items() if k not in PLANNER_MIX_FIELDS}


def training_settings(configured: TrainConfig, overrides: TrainOverrides | None, *, seed: int,
                      max_train_tokens: int, max_seconds: float | None) -> TrainConfig:
    """The settings of one training: the configured ones, changed by the planner's overrides (a new rank brings
    alpha = 2 x rank with it), with the run's seed and what is left of the budget."""
    changes = trainer_overrides(overrides)
    if "lora_r" in changes:
        changes["lora_alpha"] = 2 * changes["lora_r"]
    return configured.model_copy(update={**changes, "seed": seed, "max_train_tokens": max(1, max_train_tokens),
                                         "max_seconds": max_seconds})


def data_mix(learning: LearningSettings, overrides: TrainOverrides | None) -> tuple[float, int]:
    """(synthetic rows' loss weight, passes over the original rows) of a training."""
    values = override_values(overrides)
    return (float(values.get("synthetic_weight", learning.synthetic_weight)),
            int(values.get("original_epochs", learning.original_epochs)))


def mixed_rows(originals: list[FlockRecord], synthetic: list[FlockRecord], synthetic_weight: float,
               original_epochs: int) -> tuple[list[FlockRecord], list[float]]:
    """The rows one training sees and their loss weights: every original row ``original_epochs`` times (at weight
    1), then every synthetic row once at ``synthetic_weight``."""
    rows = originals * original_epochs + synthetic
    return rows, [1.0] * (len(originals) * original_epochs) + [synthetic_weight] * len(synthetic)


def _split(version: DatasetVersion) -> tuple[list[FlockRecord], list[FlockRecord]]:
    originals = [r for r, k in zip(version.records, version.kinds, strict=True) if k == "base"]
    return originals, version.synthetic()


class Trainer:
    def __init__(self, run: PipelineRun):
        self.run = run

    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        originals, synthetic = _split(self.run.versions.load(dataset_version))
        return self._train(f"a{iteration}", dataset_version, iteration, originals, synthetic, overrides,
                           max_train_tokens, max_seconds)

    def refit(self, refit_of: str, dataset_version: str, overrides: TrainOverrides | None, max_train_tokens: int,
              max_seconds: float | None = None) -> AdapterInfo:
        """The recipe of ``refit_of`` on every original row (train, dev and test) plus the version's synthetic
        rows: FLock validates on its own held-out file, so the dev and test rows are data to learn from."""
        task = self.run.task
        _, synthetic = _split(self.run.versions.load(dataset_version))
        originals = task.split("train") + task.split("dev") + task.split("test")
        adapter = self._train("refit", dataset_version, 0, originals, synthetic, overrides, max_train_tokens,
                              max_seconds, extra_identity={"refit_of": refit_of})
        return adapter.model_copy(update={"refit_of": refit_of})

    def _train(self, prefix: str, dataset_version: str, iteration: int, originals: list[FlockRecord],
               synthetic: list[FlockRecord], overrides: TrainOverrides | None, max_train_tokens: int,
               max_seconds: float | None, extra_identity: dict[str, Any] | None = None) -> AdapterInfo:
        run = self.run
        settings = training_settings(run.config.train, overrides, seed=run.config.seed,
                                     max_train_tokens=max_train_tokens, max_seconds=max_seconds)
        weight, original_epochs = data_mix(run.config.learning, overrides)
        # The time limit depends on when the step runs (a resume has less left): not part of the adapter's identity.
        # The data mix is part of it only when it is not the plain one, so plain adapters keep their names.
        identity: dict[str, Any] = {"data": dataset_version, "config": settings.model_dump(exclude={"max_seconds"}),
                                    **(extra_identity or {})}
        if (weight, original_epochs) != (1.0, 1):
            identity["mix"] = [weight, original_epochs]
        adapter_id = f"{prefix}-{content_digest(identity, 8)}"
        rows, weights = mixed_rows(originals, synthetic, weight, original_epochs)
        info = run.task.info
        started = run.clock()
        with progress.step(f"train {adapter_id}", None) as advance:
            steps_reported = [0]

            def on_progress(step: TrainProgress) -> None:
                advance(step.step - steps_reported[0], total=step.total_steps)
                steps_reported[0] = step.step

            with tracking.current(run.tracker, prefix=f"{adapter_id}/"):  # the trainer's step curve
                result = train_adapter(run.models.weights, rows, run.paths.adapters_dir / adapter_id, settings,
                                       template=info.template, context_length=info.context_length,
                                       progress=on_progress, resume=True, hub_id=run.config.base_model,
                                       example_weights=weights if weight != 1.0 else None)
        run.tracker.log({"train/real_tokens": result.real_tokens, "train/steps": result.steps,
                         "train/tokens_per_s": result.tokens_per_s, "train/seconds": result.train_time_s,
                         "train/final_loss": result.loss_curve[-1] if result.loss_curve else float("nan")},
                        iteration)
        HubArtifacts(run).record_training(adapter_id, dataset_version, result, originals)
        curve = result.loss_curve
        if len(curve) > LOSS_CURVE_POINTS:
            stride = len(curve) / LOSS_CURVE_POINTS
            curve = [curve[int(i * stride)] for i in range(LOSS_CURVE_POINTS)]
        return AdapterInfo(adapter_id=adapter_id, iteration=iteration, dataset_version=dataset_version,
                           path=str(result.adapter_dir), train_tokens=result.real_tokens,
                           final_loss=result.loss_curve[-1] if result.loss_curve else None,
                           loss_curve=[round(x, 5) for x in curve],
                           seconds=round(run.clock() - started, 2),
                           overrides=trainer_overrides(overrides),
                           synthetic_weight=weight, original_epochs=original_epochs, examples=len(rows))
