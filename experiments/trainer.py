"""A research variant of tools.train's loop: per-row loss weights and staged batch plans (curricula).

tools.train.train_adapter trains every row once per epoch with equal weight. The experiments need three more
knobs, all expressed here as a *batch plan* fixed before training:

- a loss weight per row (synthetic rows at 0.5, say): the example-weighted loss becomes
  ``sum_i w_i * loss_i / rows`` per step, so a weight scales that row's gradient and nothing else;
- how many times each row is seen (originals for 3 passes, synthetic for 1);
- stages trained in order under one learning-rate schedule (synthetic rows first, originals last).

With all weights 1 and one stage of ``epochs`` passes, the plan is tools.train's own epochs (same seeded length
grouping per epoch), and the model, optimizer, schedule and step are tools.train's, so a plain run reproduces
train_adapter; ``tests/test_trainer.py`` checks that on a tiny model.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.data import FlockRecord
from tools.evaluate import make_batch, target_token_losses
from tools.templates import TokenizedExample, get_template, tokenize_records
from tools.train import TrainConfig, _lr_lambda, _prepare_model, _save_adapter, bf16_supported, epoch_batches


@dataclass(frozen=True)
class Stage:
    """Rows trained in one stage: ``passes[i]`` passes over row i (0 leaves it out of the stage)."""

    passes: Sequence[int]


@dataclass
class PlanResult:
    adapter_dir: Path
    steps: int
    real_tokens: int
    target_tokens: int
    seconds: float
    tokens_per_s: float
    loss_curve: list[float] = field(default_factory=list)
    passes_done: list[float] = field(default_factory=list)
    """Passes actually trained per row (the token cap may end the last pass early)."""


def stage_batches(examples: Sequence[TokenizedExample], stage: Stage, batch_tokens: int, seed: int,
                  stage_index: int) -> list[list[int]]:
    """A stage's micro-batches: pass k of the stage batches, with tools.train's length grouping, every row that
    has more than k passes; the passes follow one another (as epochs do)."""
    batches: list[list[int]] = []
    most = max(stage.passes, default=0)
    for k in range(most):
        members = [i for i, n in enumerate(stage.passes) if n > k]
        if not members:
            continue
        sub = [examples[i] for i in members]
        epoch = k if stage_index == 0 else 1000 * stage_index + k
        batches += [[members[j] for j in batch] for batch in epoch_batches(sub, batch_tokens, seed, epoch)]
    return batches


def plan_batches(examples: Sequence[TokenizedExample], stages: Sequence[Stage], batch_tokens: int, seed: int,
                 max_train_tokens: int | None) -> list[list[int]]:
    """All stages' micro-batches in order, cut at the first batch that reaches ``max_train_tokens`` real tokens."""
    batches: list[list[int]] = []
    for s, stage in enumerate(stages):
        if len(stage.passes) != len(examples):
            raise ValueError(f"stage {s} gives passes for {len(stage.passes)} rows, there are {len(examples)}")
        batches += stage_batches(examples, stage, batch_tokens, seed, s)
    if max_train_tokens is None:
        return batches
    kept: list[list[int]] = []
    total = 0
    for batch in batches:
        kept.append(batch)
        total += sum(len(examples[i]) for i in batch)
        if total >= max_train_tokens:
            break
    return kept


def tokenize(records: Sequence[FlockRecord], tokenizer: Any, template: str, context_length: int
             ) -> list[TokenizedExample]:
    examples = tokenize_records(records, tokenizer, get_template(template), context_length)
    empty = [i for i, e in enumerate(examples) if sum(e.target_mask[1:]) == 0]
    if empty:
        raise ValueError(f"rows {empty[:5]} have no target token within context_length {context_length}")
    return examples


def train_plan(weights_path: str, hub_id: str, examples: Sequence[TokenizedExample], weights: Sequence[float],
               stages: Sequence[Stage], output_dir: Path, config: TrainConfig, pad_id: int,
               max_train_tokens: int | None = None) -> PlanResult:
    """Train a fresh LoRA adapter on the batch plan and save it (FLock's adapter files) to ``output_dir``."""
    import torch

    if len(weights) != len(examples):
        raise ValueError(f"{len(weights)} weights for {len(examples)} rows")
    started = time.perf_counter()
    random.seed(config.seed)
    batches = plan_batches(examples, stages, config.batch_tokens, config.seed, max_train_tokens)
    if not batches:
        raise ValueError("the batch plan is empty")
    total_steps = math.ceil(len(batches) / config.grad_accum)
    warmup = max(1, round(config.warmup_ratio * total_steps)) if config.warmup_ratio > 0 else 0
    use_bf16 = bf16_supported("cpu") if config.bf16 is None else config.bf16
    model = _prepare_model(weights_path, hub_id, config, "cpu", use_bf16, False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda([total_steps], warmup, config.min_lr_ratio))
    weight_tensor = torch.tensor(list(weights), dtype=torch.float32)
    seen = [0.0] * len(examples)
    curve: list[float] = []
    real = targets = 0
    for step in range(total_steps):
        group = batches[step * config.grad_accum:(step + 1) * config.grad_accum]
        token_batches = [make_batch(examples, g, pad_id, "cpu") for g in group]
        rows_in_step = sum(len(g) for g in group)
        step_loss = 0.0
        for batch in token_batches:
            per_row = (batch.labels[:, 1:] != -100).sum(dim=1)
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=use_bf16):
                losses, rows = target_token_losses(model, batch)
            row_weight = weight_tensor[torch.tensor(batch.indices)][rows.cpu()]
            loss = (losses * row_weight.to(losses.dtype) / (per_row[rows].to(losses.dtype) * rows_in_step)).sum()
            loss.backward()
            step_loss += float(loss.detach())
            real += batch.real_tokens
            targets += int(per_row.sum())
            for i in batch.indices:
                seen[i] += 1
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"loss {step_loss} at step {step + 1}")
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        curve.append(step_loss)
        if (step + 1) % 50 == 0 or step + 1 == total_steps:
            elapsed = time.perf_counter() - started
            print(f"  step {step + 1}/{total_steps} loss {statistics.fmean(curve[-50:]):.4f} "
                  f"{real / elapsed:.0f} tok/s", flush=True)
    _save_adapter(model, output_dir, hub_id)
    seconds = time.perf_counter() - started
    return PlanResult(adapter_dir=output_dir, steps=total_steps, real_tokens=real, target_tokens=targets,
                      seconds=round(seconds, 1), tokens_per_s=round(real / max(seconds, 1e-9), 1),
                      loss_curve=curve, passes_done=seen)
