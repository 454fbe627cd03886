"""What a user would pick instead of our trainer: TRL's ``SFTTrainer`` (installed TRL 1.x), tuned.

Tuned means: the LoRA rank, alpha, dropout and target modules, learning rate, schedule shape (warmup ratio, cosine
to the same floor), weight decay and gradient clipping of our ``TrainConfig``; bf16 (TRL's default) with the base
weights loaded in bf16; gradient checkpointing off (TRL turns it on by default; it costs time and this model fits);
length-grouped batches (``train_sampling_strategy="group_by_length"``); the loss on assistant tokens only.

Assistant-only loss: the rows come in pre-tokenized with FLock's template and FLock's target mask as TRL's
``assistant_masks`` column, so TRL builds its labels from them and all three recipes train on identical tokens and
targets. (``assistant_only_loss=True`` asks for a conversational dataset that TRL renders with the tokenizer's own
chat template instead.)

Batching modes (``mode``):
- ``padded``: rows padded to the longest in each batch, with an attention mask;
- ``padding_free``: each batch flattened into one row with position ids restarting per example (TRL's
  ``padding_free=True``); transformers 5 turns the restarts into a block-diagonal causal mask for SDPA on CPU;
- ``packing``: TRL's best-fit-decreasing packing into ``max_length`` rows (implies padding-free).

TRL 1.x computes the loss with its chunked LM head (no full logits tensor); on CPU it scores every position, not
only the target ones, and also computes the entropy and top-1 metrics it logs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import torch

from benchmarks.reference_recipe import name_hub_id
from tools.models import load_causal_lm
from tools.templates import TokenizedExample
from tools.train import PeakMemory, TrainConfig

SFTMode = Literal["padded", "padding_free", "packing"]


def sft_dataset(examples: list[TokenizedExample]) -> Any:
    """Pre-tokenized rows with FLock's target mask as TRL's ``assistant_masks``."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                              "assistant_masks": [e.target_mask for e in examples]})


def run_sfttrainer(model_spec: str, hub_id: str, examples: list[TokenizedExample], tokenizer: Any, out: Path,
                   context_length: int, config: TrainConfig, use_bf16: bool, *, mode: SFTMode = "padded",
                   batch_size: int = 2, epochs: int = 1, seed: int = 0) -> dict[str, Any]:
    """One ``SFTTrainer`` run of ``epochs`` passes; returns what ``run_reference`` returns."""
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM", bias="none")
    padding_free = mode == "padding_free"
    steps_per_epoch = math.ceil(len(examples) / batch_size / config.grad_accum)
    with PeakMemory("cpu") as memory:
        model = load_causal_lm(model_spec, dtype=torch.bfloat16 if use_bf16 else torch.float32, hub_id=hub_id)
        args = SFTConfig(
            per_device_train_batch_size=batch_size, gradient_accumulation_steps=config.grad_accum,
            num_train_epochs=epochs, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
            lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": config.min_lr_ratio},
            warmup_steps=max(1, round(config.warmup_ratio * steps_per_epoch * epochs)),
            max_grad_norm=config.max_grad_norm or 0.0, bf16=use_bf16, gradient_checkpointing=False,
            train_sampling_strategy="group_by_length", padding_free=padding_free, packing=mode == "packing",
            max_length=None if padding_free else context_length, output_dir=str(out), use_cpu=True,
            report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=10**6, seed=seed,
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(examples), processing_class=tokenizer,
                             peft_config=lora)
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train()
        train_time, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        trainer.save_model(str(out))
    name_hub_id(out, hub_id)
    steps = int(trainer.state.global_step)
    del trainer, model
    return {"real_tokens": epochs * sum(len(e) for e in examples), "steps": steps, "train_time_s": train_time,
            "train_cpu_s": train_cpu, "peak_bytes": memory.peak_bytes, "adapter": out}


__all__ = ["SFTMode", "run_sfttrainer", "sft_dataset"]
