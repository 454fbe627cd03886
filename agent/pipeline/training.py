"""The train stage: a fresh LoRA adapter from the base model on a dataset version, with the configured training
settings and the planner's overrides. The adapter is named by its data and settings, and the trainer resumes
from its checkpoints, so a re-run finishes the same adapter."""

from __future__ import annotations

import re
import time

from agent import progress
from agent.pipeline.cards import HubArtifacts
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import content_digest
from agent.state import AdapterInfo, TrainOverrides
from tools import tracking
from tools.train import TrainConfig, TrainProgress, train_adapter

#: Loss points an AdapterInfo keeps (the trainer logs one per step).
LOSS_CURVE_POINTS = 200
_ADAPTER_ID = re.compile(r"^a(\d+)-")


def adapter_iteration(adapter_id: str) -> int:
    """The round an adapter was trained in (its id is ``a<round>-<digest>``, see :meth:`Trainer.train`)."""
    found = _ADAPTER_ID.match(adapter_id)
    return int(found.group(1)) if found else 0


def training_settings(configured: TrainConfig, overrides: TrainOverrides | None, *, seed: int,
                      max_train_tokens: int, max_seconds: float | None) -> TrainConfig:
    """The settings of one training: the configured ones, changed by the planner's overrides (a new rank brings
    alpha = 2 x rank with it), with the run's seed and what is left of the budget."""
    changes = overrides.model_dump(exclude_none=True) if overrides is not None else {}
    if "lora_r" in changes:
        changes["lora_alpha"] = 2 * changes["lora_r"]
    return configured.model_copy(update={**changes, "seed": seed, "max_train_tokens": max(1, max_train_tokens),
                                         "max_seconds": max_seconds})


class Trainer:
    def __init__(self, run: PipelineRun):
        self.run = run

    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        run = self.run
        settings = training_settings(run.config.train, overrides, seed=run.config.seed,
                                     max_train_tokens=max_train_tokens, max_seconds=max_seconds)
        # The time limit depends on when the step runs (a resume has less left): not part of the adapter's identity.
        identity = settings.model_dump(exclude={"max_seconds"})
        adapter_id = f"a{iteration}-{content_digest({'data': dataset_version, 'config': identity}, 8)}"
        records = run.versions.load(dataset_version).records
        info = run.task.info
        started = time.time()
        with progress.step(f"train {adapter_id}", None) as advance:
            steps_reported = [0]

            def on_progress(step: TrainProgress) -> None:
                advance(step.step - steps_reported[0], total=step.total_steps)
                steps_reported[0] = step.step

            with tracking.current(run.tracker, prefix=f"{adapter_id}/"):  # the trainer's step curve
                result = train_adapter(run.models.weights, records, run.paths.adapters_dir / adapter_id, settings,
                                       template=info.template, context_length=info.context_length,
                                       progress=on_progress, resume=True, hub_id=run.config.base_model)
        run.tracker.log({"train/real_tokens": result.real_tokens, "train/steps": result.steps,
                         "train/tokens_per_s": result.tokens_per_s, "train/seconds": result.train_time_s,
                         "train/final_loss": result.loss_curve[-1] if result.loss_curve else float("nan")},
                        iteration)
        HubArtifacts(run).record_training(adapter_id, dataset_version, result)
        curve = result.loss_curve
        if len(curve) > LOSS_CURVE_POINTS:
            stride = len(curve) / LOSS_CURVE_POINTS
            curve = [curve[int(i * stride)] for i in range(LOSS_CURVE_POINTS)]
        return AdapterInfo(adapter_id=adapter_id, iteration=iteration, dataset_version=dataset_version,
                           path=str(result.adapter_dir), train_tokens=result.real_tokens,
                           final_loss=result.loss_curve[-1] if result.loss_curve else None,
                           loss_curve=[round(x, 5) for x in curve],
                           seconds=round(result.wall_time_s or time.time() - started, 2))
