"""Training throughput: our trainer vs FLock's reference training-node recipe, side by side in one process.

(a) reference: FLock's testnet-training-node-quickstart ``demo.py`` (FLOCK_API.md 7.1) on the installed TRL, as
    described and implemented in benchmarks/reference_recipe.py (shared with benchmarks/learning_gain.py).
(b) ours: tools.train.train_adapter with its default TrainConfig.

Both train the same model on the same examples for the same number of epochs; runs alternate (a, b, a, b, ...).
Printed: real (non-padding) tokens per second of training time, the ratio, peak memory (RSS above the start of
each run after malloc_trim, sampled every 5 ms; includes loading the model), eval BPC on a held-out slice with
FLock's exact scorer, and MFU against a bf16 matmul peak measured at the start.

    python benchmarks/train_throughput.py            # about 10 minutes on a 2-core CPU
    python benchmarks/train_throughput.py --quick    # about 2 minutes
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.reference_recipe import run_reference  # noqa: E402
from tools.data import FlockRecord, load_jsonl  # noqa: E402
from tools.evaluate import flock_score  # noqa: E402
from tools.models import DEFAULT_MODEL, load_causal_lm, load_tokenizer, resolve_model  # noqa: E402
from tools.templates import tokenize_records  # noqa: E402
from tools.train import PeakMemory, TrainConfig, bf16_supported, train_adapter  # noqa: E402

DEMO_TRAIN = ROOT / "tools" / "demo_tasks" / "text2sql" / "training_set.jsonl"
DEMO_VALID = ROOT / "tools" / "demo_tasks" / "text2sql" / "validation_set.jsonl"
FALLBACK = ROOT.parent / "shared" / "flock" / "samples" / "quickstart_function_calling_demo.jsonl"


def matmul_peak_gflops(dtype: torch.dtype, n: int = 1024, seconds: float = 1.5) -> float:
    """Best sustained n x n matmul rate in GFLOP/s over short timed bursts."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def linear_params(model_spec: str) -> int:
    """Parameters in the decoder's linear layers (embeddings and LM head excluded): the model-FLOPs base."""
    model = load_causal_lm(model_spec)
    n = sum(m.weight.numel() for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and "lm_head" not in name)
    del model
    return n


