"""FLock's reference training-node recipe on the installed TRL, shared by the benchmarks.

The recipe is FLock's testnet-training-node-quickstart ``demo.py`` (FLOCK_API.md 7.1): SFTTrainer, LoRA r=8 /
alpha=16 / dropout 0.05 on q_proj and v_proj, lr 2e-4, warmup_steps=100, batch 2 x gradient accumulation 2 (the
``demo.py`` defaults), FLock's dataset + collator (per-batch padding to the longest example), bf16 when the CPU has
it. Adapted to CPU: fp32 weights instead of 4-bit (bitsandbytes' paged 8-bit optimizer needs CUDA) so
``adamw_torch``; no gradient checkpointing (TRL 0.9.x, which QS pins, did not turn it on; TRL 1.x would).

``max_train_tokens`` ends training once that many real (non-padding) tokens were trained on, for comparisons at an
equal token budget: the linear schedule is sized for a few percent more steps than the budget needs on average,
and a callback stops at the first optimizer step that reaches the budget.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from tools.models import load_causal_lm
from tools.templates import SFTCollator, TokenizedExample
from tools.train import PeakMemory

#: Examples per optimizer step: per_device_train_batch_size x gradient_accumulation_steps.
EXAMPLES_PER_STEP = 2 * 2
#: Extra steps in the schedule when training to a token budget, so the budget (not the step count) ends the run.
SCHEDULE_SLACK = 1.05


def reference_lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=8, target_modules=["q_proj", "v_proj"], lora_alpha=16, lora_dropout=0.05,
                      task_type="CAUSAL_LM")


def flock_dataset(examples: list[TokenizedExample]) -> Any:
    """FLock's SFTDataset rows (input_ids, attention_mask, target_mask) as a datasets.Dataset, as TRL wants."""
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


def _name_hub_id(out: Path, hub_id: str) -> None:
    """Validators load the base model named in ``adapter_config.json``: make it the Hub id."""
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = hub_id
    (out / "adapter_config.json").write_text(json.dumps(config))


def _token_budget_stop(max_train_tokens: int) -> Any:
    from transformers import TrainerCallback

    class StopAtTokenBudget(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.num_input_tokens_seen >= max_train_tokens:
                control.should_training_stop = True
            return control

    return StopAtTokenBudget()


def run_reference(model_spec: str, hub_id: str, examples: list[TokenizedExample], pad_id: int, out: Path,
                  context_length: int, epochs: int, use_bf16: bool, *, max_train_tokens: int | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """Train with the reference recipe; ``epochs`` passes, or up to ``max_train_tokens`` real tokens when given.

    Returns real_tokens, steps, train_time_s, peak_bytes and the adapter folder (only FLock's adapter files are
    needed from it; ``adapter_config.json`` names ``hub_id``).
    """
    from trl import SFTConfig, SFTTrainer

    schedule: dict[str, Any] = {"num_train_epochs": epochs}
    if max_train_tokens is not None:
        tokens_per_step = sum(len(e) for e in examples) / math.ceil(len(examples) / EXAMPLES_PER_STEP)
        schedule = {"max_steps": max(1, math.ceil(SCHEDULE_SLACK * max_train_tokens / tokens_per_step))}
    with PeakMemory("cpu") as memory:
        model = load_causal_lm(model_spec, dtype=torch.float32, hub_id=hub_id)
        args = SFTConfig(
            per_device_train_batch_size=2, gradient_accumulation_steps=2, **schedule,
            warmup_steps=100, learning_rate=2e-4, bf16=use_bf16, logging_steps=20, output_dir=str(out),
            optim="adamw_torch", remove_unused_columns=False, max_length=context_length,
            gradient_checkpointing=False, use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
            dataset_kwargs={"skip_prepare_dataset": True}, seed=seed,
            include_num_input_tokens_seen="no" if max_train_tokens is None else "non_padding",
        )
        callbacks = [_token_budget_stop(max_train_tokens)] if max_train_tokens is not None else None
        trainer = SFTTrainer(model=model, train_dataset=flock_dataset(examples), args=args,
                             peft_config=reference_lora_config(), data_collator=FlockCollator(pad_id, context_length),
                             callbacks=callbacks)
        start = time.perf_counter()
        trainer.train()
        train_time = time.perf_counter() - start
        trainer.save_model(str(out))
    _name_hub_id(out, hub_id)
    if max_train_tokens is None:
        real = epochs * sum(len(e) for e in examples)
    else:
        real = int(trainer.state.num_input_tokens_seen)
    steps = int(trainer.state.global_step)
    del trainer, model
    return {"real_tokens": real, "steps": steps, "train_time_s": train_time, "peak_bytes": memory.peak_bytes,
            "adapter": out}


def untrained_adapter(model_spec: str, hub_id: str, out: Path, seed: int = 0) -> Path:
    """The reference recipe's LoRA adapter before any step: LoRA's B matrices start at zero, so base + adapter
    computes exactly what the base model does. It lets the base model go through the submission path."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(load_causal_lm(model_spec, dtype=torch.float32, hub_id=hub_id), reference_lora_config())
    model.save_pretrained(str(out))
    _name_hub_id(out, hub_id)
    return out
