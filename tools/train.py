"""LoRA / QLoRA training on FLock data: a small loop on torch + peft, fast on CPU and GPU.

What makes it fast (measured in benchmarks/train_throughput.py against FLock's reference recipe and TRL's
SFTTrainer; results in benchmarks/results/train_throughput.json):
- batches of examples of similar length under a padded-token budget, right-padded with no attention mask (under a
  causal mask, padding at the end cannot change earlier positions), so little compute goes to padding;
- logits only at positions whose next token is a target (tools.evaluate.target_token_losses): the LM head and its
  softmax over the vocabulary are skipped for prompt tokens;
- the precision that is fastest on the device (tools.train_hardware): bf16 autocast with the frozen base weights
  stored in bf16 on GPUs and AMX CPUs; fp32 on CPUs without AMX, where bf16 matmuls are no faster and the casts
  cost time. LoRA weights and optimizer state stay fp32;
- lean forwards for LoRA projections and SiLU-gated MLPs (tools.train_fused): fewer ops, less activation memory.

The loss is FLock's: assistant tokens only (tools.templates masking). By default every example weighs the same
(``loss_weighting="example"``), as in FLock's score, which averages per-example mean losses.

Output: ``output_dir`` holds only what FLock accepts (``adapter_config.json`` whose ``base_model_name_or_path`` is
the Hub id, ``adapter_model.safetensors``); ``<output_dir>.metrics.json`` beside it holds the run's metrics.
Checkpoints (``output_dir/.checkpoints``, written atomically) let a killed run resume where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools import tracking
from tools.data import FlockRecord
from tools.evaluate import TokenBatch, length_grouped_batches, make_batch, target_token_losses
from tools.fileio import atomic_write_text
from tools.templates import ChatTemplate, TokenizedExample, get_template, tokenize_records
from tools.train_checkpoints import ADAPTER_FILES, load_checkpoint, save_adapter, save_checkpoint
from tools.train_hardware import PeakMemory, bf16_speeds_up_training, bf16_supported

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = ".checkpoints"


class TrainConfig(BaseModel):
    """Training settings: the one model used by the trainer, the agent's ``train:`` configuration section and the
    planner's overrides (a partial of it). Defaults are what the benchmark measures as "ours"; every field's
    docstring is its documentation (``synthgen config-doc``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    lora_r: Annotated[int, Field(gt=0, le=256)] = 16
    """LoRA rank."""
    lora_alpha: Annotated[int, Field(gt=0, le=1024)] = 32
    """LoRA alpha (the adapter's output is scaled by alpha / rank)."""
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Dropout on the LoRA branch."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """Modules that get LoRA weights: module names, or every linear layer."""
    learning_rate: Annotated[float, Field(gt=0, le=1e-2)] = 4e-4
    """Peak learning rate (warmup, then cosine decay)."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    """AdamW weight decay."""
    epochs: Annotated[int, Field(gt=0, le=20)] = 2
    """Passes over the training data."""
    max_steps: Annotated[int, Field(gt=0)] | None = None
    """Optimizer steps; overrides ``epochs`` when set."""
    batch_tokens: Annotated[int, Field(ge=128)] = 1024
    """Padded tokens per micro-batch (rows x longest row). An example longer than this gets a batch of its own.
    Activation memory grows with it; speed barely does beyond about a thousand tokens on CPU."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: much less memory, about a third more compute."""
    grad_accum: Annotated[int, Field(gt=0)] = 1
    """Micro-batches per optimizer step."""
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.05
    """Share of the steps spent warming the learning rate up."""
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    """The cosine schedule ends at learning_rate * min_lr_ratio."""
    max_grad_norm: Annotated[float, Field(gt=0)] | None = 1.0
    """Gradient clipping norm (None: no clipping)."""
    loss_weighting: Literal["example", "token"] = "example"
    """example: every example weighs the same, as in FLock's score; token: every target token does."""
    seed: int = 0
    """Seed for LoRA initialisation and batch order."""
    bf16: bool | None = None
    """None: bf16 autocast where it trains faster than fp32 (CUDA with bf16, CPUs with AMX; see
    tools.train_hardware)."""
    qlora: bool | None = None
    """4-bit NF4 base weights with double quantization. None: on when training on a GPU."""
    checkpoint_every: Annotated[int, Field(ge=0)] = 50
    """Save a resumable checkpoint every this many optimizer steps (0: never)."""
    max_train_tokens: Annotated[int, Field(gt=0)] | None = None
    """Stop once this many real (non-padding) tokens have been trained on."""
    max_seconds: Annotated[float, Field(gt=0)] | None = None
    """Training-time limit. From the third step on, the run is shortened to the steps that fit at the measured pace
    and the cosine schedule is re-sized to them (the learning rate still decays to its floor); the run stops at
    the first step past the limit. Not part of the run's fingerprint: a resumed run has less time left."""
    fused_ops: bool = True
    """Lean forwards for LoRA projections and SiLU-gated MLPs (tools.train_fused): same math, fewer ops, less
    activation memory. False runs peft's and transformers' own forwards."""


class TrainProgress(BaseModel):
    """Sent to the progress callback after every optimizer step."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    learning_rate: float
    real_tokens: int
    tokens_per_s: float
    elapsed_s: float


class TrainResult(BaseModel):
    """What a training run produced and how it went."""

    adapter_dir: Path
    metrics_path: Path
    hub_id: str
    template: str
    context_length: int
    config: TrainConfig
    steps: int
    total_steps: int
    epochs_completed: float
    stopped: Literal["completed", "max_steps", "max_train_tokens", "max_seconds"]
    loss_curve: list[float]
    examples: int
    skipped_examples: int
    """Examples with no target token left after truncation (nothing to learn from them)."""
    real_tokens: int
    padded_tokens: int
    target_tokens: int
    tokens_per_s: float
    """Real (non-padding) tokens per second of training-loop time."""
    train_time_s: float
    wall_time_s: float
    peak_memory_bytes: int
    peak_memory_method: str
    bf16: bool
    qlora: bool
    device: str
    resumed_from_step: int | None = None
    fingerprint: str


class TrainingOOMError(RuntimeError):
    """Training ran out of memory; the message names the settings to lower."""


ProgressCallback = Callable[[TrainProgress], None]


# ----- data --------------------------------------------------------------------------------------------------
def epoch_batches(examples: Sequence[TokenizedExample], batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """This epoch's micro-batches: similar lengths grouped under the token budget, in a seeded random order.

    Ties in length are broken randomly per epoch, so batches differ between epochs while padding stays small.
    """
    rng = random.Random(f"{seed}:{epoch}")
    keys = [(len(e), rng.random()) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: keys[i])
    batches = length_grouped_batches([len(e) for e in examples], batch_tokens, order=order)
    rng.shuffle(batches)
    return batches


def _fingerprint(hub_id: str, template: ChatTemplate, context_length: int, config: TrainConfig,
                 records: Sequence[FlockRecord], example_weights: Sequence[float] | None = None) -> str:
    digest = hashlib.sha256()
    header = {"hub_id": hub_id, "template": template.name, "context_length": context_length,
              "config": config.model_dump(mode="json", exclude={"max_seconds"})}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for record in records:
        digest.update(record.record_id.encode())
    if example_weights is not None:
        digest.update(json.dumps([round(float(w), 6) for w in example_weights]).encode())
    return digest.hexdigest()[:16]


# ----- model -------------------------------------------------------------------------------------------------
def _prepare_model(base_model: Any, hub_id: str, config: TrainConfig, device: str, use_bf16: bool,
                   use_qlora: bool) -> Any:
    """Load the base (bf16 frozen weights under bf16, NF4 under QLoRA) and wrap it with fresh LoRA layers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tools.models import load_causal_lm

    dtype = torch.bfloat16 if use_bf16 else torch.float32
    model = load_causal_lm(base_model, dtype=dtype, quantize_4bit=use_qlora, device=device, hub_id=hub_id)
    torch.manual_seed(config.seed)  # LoRA A matrices are drawn from the global RNG
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM", bias="none")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model = get_peft_model(model, lora)
    for param in peft_model.parameters():
        if param.requires_grad:
            param.data = param.data.float()  # fp32 master weights for the LoRA matrices
    if use_bf16:
        from peft.tuners.tuners_utils import BaseTunerLayer

        # Under autocast the LoRA matmuls run in bf16 anyway; peft's cast of every LoRA input to the fp32 weight
        # dtype would only add a full-size fp32 copy of each input, kept for the backward pass.
        for module in peft_model.modules():
            if isinstance(module, BaseTunerLayer):
                setattr(module, "cast_input_dtype_enabled", False)  # noqa: B010 - typed as Module attribute
    if config.fused_ops:
        from tools.train_fused import fuse_for_training

        logger.debug("lean forwards: %s", fuse_for_training(peft_model))
    peft_model.train()
    return peft_model


def _is_oom(exc: BaseException) -> bool:
    import torch

    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError | MemoryError) or "out of memory" in text or (
        "can't allocate memory" in text)


