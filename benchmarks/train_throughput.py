"""Training throughput: our trainer against two anchors, side by side in one process, on short and long rows.

Recipes (each trains one epoch over the same rows, so all see the same real tokens):
- ``flock_reference``: FLock's reference recipe as its automated path runs it (benchmarks/reference_recipe.py,
  ``FULL_AUTOMATION``: batch 1 x gradient accumulation 8, LoRA r=8/alpha 16/dropout 0.1 on q/v, warmup 100 steps);
- ``sfttrainer``: TRL's SFTTrainer tuned as a user would (benchmarks/sfttrainer_recipe.py): our LoRA settings and
  schedule, bf16, assistant-only loss, length-grouped batches of about our token budget, gradient checkpointing off;
- ``ours``: tools.train.train_adapter with its default TrainConfig (epochs=1).

Data sets: ``short``, the demo task's rows (tools/demo_tasks/text2sql, about 220 tokens); ``long``, 400-1,400-token
rows built from the same demo data by benchmarks/long_rows.py. Held-out rows for BPC come from the validation split.

Rounds alternate the recipes (the order rotates each round) so load on a shared machine falls on all of them; the
ratios are medians of real (non-padding) tokens per second of training time, ours over theirs. Also recorded:
real tokens per CPU-second of the process (steadier under load), peak memory (RSS above the start of each run,
model loading included), held-out BPC (FLock-exact, tools.evaluate.flock_score) of each recipe's last-round adapter,
MFU against bf16 and fp32 matmul peaks measured in the same run (start and end), load averages around every run.

    python benchmarks/train_throughput.py            # 3 rounds; about 30-40 min on a quiet 2-core CPU
    python benchmarks/train_throughput.py --quick    # 1 round on fewer rows, a few minutes; no JSON by default
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.long_rows import build_long_rows  # noqa: E402
from benchmarks.measurement import matmul_peak_gflops  # noqa: E402
from benchmarks.reference_recipe import FULL_AUTOMATION, run_reference  # noqa: E402
from benchmarks.sfttrainer_recipe import run_sfttrainer  # noqa: E402
from tools.data import FlockRecord, load_jsonl  # noqa: E402
from tools.evaluate import flock_score  # noqa: E402
from tools.models import DEFAULT_MODEL, load_causal_lm, load_tokenizer, resolve_model  # noqa: E402
from tools.templates import TokenizedExample, tokenize_records  # noqa: E402
from tools.train import PeakMemory, TrainConfig, train_adapter  # noqa: E402
from tools.train_hardware import bf16_speeds_up_training, bf16_supported  # noqa: E402

DEMO = ROOT / "tools" / "demo_tasks" / "text2sql"
TEMPLATE = "qwen1.5"
RECIPES = ("flock_reference", "sfttrainer", "ours")
RESULTS = ROOT / "benchmarks" / "results" / "train_throughput.json"


def model_shape(model_spec: str) -> dict[str, int]:
    """Decoder linear-layer parameters (embeddings and LM head excluded) and the sizes the FLOP count needs."""
    model = load_causal_lm(model_spec)
    config = model.config
    linear = sum(m.weight.numel() for name, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and "lm_head" not in name)
    shape = {"linear_params": linear, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
             "attention_width": config.num_attention_heads * (config.hidden_size // config.num_attention_heads),
             "vocab": config.vocab_size}
    del model
    return shape


def flops_per_token(shape: dict[str, int], examples: list[TokenizedExample]) -> float:
    """Model FLOPs a LoRA training step needs per real token, the same for every recipe.

    Frozen linear layers: forward + input gradient = 4 x parameters. Attention: forward 4 x context x width per
    layer (scores and weighted values, causal: mean context (n+1)/2), backward twice that. LM head: forward +
    hidden-state gradient, only where the next token is a target (4 x vocab x hidden x target share). LoRA's own
    FLOPs (a few percent) are left out.
    """
    tokens = sum(len(e) for e in examples)
    mean_context = sum(len(e) * (len(e) + 1) / 2 for e in examples) / tokens
    target_share = sum(sum(e.target_mask[1:]) for e in examples) / tokens
    attention = 12 * shape["layers"] * shape["attention_width"] * mean_context
    return 4 * shape["linear_params"] + attention + 4 * shape["vocab"] * shape["hidden"] * target_share


def datasets(tokenizer: Any, opts: argparse.Namespace) -> dict[str, tuple[list[FlockRecord], list[FlockRecord]]]:
    train = load_jsonl(DEMO / "training_set.jsonl").records
    valid = load_jsonl(DEMO / "validation_set.jsonl").records
    short_train = random.Random(0).sample(train, min(opts.short_rows, len(train)))
    return {
        "long": (build_long_rows(train, tokenizer, opts.long_rows, seed=0),
                 build_long_rows(valid, tokenizer, opts.eval_long_rows, seed=1)),
        "short": (short_train, valid[:opts.eval_short_rows]),
    }


def run_once(recipe: str, name: str, records: list[FlockRecord], examples: list[TokenizedExample], tokenizer: Any,
             model: str, hub_id: str, out: Path, opts: argparse.Namespace, ours: TrainConfig) -> dict[str, Any]:
    load_before = os.getloadavg()
    if recipe == "flock_reference":
        run = run_reference(model, hub_id, examples, tokenizer.pad_token_id, out, opts.context_length, 1,
                            bf16_supported("cpu"), recipe=FULL_AUTOMATION)
    elif recipe == "sfttrainer":
        batch = max(1, round(ours.batch_tokens / statistics.median(len(e) for e in examples)))
        run = run_sfttrainer(model, hub_id, examples, tokenizer, out, opts.context_length, ours,
                             bf16_supported("cpu"), mode=opts.sft_mode, batch_size=batch)
        run["batch_size"] = batch
    else:
        with PeakMemory("cpu") as memory:
            cpu_start = time.process_time()
            result = train_adapter(model, records, out, ours, template=TEMPLATE, context_length=opts.context_length,
                                   hub_id=hub_id, resume=False)
            cpu = time.process_time() - cpu_start
        run = {"real_tokens": result.real_tokens, "steps": result.steps, "train_time_s": result.train_time_s,
               "train_cpu_s": cpu, "cpu_includes_model_load": True, "peak_bytes": memory.peak_bytes,
               "padded_tokens": result.padded_tokens, "bf16": result.bf16, "adapter": out}
    run["load_before"], run["load_after"] = list(load_before), list(os.getloadavg())
    run["tokens_per_s"] = run["real_tokens"] / run["train_time_s"]
    run["tokens_per_cpu_s"] = run["real_tokens"] / run["train_cpu_s"]
    print(f"  {name:5s} {recipe:15s} {run['tokens_per_s']:7.1f} real tok/s ({run['tokens_per_cpu_s']:6.1f} per CPU-s)"
          f"  {run['train_time_s']:6.1f} s  peak {run['peak_bytes'] / 2**20:5.0f} MiB  load {load_before[0]:.1f}",
          flush=True)
    return run


def summarize(runs: dict[str, list[dict[str, Any]]], bpc: dict[str, float], base_bpc: float, flops: float,
              peaks: dict[str, float], examples: list[TokenizedExample]) -> dict[str, Any]:
    def median(recipe: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[recipe])

    recipes = {}
    for recipe in RECIPES:
        rate = median(recipe, "tokens_per_s")
        recipes[recipe] = {
            "tokens_per_s_median": round(rate, 2),
            "tokens_per_s_rounds": [round(r["tokens_per_s"], 2) for r in runs[recipe]],
            "tokens_per_cpu_s_median": round(median(recipe, "tokens_per_cpu_s"), 2),
            "train_time_s_rounds": [round(r["train_time_s"], 1) for r in runs[recipe]],
            "peak_memory_mib_max": round(max(r["peak_bytes"] for r in runs[recipe]) / 2**20),
            "heldout_bpc": round(bpc[recipe], 5),
            "mfu_vs_bf16_peak": round(rate * flops / (peaks["bf16_gflops"] * 1e9), 4),
            "mfu_vs_fp32_peak": round(rate * flops / (peaks["fp32_gflops"] * 1e9), 4),
            "steps": runs[recipe][-1]["steps"],
            "real_tokens": runs[recipe][-1]["real_tokens"],
            "load_before_runs": [round(r["load_before"][0], 2) for r in runs[recipe]],
        }
        for key in ("batch_size", "bf16", "padded_tokens"):
            if key in runs[recipe][-1]:
                recipes[recipe][key] = runs[recipe][-1][key]
    ours = recipes["ours"]["tokens_per_s_median"]
    per_round = {other: [round(o["tokens_per_s"] / t["tokens_per_s"], 3)
                         for o, t in zip(runs["ours"], runs[other], strict=True)]
                 for other in ("flock_reference", "sfttrainer")}
    lengths = sorted(len(e) for e in examples)
    return {
        "ratio_vs_flock_reference": round(ours / recipes["flock_reference"]["tokens_per_s_median"], 3),
        "ratio_vs_sfttrainer": round(ours / recipes["sfttrainer"]["tokens_per_s_median"], 3),
        "ratio_per_round": per_round,
        "cpu_time_ratio_vs_flock_reference": round(
            recipes["ours"]["tokens_per_cpu_s_median"] / recipes["flock_reference"]["tokens_per_cpu_s_median"], 3),
        "cpu_time_ratio_vs_sfttrainer": round(
            recipes["ours"]["tokens_per_cpu_s_median"] / recipes["sfttrainer"]["tokens_per_cpu_s_median"], 3),
        "recipes": recipes,
        "base_model_heldout_bpc": round(base_bpc, 5),
        "model_flops_per_token": round(flops),
        "rows": len(examples),
        "real_tokens_per_epoch": sum(lengths),
        "row_tokens": {"min": lengths[0], "median": statistics.median(lengths), "max": lengths[-1]},
        "target_share": round(sum(e.num_targets for e in examples) / sum(lengths), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round on fewer rows; writes no JSON unless --out")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model spec (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 3; quick 1)")
    parser.add_argument("--long-rows", type=int, help="long training rows (default 12; quick 4)")
    parser.add_argument("--short-rows", type=int, help="short training rows (default 48; quick 16)")
    parser.add_argument("--eval-long-rows", type=int, default=12, help="held-out long rows for BPC")
    parser.add_argument("--eval-short-rows", type=int, default=32, help="held-out short rows for BPC")
    parser.add_argument("--datasets", default="long,short", help="comma-separated: long, short")
    parser.add_argument("--sft-mode", default="padded", choices=["padded", "padding_free", "packing"])
    parser.add_argument("--threads", type=int, help="torch threads for every recipe (default: torch's default)")
    parser.add_argument("--context-length", type=int, default=2048)
    parser.add_argument("--out", type=Path, help=f"JSON results (default {RESULTS.relative_to(ROOT)}; quick: none)")
    opts = parser.parse_args()
    opts.rounds = opts.rounds or (1 if opts.quick else 3)
    opts.long_rows = opts.long_rows or (4 if opts.quick else 12)
    opts.short_rows = opts.short_rows or (16 if opts.quick else 48)
    if opts.quick:
        opts.eval_long_rows, opts.eval_short_rows = min(opts.eval_long_rows, 4), min(opts.eval_short_rows, 12)
    out_path = opts.out or (None if opts.quick else RESULTS)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    started = time.perf_counter()

    hub_id = resolve_model(opts.model).hub_id or DEFAULT_MODEL
    tokenizer = load_tokenizer(opts.model)
    data = {name: rows for name, rows in datasets(tokenizer, opts).items() if name in opts.datasets.split(",")}
    ours = TrainConfig(epochs=1, checkpoint_every=0)
    peaks = {"fp32_gflops": matmul_peak_gflops("float32", seconds=1.5),
             "bf16_gflops": matmul_peak_gflops("bfloat16", seconds=1.5)}
    shape = model_shape(opts.model)
    print(f"model {opts.model} ({hub_id}); torch threads {torch.get_num_threads()}; matmul peak fp32 "
          f"{peaks['fp32_gflops']:.0f}, bf16 {peaks['bf16_gflops']:.0f} GFLOP/s; ours trains in "
          f"{'bf16' if bf16_speeds_up_training('cpu') else 'fp32'}, the anchors in "
          f"{'bf16' if bf16_supported('cpu') else 'fp32'}", flush=True)

    examples = {name: tokenize_records(train, tokenizer, TEMPLATE, opts.context_length)
                for name, (train, _) in data.items()}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {name: {r: [] for r in RECIPES} for name in data}
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="synthgen-train-bench-") as tmp:
        for round_index in range(opts.rounds):
            order = RECIPES[round_index % 3:] + RECIPES[:round_index % 3]
            print(f"round {round_index + 1}/{opts.rounds} (order: {', '.join(order)})", flush=True)
            for name, (train, _) in data.items():
                for recipe in order:
                    out = Path(tmp) / f"{name}-{recipe}-{round_index}"
                    runs[name][recipe].append(run_once(recipe, name, train, examples[name], tokenizer, opts.model,
                                                       hub_id, out, opts, ours))
        peaks_end = {"fp32_gflops": matmul_peak_gflops("float32", seconds=1.5),
                     "bf16_gflops": matmul_peak_gflops("bfloat16", seconds=1.5)}
        for name, (_, heldout) in data.items():
            def score(adapter: Path | None, rows: list[FlockRecord] = heldout) -> float:
                return flock_score(opts.model, rows, template=TEMPLATE, context_length=opts.context_length,
                                   adapter=adapter).bpc

            bpc = {recipe: score(runs[name][recipe][-1]["adapter"]) for recipe in RECIPES}
            report[name] = summarize(runs[name], bpc, score(None), flops_per_token(shape, examples[name]), peaks,
                                     examples[name])
            report[name]["heldout_rows"] = len(heldout)

    report["matmul_peak_gflops"] = {"start": {k: round(v, 1) for k, v in peaks.items()},
                                    "end": {k: round(v, 1) for k, v in peaks_end.items()},
                                    "size": "1024x1024 @ 1024x1024, best of 1.5 s of bursts"}
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                         "torch_threads": torch.get_num_threads(), "amx": bool(torch.cpu._is_amx_tile_supported()),
                         "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
                         "loadavg_end": list(os.getloadavg())}
    report["precision"] = {"ours": "bf16" if bf16_speeds_up_training("cpu") else "fp32",
                           "flock_reference": "bf16 autocast" if bf16_supported("cpu") else "fp32",
                           "sfttrainer": "bf16" if bf16_supported("cpu") else "fp32"}
    report["settings"] = {"model": opts.model, "hub_id": hub_id, "rounds": opts.rounds, "template": TEMPLATE,
                          "context_length": opts.context_length, "ours": ours.model_dump(mode="json"),
                          "sft_mode": opts.sft_mode, "epochs": 1}
    report["versions"] = {"python": platform.python_version(), **{m: __import__(m).__version__ for m in
                                                                  ("torch", "transformers", "trl", "peft")}}
    report["command"] = " ".join(["python", "benchmarks/train_throughput.py", *sys.argv[1:]])
    report["duration_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps({k: v for k, v in report.items() if k in data}, indent=1)[:4000])
    for name in data:
        r = report[name]
        print(f"{name}: ours / FLock reference {r['ratio_vs_flock_reference']:.2f}x, ours / SFTTrainer "
              f"{r['ratio_vs_sfttrainer']:.2f}x (CPU-time ratios {r['cpu_time_ratio_vs_flock_reference']:.2f}x, "
              f"{r['cpu_time_ratio_vs_sfttrainer']:.2f}x)")
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
