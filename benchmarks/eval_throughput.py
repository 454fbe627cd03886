"""Evaluation throughput: FLock's own scoring loop against ``tools.evaluate.flock_score``, and the task metric's
decoding as it was against as it is, side by side in one process, alternating rounds.

BPC (the demo tasks' validation files, SmolLM2-135M-Instruct, fp32 on CPU like the CPU validator):
  validator_loop  FLock's validator (FLOCK_API.md 9.2): the examples tokenized by its template, transformers'
                  ``Trainer.evaluate`` with ``per_device_eval_batch_size=1`` and FLock's collator, then
                  BPC = eval_loss * T / ln 2 / B. Each example's loss is recorded as the loop computes it.
  ours            ``flock_score``: length-sorted batches, the LM head only where the next token is scored, shared
                  prefixes (system prompt + schema, tool lists) run once.
  ours_no_prefix  ``flock_score(share_prefixes=False)``: the same without prefix sharing (the breakdown).
Per-example losses, eval_loss and BPC are compared (relative difference, at most 1e-6 required); the bf16 check
scores once with bf16 weights to show whether bf16 keeps that equality.

Task metric (the demo's dev split, as the agent splits it: stratified by category, 12% dev, seed 0; both bundled
tasks; greedy decoding, 128 new tokens; the task's headline metric as the agent's evaluation computes it):
  before          ``task_metrics`` as it was (commit bf1dea8): left-padded ``model.generate`` batches of 16 sorted
                  by prompt length, every record's last answer decoded whatever the metric scores.
  ours            ``task_metrics`` now (tools.decoding: shared prefixes, rows that stop leave the batch, batches of
                  32, only what the metric scores).
Predictions are compared one by one; the metric values must agree.

    python benchmarks/eval_throughput.py                # both parts, 3 rounds
    python benchmarks/eval_throughput.py --part bpc     # one part (the other part's figures in the file are kept)
    python benchmarks/eval_throughput.py --quick        # a smoke run: few examples, 1 round, not written
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measurement import Timed, alternating_rounds, machine_record, sample_load  # noqa: E402
from tools.data import FlockRecord, SplitFractions, load_jsonl, stratified_split  # noqa: E402
from tools.evaluate import bpc_from, example_losses, flock_score, prompt_ids, target_bytes, task_metrics  # noqa: E402
from tools.models import DEFAULT_MODEL, load_causal_lm, load_tokenizer  # noqa: E402
from tools.tasks import detect_plugin, get_plugin  # noqa: E402
from tools.templates import SFTCollator, get_template, tokenize_records  # noqa: E402

DEMO = ROOT / "tools" / "demo_tasks"
TASKS = {"text2sql": DEMO / "text2sql", "function_calling": DEMO / "function_calling"}
RESULTS = ROOT / "benchmarks" / "results" / "eval_throughput.json"
TEMPLATE = "qwen1.5"
CONTEXT_LENGTH = 1024  # the demo tasks' context_length


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


# ----- BPC ---------------------------------------------------------------------------------------------------
def validator_loop(model: Any, tokenizer: Any, records: Sequence[FlockRecord]) -> dict[str, Any]:
    """FLock's validator scoring loop on CPU: Trainer.evaluate, batch size 1, fp32; per-example losses recorded."""
    import torch
    from transformers import Trainer, TrainingArguments

    examples = tokenize_records(records, tokenizer, TEMPLATE, CONTEXT_LENGTH)
    tokens = sum(e.num_targets for e in examples)
    nbytes = sum(target_bytes(e, tokenizer) for e in examples)
    losses: list[float] = []

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(examples)

        def __getitem__(self, i: int) -> Any:
            return examples[i]

    class RecordingTrainer(Trainer):
        def prediction_step(self, *args: Any, **kwargs: Any) -> Any:
            loss, logits, labels = super().prediction_step(*args, **kwargs)
            losses.append(float(loss))
            return loss, logits, labels

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_eval_batch_size=1, use_cpu=True, fp16=False,
                                 report_to=[], remove_unused_columns=False)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        trainer = RecordingTrainer(model=model, args=args, eval_dataset=Rows(),
                                   data_collator=SFTCollator(pad, CONTEXT_LENGTH))
        eval_loss = float(trainer.evaluate()["eval_loss"])
    bpc, _ = bpc_from(eval_loss, tokens, nbytes)
    return {"eval_loss": eval_loss, "bpc": bpc, "losses": losses}


def bpc_part(model: Any, tokenizer: Any, rounds: int, limit: int | None) -> dict[str, Any]:
    return {task: bpc_of_task(model, tokenizer, task, load_jsonl(folder / "validation_set.jsonl").records[:limit],
                              rounds) for task, folder in TASKS.items()}


