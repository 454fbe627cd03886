"""FLock's reference training-node recipe on the installed stack, shared by the benchmarks.

FLock's testnet-training-node-quickstart trains with ``demo.py``'s ``train_lora`` (FLOCK_API.md 7.1): TRL 0.9.x
``SFTTrainer`` over FLock's ``SFTDataset`` + ``SFTDataCollator`` (per-batch padding to the longest example), LoRA
on q_proj and v_proj, ``warmup_steps=100``, ``learning_rate=2e-4``, ``bf16=True``, ``optim="paged_adamw_8bit"``, a
4-bit NF4 base. Two sets of per-model settings exist:

- ``FULL_AUTOMATION``: what its automated path (``full_automation.py``) runs, ``training_args.yaml``'s entry for
  Qwen/Qwen1.5-0.5B: batch 1 x gradient accumulation 8, LoRA r=8 / alpha=16 / dropout 0.1, 1 epoch;
- ``DEMO``: ``demo.py``'s ``__main__`` defaults: batch 2 x gradient accumulation 2, r=8 / alpha=16 / dropout 0.05,
  3 epochs.

How it is run here, and why:
- TRL 0.9.x (which the quickstart pins, with transformers <= 4.45) does not override the training step of
  transformers' ``Trainer``: with a ready dataset and collator its ``SFTTrainer`` is ``Trainer`` over
  ``get_peft_model(model, lora)``, whose loss is the model's own (full-vocabulary logits at every position). The
  installed TRL 1.x would add a chunked LM head FLock's code does not have, so this runs ``Trainer`` itself.
- transformers <= 4.45 averaged each micro-batch's own mean loss over the accumulation steps; 5.x weights tokens
  across them. ``model_accepts_loss_kwargs = False`` restores the old rule.
- CPU adaptations: fp32 base weights instead of 4-bit (bitsandbytes' 4-bit saves memory, not time, on CPU),
  ``adamw_torch`` instead of ``paged_adamw_8bit`` (paged optimizers need CUDA); ``bf16=True`` (autocast) as in the
  recipe where the CPU has bf16 instructions; no gradient checkpointing (the recipe does not turn it on).

``max_train_tokens`` ends training once that many real (non-padding) tokens were trained on, for comparisons at an
equal token budget: the linear schedule is sized for a few percent more steps than the budget needs on average,
and a callback stops at the first optimizer step that reaches the budget.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tools.models import load_causal_lm
from tools.templates import SFTCollator, TokenizedExample
from tools.train import PeakMemory

#: Extra steps in the schedule when training to a token budget, so the budget (not the step count) ends the run.
SCHEDULE_SLACK = 1.05


@dataclass(frozen=True)
class ReferenceRecipe:
    """One of the quickstart's per-model training settings (``LoraTrainingArguments``)."""

    name: str
    source: str
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    num_train_epochs: int
    lora_rank: int
    lora_alpha: int
    lora_dropout: float

    @property
    def examples_per_step(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps


FULL_AUTOMATION = ReferenceRecipe("full_automation", "full_automation.py with training_args.yaml (Qwen1.5-0.5B)",
                                  per_device_train_batch_size=1, gradient_accumulation_steps=8, num_train_epochs=1,
                                  lora_rank=8, lora_alpha=16, lora_dropout=0.1)
DEMO = ReferenceRecipe("demo", "demo.py __main__ defaults", per_device_train_batch_size=2,
                       gradient_accumulation_steps=2, num_train_epochs=3, lora_rank=8, lora_alpha=16,
                       lora_dropout=0.05)
#: Fixed in ``train_lora`` whatever the per-model settings.
WARMUP_STEPS = 100
LEARNING_RATE = 2e-4


def reference_lora_config(recipe: ReferenceRecipe = DEMO) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=recipe.lora_rank, target_modules=["q_proj", "v_proj"], lora_alpha=recipe.lora_alpha,
                      lora_dropout=recipe.lora_dropout, task_type="CAUSAL_LM")