def run_ours(model_spec: str, hub_id: str, records: list[FlockRecord], out: Path, context_length: int,
             epochs: int) -> dict:
    with PeakMemory("cpu") as memory:
        result = train_adapter(model_spec, records, out, TrainConfig(epochs=epochs), template="qwen1.5",
                               context_length=context_length, hub_id=hub_id, resume=False)
    return {"real_tokens": result.real_tokens, "train_time_s": result.train_time_s, "peak_bytes": memory.peak_bytes,
            "adapter": out, "padded_tokens": result.padded_tokens, "steps": result.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (about 2 minutes)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model spec (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--examples", type=int, help="training examples (default 32; quick 12)")
    parser.add_argument("--eval-examples", type=int, help="held-out examples for BPC (default 32; quick 12)")
    parser.add_argument("--rounds", type=int, help="alternations a,b (default 2; quick 1)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--context-length", type=int, default=2048)
    opts = parser.parse_args()
    n_train = opts.examples or (12 if opts.quick else 32)
    n_eval = opts.eval_examples or (12 if opts.quick else 32)
    rounds = opts.rounds or (1 if opts.quick else 2)

    hub_id = resolve_model(opts.model).hub_id or DEFAULT_MODEL
    tokenizer = load_tokenizer(opts.model)
    if DEMO_TRAIN.is_file():
        train_records = load_jsonl(DEMO_TRAIN).records[:n_train]
        eval_records = load_jsonl(DEMO_VALID).records[:n_eval]
        data_name = "demo text2sql task"
    else:
        records = load_jsonl(FALLBACK).records
        train_records, eval_records = records[:n_train], records[-n_eval:]
        data_name = FALLBACK.name
    examples = tokenize_records(train_records, tokenizer, "qwen1.5", opts.context_length)
    use_bf16 = bf16_supported("cpu")

    print(f"model {opts.model} ({hub_id}); data: {data_name}, {len(train_records)} training examples "
          f"({sum(len(e) for e in examples)} tokens), {len(eval_records)} held-out; {opts.epochs} epoch(s); "
          f"{rounds} round(s); torch threads {torch.get_num_threads()}; bf16 {'on' if use_bf16 else 'off'}")
    peak_fp32 = matmul_peak_gflops(torch.float32)
    peak_bf16 = matmul_peak_gflops(torch.bfloat16) if use_bf16 else peak_fp32
    n_linear = linear_params(opts.model)
    print(f"matmul peak: fp32 {peak_fp32:.0f} GFLOP/s, bf16 {peak_bf16:.0f} GFLOP/s; "
          f"{n_linear / 1e6:.1f}M parameters in linear layers")

    runs: dict[str, list[dict]] = {"reference": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="synthgen-bench-") as tmp:
        for r in range(rounds):
            ref = run_reference(opts.model, hub_id, examples, tokenizer.pad_token_id, Path(tmp) / f"ref{r}",
                                opts.context_length, opts.epochs, use_bf16)
            runs["reference"].append(ref)
            print(f"round {r + 1} reference: {ref['real_tokens'] / ref['train_time_s']:.1f} real tok/s, "
                  f"peak {ref['peak_bytes'] / 2**20:.0f} MiB", flush=True)
            ours = run_ours(opts.model, hub_id, train_records, Path(tmp) / f"ours{r}", opts.context_length,
                            opts.epochs)
            runs["ours"].append(ours)
            print(f"round {r + 1} ours:      {ours['real_tokens'] / ours['train_time_s']:.1f} real tok/s, "
                  f"peak {ours['peak_bytes'] / 2**20:.0f} MiB ({ours['steps']} steps, padding "
                  f"{1 - ours['real_tokens'] / ours['padded_tokens']:.1%})", flush=True)

        base = flock_score(opts.model, eval_records, template="qwen1.5", context_length=opts.context_length)
        bpc = {name: flock_score(opts.model, eval_records, template="qwen1.5", context_length=opts.context_length,
                                 adapter=runs[name][-1]["adapter"]).bpc for name in runs}

    def rate(name: str) -> float:
        return statistics.median(x["real_tokens"] / x["train_time_s"] for x in runs[name])

    def peak(name: str) -> float:
        return max(x["peak_bytes"] for x in runs[name]) / 2**20

    print()
    print("| recipe | real tokens/s (median) | MFU (bf16 peak) | peak memory MiB | eval BPC |")
    print("|---|---:|---:|---:|---:|")
    for name in ("reference", "ours"):
        mfu = rate(name) * 4 * n_linear / (peak_bf16 * 1e9)
        print(f"| {name} | {rate(name):.1f} | {mfu:.1%} | {peak(name):.0f} | {bpc[name]:.4f} |")
    print(f"| base model (no adapter) | | | | {base.bpc:.4f} |")
    ratio = rate("ours") / rate("reference")
    per_round = [o["real_tokens"] / o["train_time_s"] / (a["real_tokens"] / a["train_time_s"])
                 for a, o in zip(runs["reference"], runs["ours"], strict=True)]
    print()
    print(f"speed ratio ours/reference: {ratio:.2f}x (per round: {', '.join(f'{x:.2f}' for x in per_round)}); "
          f"target >= 2.0x -> {'met' if ratio >= 2.0 else 'NOT met'}")
    bpc_change = bpc["ours"] / bpc["reference"] - 1
    print(f"eval BPC ours vs reference: {bpc_change:+.2%}; target <= +1% -> "
          f"{'met' if bpc_change <= 0.01 else 'NOT met'}")
    print(f"peak memory ours vs reference: {peak('ours'):.0f} vs {peak('reference'):.0f} MiB -> "
          f"{'met' if peak('ours') <= peak('reference') else 'NOT met'}")
    print("MFU = real tokens/s x 4 x linear-layer parameters (forward + input-gradient backward; frozen base "
          "weights need no weight gradients) / measured bf16 matmul peak.")
    if not math.isfinite(ratio):
        sys.exit(1)


if __name__ == "__main__":
    main()