def bpc_of_task(model: Any, tokenizer: Any, task: str, records: list[FlockRecord], rounds: int) -> dict[str, Any]:
    examples = tokenize_records(records, tokenizer, TEMPLATE, CONTEXT_LENGTH)
    pad = tokenizer.pad_token_id
    print(f"\nBPC, {task}: {len(records)} validation examples, {sum(len(e) for e in examples)} tokens", flush=True)

    def ours(share: bool = True) -> Any:
        return flock_score(model, records, template=TEMPLATE, context_length=CONTEXT_LENGTH, tokenizer=tokenizer,
                           share_prefixes=share)

    candidates = {"validator_loop": lambda: validator_loop(model, tokenizer, records),
                  "ours": ours, "ours_no_prefix": lambda: ours(False)}
    timings = alternating_rounds(candidates, rounds, report=_print_round)
    reference = timings["validator_loop"][-1].result
    score = timings["ours"][-1].result
    per_example = example_losses(model, examples, pad)
    per_example_no_prefix = example_losses(model, examples, pad, share_prefixes=False)
    bf16 = _bf16_losses(model, examples, pad)

    def worst(losses: list[float]) -> float:
        return max(relative(a, b) for a, b in zip(losses, reference["losses"], strict=True))

    equality = {"max_relative_example_loss": worst(per_example),
                "max_relative_example_loss_no_prefix": worst(per_example_no_prefix),
                "relative_eval_loss": relative(score.eval_loss, reference["eval_loss"]),
                "relative_bpc": relative(score.bpc, reference["bpc"]),
                "bf16_max_relative_example_loss": worst(bf16)}
    medians = {name: statistics.median(t.seconds for t in runs) for name, runs in timings.items()}
    out = {
        "examples": len(records), "tokens": sum(len(e) for e in examples),
        "bpc_validator": reference["bpc"], "bpc_ours": score.bpc, "eval_loss_validator": reference["eval_loss"],
        "equality": equality,
        "equal_within_1e-6": max(v for k, v in equality.items() if not k.startswith("bf16")) <= 1e-6,
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "ratio_vs_validator_loop": round(medians["validator_loop"] / medians["ours"], 2),
        "ratio_no_prefix_vs_validator_loop": round(medians["validator_loop"] / medians["ours_no_prefix"], 2),
        "rounds": _rounds(timings),
    }
    print(f"{task}: ours {out['ratio_vs_validator_loop']}x the validator loop (without prefix sharing "
          f"{out['ratio_no_prefix_vs_validator_loop']}x); equality "
          f"{json.dumps({k: f'{v:.1e}' for k, v in equality.items()})}", flush=True)
    return out


def _bf16_losses(model: Any, examples: Sequence[Any], pad: int) -> list[float]:
    import copy

    import torch

    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    try:
        return example_losses(bf16, examples, pad)
    finally:
        del bf16


# ----- task metric -------------------------------------------------------------------------------------------
def dev_split(folder: Path) -> tuple[str, list[FlockRecord], list[str], str]:
    """The agent's dev split of a demo task (agent/pipeline/task.py with the default settings)."""
    from agent.config import EvalSettings, RunConfig

    settings = EvalSettings()
    records = load_jsonl(folder / "training_set.jsonl", strict=False).records
    plugin = detect_plugin(records)
    fractions = SplitFractions(train=1 - settings.dev_fraction - settings.test_fraction,
                               dev=settings.dev_fraction, test=settings.test_fraction)
    splits = stratified_split(records, category=lambda r: plugin.categorize(r).primary, key=lambda r: r.record_id,
                              fractions=fractions, seed=RunConfig.model_fields["seed"].default)
    fitted = get_plugin(plugin.name).fit(records)
    categories = [fitted.categorize(r).primary for r in splits.dev]
    return plugin.name, splits.dev, categories, fitted.headline_metric


def generate_predictions_before(model: Any, tokenizer: Any, records: Sequence[FlockRecord], max_new_tokens: int = 128,
                                batch_size: int = 16) -> list[str]:
    """tools.evaluate.generate_predictions as it was (commit bf1dea8): left-padded batches sorted by prompt
    length, ``model.generate`` until every row of a batch has stopped."""
    import torch

    t = get_template(TEMPLATE)
    prompts = [prompt_ids(r, tokenizer, t) for r in records]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids: set[int] = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if t.stop_word:
        stop_token = tokenizer.convert_tokens_to_ids(t.stop_word)
        if isinstance(stop_token, int) and stop_token != tokenizer.unk_token_id:
            stop_ids.add(stop_token)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            attention[row, width - len(prompts[i]):] = 1
        with torch.inference_mode():
            generated = model.generate(input_ids=ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                       do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=sorted(stop_ids))
        for row, i in enumerate(chunk):
            text = str(tokenizer.decode(generated[row, width:], skip_special_tokens=True))
            if t.stop_word and t.stop_word in text:
                text = text.split(t.stop_word, 1)[0]
            outputs[i] = text.strip()
    return outputs