def flock_dataset(examples: list[TokenizedExample]) -> Any:
    """FLock's SFTDataset rows (input_ids, attention_mask, target_mask) as a datasets.Dataset."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [e.input_ids for e in examples],
                              "attention_mask": [e.attention_mask for e in examples],
                              "target_mask": [e.target_mask for e in examples]})


class FlockCollator:
    """FLock's SFTDataCollator over dataset rows."""

    def __init__(self, pad_id: int, context_length: int):
        self.collate = SFTCollator(pad_id, context_length)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.collate([TokenizedExample(r["input_ids"], r["target_mask"]) for r in rows])


def name_hub_id(out: Path, hub_id: str) -> None:
    """Validators load the base model named in ``adapter_config.json``: make it the Hub id."""
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = hub_id
    (out / "adapter_config.json").write_text(json.dumps(config))


def token_budget_stop(max_train_tokens: int) -> Any:
    """A Trainer callback that stops at the first optimizer step past ``max_train_tokens`` real tokens."""
    from transformers import TrainerCallback

    class StopAtTokenBudget(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.num_input_tokens_seen >= max_train_tokens:
                control.should_training_stop = True
            return control

    return StopAtTokenBudget()


def run_reference(model_spec: str, hub_id: str, examples: list[TokenizedExample], pad_id: int, out: Path,
                  context_length: int, epochs: int, use_bf16: bool, *, max_train_tokens: int | None = None,
                  seed: int = 0, recipe: ReferenceRecipe = DEMO) -> dict[str, Any]:
    """Train with ``recipe``; ``epochs`` passes, or up to ``max_train_tokens`` real tokens when given.

    Returns real_tokens, steps, train_time_s, train_cpu_s (process CPU time), peak_bytes and the adapter folder
    (only FLock's adapter files are needed from it; ``adapter_config.json`` names ``hub_id``).
    """
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    schedule: dict[str, Any] = {"num_train_epochs": epochs}
    if max_train_tokens is not None:
        tokens_per_step = sum(len(e) for e in examples) / math.ceil(len(examples) / recipe.examples_per_step)
        schedule = {"max_steps": max(1, math.ceil(SCHEDULE_SLACK * max_train_tokens / tokens_per_step))}
    with PeakMemory("cpu") as memory:
        model = load_causal_lm(model_spec, dtype=torch.float32, hub_id=hub_id)
        peft_model = get_peft_model(model, reference_lora_config(recipe))
        args = TrainingArguments(
            per_device_train_batch_size=recipe.per_device_train_batch_size,
            gradient_accumulation_steps=recipe.gradient_accumulation_steps, **schedule,
            warmup_steps=WARMUP_STEPS, learning_rate=LEARNING_RATE, bf16=use_bf16, logging_steps=20,
            output_dir=str(out), optim="adamw_torch", remove_unused_columns=False, gradient_checkpointing=False,
            use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, seed=seed,
            include_num_input_tokens_seen="no" if max_train_tokens is None else "non_padding",
        )
        callbacks = [token_budget_stop(max_train_tokens)] if max_train_tokens is not None else None
        trainer = Trainer(model=peft_model, args=args, train_dataset=flock_dataset(examples),
                          data_collator=FlockCollator(pad_id, context_length), callbacks=callbacks)
        trainer.model_accepts_loss_kwargs = False  # transformers <= 4.45: mean of micro-batch means
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train()
        train_time, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        trainer.save_model(str(out))
    name_hub_id(out, hub_id)
    if max_train_tokens is None:
        real = epochs * sum(len(e) for e in examples)
    else:
        real = int(trainer.state.num_input_tokens_seen)
    steps = int(trainer.state.global_step)
    del trainer, peft_model, model
    return {"real_tokens": real, "steps": steps, "train_time_s": train_time, "train_cpu_s": train_cpu,
            "peak_bytes": memory.peak_bytes, "adapter": out}


def untrained_adapter(model_spec: str, hub_id: str, out: Path, seed: int = 0) -> Path:
    """The reference recipe's LoRA adapter before any step: LoRA's B matrices start at zero, so base + adapter
    computes exactly what the base model does. It lets the base model go through the submission path."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(load_causal_lm(model_spec, dtype=torch.float32, hub_id=hub_id), reference_lora_config())
    model.save_pretrained(str(out))
    name_hub_id(out, hub_id)
    return out