@contextmanager
def _oom_hint(config: TrainConfig, context_length: int) -> Iterator[None]:
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc):
            raise
        raise TrainingOOMError(
            f"out of memory while training ({type(exc).__name__}). Lower TrainConfig.batch_tokens "
            f"(now {config.batch_tokens}; each micro-batch holds up to that many padded tokens), set "
            f"gradient_checkpointing=True, set qlora=True to store the base weights in 4 bits, or lower the "
            f"task's context_length (now {context_length})."
        ) from exc


def _plan_steps(examples: Sequence[TokenizedExample], config: TrainConfig) -> tuple[int, int, int]:
    """(micro-batches per epoch, optimizer steps in the run, warmup steps)."""
    micro_per_epoch = len(epoch_batches(examples, config.batch_tokens, config.seed, 0))
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    if config.max_train_tokens is not None and config.max_steps is None:
        tokens_per_step = sum(len(e) for e in examples) / steps_per_epoch
        total_steps = min(total_steps, max(1, math.ceil(config.max_train_tokens / tokens_per_step)))
    warmup_steps = max(1, round(config.warmup_ratio * total_steps)) if config.warmup_ratio > 0 else 0
    return micro_per_epoch, total_steps, warmup_steps


def _lr_lambda(horizon: list[int], warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Warmup then cosine decay to ``min_ratio`` at ``horizon[0]`` steps (a list: a time limit may shorten it)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, horizon[0] - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


# ----- the loop ----------------------------------------------------------------------------------------------
def _step_loss(model: Any, batches: list[TokenBatch], weighting: str, autocast: Any,
               example_weights: Sequence[float]) -> tuple[float, int]:
    """One step's forward + backward, each example weighted by ``example_weights``; returns (mean loss, targets)."""
    import torch

    counts = [(batch.labels[:, 1:] != -100).sum(dim=1) for batch in batches]
    row_weights = [torch.tensor([float(example_weights[i]) for i in b.indices]) for b in batches]
    total_targets = int(sum(int(c.sum()) for c in counts))
    total_rows = sum(float(w[c > 0].sum()) for c, w in zip(counts, row_weights, strict=True))
    weighted_targets = sum(float((c * w).sum()) for c, w in zip(counts, row_weights, strict=True))
    loss_sum = 0.0
    for batch, per_row, row_weight in zip(batches, counts, row_weights, strict=True):
        with autocast():
            losses, rows = target_token_losses(model, batch)
        if weighting == "example":
            weights = row_weight.to(losses)[rows] / (per_row[rows].to(losses.dtype) * total_rows)
        else:
            weights = row_weight.to(losses)[rows] / weighted_targets
        loss = (losses * weights).sum()
        loss.backward()
        loss_sum += float(loss.detach())
    return loss_sum, total_targets


def train_adapter(
    base_model: str | os.PathLike[str],
    records: Sequence[FlockRecord],
    output_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    *,
    template: ChatTemplate | str,
    context_length: int,
    progress: ProgressCallback | None = None,
    resume: bool = True,
    hub_id: str | None = None,
    device: str | None = None,
    example_weights: Sequence[float] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``records`` and save it where FLock can take it.

    ``base_model`` is a Hub id, a local folder or a GGUF file (tools.models); ``hub_id`` names the Hub model it
    stands for when that cannot be inferred (written into ``adapter_config.json``). With ``resume``, a run whose
    checkpoints are in ``output_dir`` continues from the last one, and a finished run with the same data and
    settings is returned as it is. ``example_weights`` (one per record, >= 0, not all 0) weighs each record's loss.
    """
    import torch

    from tools.models import default_device, load_tokenizer, resolve_model

    config = config or TrainConfig()
    t = get_template(template)
    out = Path(output_dir)
    metrics_path = out.with_name(out.name + ".metrics.json")
    device = device or default_device()
    use_bf16 = bf16_speeds_up_training(device) if config.bf16 is None else config.bf16
    use_qlora = device.startswith("cuda") if config.qlora is None else config.qlora
    if not records:
        raise ValueError("no training records")
    if example_weights is not None and not (len(example_weights) == len(records) and min(example_weights) >= 0
                                            and 0 < sum(example_weights) < math.inf):
        raise ValueError(f"example_weights: need {len(records)} finite weights >= 0, not all 0")
    wall_start = time.perf_counter()

    resolved = resolve_model(base_model, hub_id=hub_id)
    final_hub_id = resolved.hub_id or str(resolved.path)
    if resolved.hub_id is None:
        logger.warning("no Hub id known for %s: the adapter will name the local path, which FLock rejects; "
                       "pass hub_id=", base_model)
    tokenizer = load_tokenizer(base_model)
    fingerprint = _fingerprint(final_hub_id, t, context_length, config, records, example_weights)
    if resume and metrics_path.is_file() and all((out / f).is_file() for f in ADAPTER_FILES):
        previous = TrainResult.model_validate_json(metrics_path.read_text())
        if previous.fingerprint == fingerprint:
            logger.info("adapter in %s already trained with these data and settings; reusing it", out)
            return previous

    all_examples = tokenize_records(records, tokenizer, t, context_length)
    kept = [i for i, e in enumerate(all_examples) if sum(e.target_mask[1:]) > 0]
    examples = [all_examples[i] for i in kept]
    weights = [1.0 if example_weights is None else example_weights[i] for i in kept]
    skipped = len(all_examples) - len(examples)
    if not examples:
        raise ValueError(f"none of the {len(records)} records has an assistant token within context_length "
                         f"{context_length}; nothing to train on")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    micro_per_epoch, total_steps, warmup_steps = _plan_steps(examples, config)

    checkpoints = out / CHECKPOINT_DIR
    if not resume and checkpoints.exists():
        shutil.rmtree(checkpoints)
    with PeakMemory(device) as memory, _oom_hint(config, context_length):
        model = _prepare_model(base_model, final_hub_id, config, device, use_bf16, use_qlora)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        horizon = [total_steps]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(horizon, warmup_steps, config.min_lr_ratio))

        state: dict[str, Any] = {"step": 0, "epoch": 0, "micro": 0, "real_tokens": 0, "padded_tokens": 0,
                                 "target_tokens": 0, "loss_curve": [], "train_time_s": 0.0,
                                 "fingerprint": fingerprint}
        resumed_from = None
        if resume:
            loaded = load_checkpoint(checkpoints, model, optimizer, scheduler)
            if loaded is not None:
                if loaded.get("fingerprint") != fingerprint:
                    raise ValueError(
                        f"{checkpoints} holds a checkpoint of a different run (other data or settings); "
                        "pass resume=False to start over, or use another output_dir")
                state, resumed_from = loaded, loaded["step"]
                logger.info("resuming from step %d", resumed_from)

        device_type = device.split(":")[0]

        def autocast() -> torch.autocast:
            return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=use_bf16)

        stopped: Literal["completed", "max_steps", "max_train_tokens", "max_seconds"] = "completed"
        loop_start = time.perf_counter()
        time_before = state["train_time_s"]
        step_before = state["step"]
        batches_epoch, batches = -1, []
        while state["step"] < total_steps:
            if batches_epoch != state["epoch"]:
                batches = epoch_batches(examples, config.batch_tokens, config.seed, state["epoch"])
                batches_epoch = state["epoch"]
            if state["micro"] >= len(batches):
                state["epoch"] += 1
                state["micro"] = 0
                continue
            group = batches[state["micro"]:state["micro"] + config.grad_accum]
            token_batches = [make_batch(examples, g, pad_id, device) for g in group]
            loss, targets = _step_loss(model, token_batches, config.loss_weighting, autocast, weights)
            if not math.isfinite(loss):  # checked before the update, so the saved weights stay usable
                raise FloatingPointError(f"training loss became {loss} at step {state['step'] + 1}; lower "
                                         f"TrainConfig.learning_rate (now {config.learning_rate})")
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            state["micro"] += len(group)
            state["step"] += 1
            state["real_tokens"] += sum(b.real_tokens for b in token_batches)
            state["padded_tokens"] += sum(b.padded_tokens for b in token_batches)
            state["target_tokens"] += targets
            state["loss_curve"].append(loss)
            tracking.log_metrics({"train/loss": loss, "train/learning_rate": float(scheduler.get_last_lr()[0])},
                                 state["step"])
            state["train_time_s"] = time_before + time.perf_counter() - loop_start
            if progress is not None:
                progress(TrainProgress(
                    step=state["step"], total_steps=total_steps, epoch=state["epoch"], loss=loss,
                    learning_rate=scheduler.get_last_lr()[0], real_tokens=state["real_tokens"],
                    tokens_per_s=state["real_tokens"] / max(state["train_time_s"], 1e-9),
                    elapsed_s=state["train_time_s"]))
            if config.max_train_tokens is not None and state["real_tokens"] >= config.max_train_tokens:
                stopped = "max_train_tokens"
                break
            if config.max_seconds is not None:
                if state["train_time_s"] >= config.max_seconds:
                    stopped = "max_seconds"
                    break
                done_here = state["step"] - step_before
                if done_here >= 3:
                    pace = (state["train_time_s"] - time_before) / done_here
                    fits = state["step"] + int((config.max_seconds - state["train_time_s"]) / pace)
                    if fits < total_steps:
                        total_steps = horizon[0] = max(state["step"] + 1, fits)
                        stopped = "max_seconds"
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0 \
                    and state["step"] < total_steps:
                save_checkpoint(checkpoints, model, optimizer, scheduler, state)
        if stopped == "completed" and config.max_steps is not None:
            stopped = "max_steps"
        save_adapter(model, out, final_hub_id)

    epochs_completed = state["epoch"] + state["micro"] / max(1, micro_per_epoch)
    result = TrainResult(
        adapter_dir=out, metrics_path=metrics_path, hub_id=final_hub_id, template=t.name,
        context_length=context_length, config=config, steps=state["step"], total_steps=total_steps,
        epochs_completed=round(epochs_completed, 4), stopped=stopped, loss_curve=state["loss_curve"],
        examples=len(examples), skipped_examples=skipped, real_tokens=state["real_tokens"],
        padded_tokens=state["padded_tokens"], target_tokens=state["target_tokens"],
        tokens_per_s=state["real_tokens"] / max(state["train_time_s"], 1e-9), train_time_s=state["train_time_s"],
        wall_time_s=time.perf_counter() - wall_start, peak_memory_bytes=memory.peak_bytes,
        peak_memory_method=memory.method, bf16=use_bf16, qlora=use_qlora, device=device,
        resumed_from_step=resumed_from, fingerprint=fingerprint,
    )
    atomic_write_text(metrics_path, result.model_dump_json(indent=2))
    shutil.rmtree(checkpoints, ignore_errors=True)
    return result


__all__ = [
    "ADAPTER_FILES",
    "PeakMemory",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingOOMError",
    "bf16_supported",
    "epoch_batches",
    "train_adapter",
]