def task_part(model: Any, tokenizer: Any, rounds: int, limit: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for folder in TASKS.values():
        task_type, records, categories, headline = dev_split(folder)
        out[task_type] = task_metric_of_task(model, tokenizer, task_type, records[:limit], categories[:limit],
                                             headline, rounds)
    return out


def task_metric_of_task(model: Any, tokenizer: Any, task_type: str, records: list[FlockRecord],
                        categories: list[str], headline: str, rounds: int) -> dict[str, Any]:
    headline_on_probes = get_plugin(task_type).metric(headline).on_probes
    print(f"\ntask metric, {task_type}: {len(records)} dev records, headline {headline}", flush=True)

    def before() -> Any:
        if headline_on_probes:  # it decoded every record's last answer too, which this metric does not score
            generate_predictions_before(model, tokenizer, records)
        return task_metrics(model, tokenizer, records, template=TEMPLATE, task_type=task_type, categories=categories,
                            metrics=[headline], answer=lambda batch: generate_predictions_before(model, tokenizer,
                                                                                                 batch))

    def ours() -> Any:
        return task_metrics(model, tokenizer, records, template=TEMPLATE, task_type=task_type, categories=categories,
                            metrics=[headline])

    timings = alternating_rounds({"before": before, "ours": ours}, rounds, report=_print_round)
    old, new = timings["before"][-1].result, timings["ours"][-1].result
    old_answers = old.predictions + old.probe_predictions
    new_answers = new.predictions + new.probe_predictions
    differ = [i for i, (a, b) in enumerate(zip(old_answers, new_answers, strict=True)) if a != b]
    medians = {name: statistics.median(t.seconds for t in runs) for name, runs in timings.items()}
    out = {
        "dev_records": len(records), "decoded": len(new_answers), "headline_metric": headline,
        "metric_before": old.overall[headline], "metric_ours": new.overall[headline],
        "same_metric": old.overall == new.overall and old.per_category == new.per_category,
        "predictions_differing": len(differ),
        "differences": [{"index": i, "before": old_answers[i], "ours": new_answers[i]} for i in differ],
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "speedup": round(medians["before"] / medians["ours"], 2),
        "rounds": _rounds(timings),
    }
    print(f"{task_type}: {out['speedup']}x; {headline} {old.overall[headline]:.4f} before, "
          f"{new.overall[headline]:.4f} ours; {len(differ)} of {len(new_answers)} predictions differ", flush=True)
    return out


# ----- running -----------------------------------------------------------------------------------------------
def _print_round(index: int, name: str, timing: Timed) -> None:
    import os

    print(f"  round {index + 1} {name:<16} {timing.seconds:8.2f} s wall {timing.cpu_seconds:8.2f} s CPU "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)


def _rounds(timings: dict[str, list[Timed]]) -> dict[str, list[dict[str, float]]]:
    return {name: [{"seconds": round(t.seconds, 3), "cpu_seconds": round(t.cpu_seconds, 3)} for t in runs]
            for name, runs in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--part", choices=["bpc", "task", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--limit", type=int, help="at most this many records per task and part")
    parser.add_argument("--quick", action="store_true", help="8 records per task, 1 round, results not written")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.limit = 1, 8

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with sample_load() as load:
        model = load_causal_lm(args.model, dtype=torch.float32).eval()
        tokenizer = load_tokenizer(args.model)
        previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
        result: dict[str, Any] = {"model": args.model, "rounds": args.rounds, "limit": args.limit,
                                  "command": " ".join(["python", "benchmarks/eval_throughput.py", *sys.argv[1:]])}
        if args.part in ("bpc", "both"):
            result["bpc"] = bpc_part(model, tokenizer, args.rounds, args.limit)
        if args.part in ("task", "both"):
            result["task_metric"] = task_part(model, tokenizer, args.rounds, args.limit)
    result["machine"] = machine_record(load)
    result["duration_s"] = round(time.perf_counter() - started, 1)
    bpc = result.get("bpc", previous.get("bpc"))
    task = result.get("task_metric", previous.get("task_metric"))
    if bpc is not None:
        result["bpc"] = bpc
        result["bpc_ratio_vs_validator_loop"] = min(v["ratio_vs_validator_loop"] for v in bpc.values())
    if task is not None:
        result["task_metric"] = task
        result["task_metric_speedup"] = min(v["speedup"] for v in task.values())
    if args.part != "both" and previous:
        result["previous_part_from"] = previous.get("written")
    result["written"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"\nbpc_ratio_vs_validator_loop {result.get('bpc_ratio_vs_validator_loop')} (the smaller of the two "
          f"tasks), task_metric_speedup {result.get('task_metric_speedup')}; {result['duration_s']} s; load "
          f"{result['machine']['load']['median']} median", flush=True)
    if args.quick:
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=lambda v: None if isinstance(v, float) and
                                   math.isnan(v) else v) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
