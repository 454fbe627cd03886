"""Generation throughput: plain one-at-a-time ``model.generate`` against our batched LocalBackend, each at the same
precision, side by side in one process, alternating rounds.

Every round runs, for each precision (fp32, and bf16 where the CPU has it): the baseline (one prompt per
``model.generate`` call, default cache) and LocalBackend at each batch size (tools.decoding: shared prompt prefixes
run once, prompts prefilled in pieces of at most 4096 padded tokens, rows leave the batch as they end). Same
model, same prompts, greedy decoding, so both sides produce the same texts (differences are counted). Tokens/s
counts generated tokens up to and including each end-of-turn token.

Reported separately: the batching gain (ours over the baseline at the same precision) and the precision gain
(bf16 over fp32 for the same method). Prompt sets: ``engine`` (the generation engine's few-shot function-calling
prompts, the default) and ``questions`` (the demo's short user questions: decoding dominates). Each run writes
its prompt set's entry of benchmarks/results/generation_throughput.json and keeps the other's.

    python benchmarks/generation_throughput.py                          # engine prompts, batch 8 and 32, 3 rounds
    python benchmarks/generation_throughput.py --prompt-set questions --max-new-tokens 96
    python benchmarks/generation_throughput.py --quick                  # smoke run, not written
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.measurement import Timed, alternating_rounds, machine_record, sample_load  # noqa: E402
from tools.backends import LocalBackend, Message, SamplingSettings  # noqa: E402
from tools.data import load_jsonl  # noqa: E402
from tools.models import DEFAULT_MODEL, load_causal_lm, load_tokenizer  # noqa: E402
from tools.shared_prefix import group_by_prefix  # noqa: E402
from tools.tasks.base import Draft  # noqa: E402
from tools.tasks.function_calling import FunctionCallingPlugin  # noqa: E402
from tools.tasks.function_calling.strategy import FunctionCallingStrategy  # noqa: E402
from tools.train_hardware import bf16_supported  # noqa: E402

DEMO_FC = ROOT / "tools" / "demo_tasks" / "function_calling" / "training_set.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "generation_throughput.json"


def prompts(count: int, seed: int, kind: str) -> list[list[Message]]:
    """``engine``: generation prompts as the engine sends them (function-calling drafts across the call
    patterns, a few hundred tokens of few-shot context each). ``questions``: the demo's plain user questions
    on their own (short prompts, long answers: decoding dominates)."""
    seeds = load_jsonl(DEMO_FC).records
    if kind == "questions":
        questions = sorted({r.first_user_text() for r in seeds if not r.tool_list()})
        return [[{"role": "user", "content": questions[i % len(questions)]}] for i in range(count)]
    strategy = FunctionCallingStrategy(FunctionCallingPlugin(), seeds)
    rng = random.Random(seed)
    out: list[list[Message]] = []
    categories = ("single_call", "multi_call", "no_call", "no_tools")
    while len(out) < count:
        drafted = strategy.draft(categories[len(out) % len(categories)], rng)
        if isinstance(drafted, Draft) and drafted.messages:
            out.append(drafted.messages)
    return out


def one_at_a_time(model: Any, tokenizer: Any, conversations: list[list[Message]],
                  max_new_tokens: int) -> tuple[int, list[str]]:
    """Plain transformers: one prompt per ``generate`` call, greedy, default cache."""
    import torch

    eos = tokenizer.eos_token_id
    tokens, texts = 0, []
    for messages in conversations:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(**encoded, do_sample=False, max_new_tokens=max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id)
        new = output[0, encoded["input_ids"].shape[1]:].tolist()
        kept = new[:new.index(eos)] if eos in new else new
        tokens += len(kept) + (eos in new)
        texts.append(str(tokenizer.decode(kept, skip_special_tokens=True)).strip())
    return tokens, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="bfloat16 is skipped where the CPU has no native bf16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-set", default="engine", choices=["engine", "questions"])
    parser.add_argument("--quick", action="store_true", help="8 prompts, batch 8, 1 round, 16 tokens, not written")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.batch_sizes, args.rounds, args.max_new_tokens = 8, "8", 1, 16
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with sample_load() as load:
        tokenizer = load_tokenizer(args.model)
        fp32 = load_causal_lm(args.model, dtype=torch.float32).eval()
        models = {"float32": fp32}
        if "bfloat16" in args.precisions.split(",") and bf16_supported("cpu"):
            models["bfloat16"] = copy.deepcopy(fp32).to(torch.bfloat16).eval()
        precisions = [p for p in args.precisions.split(",") if p in models]
        conversations = prompts(args.prompts, args.seed, args.prompt_set)
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        ids = [list(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        groups = group_by_prefix(ids, [len(x) - 1 for x in ids])
        shared = sum(g.prefix_len * (len(g.members) - 1) for g in groups)
        lengths = sorted(len(x) for x in ids)
        print(f"model {args.model}; {len(ids)} {args.prompt_set} prompts of {lengths[0]}-{lengths[-1]} tokens "
              f"(median {statistics.median(lengths)}), {shared} of {sum(lengths)} prompt tokens shared with an "
              f"earlier prompt; {args.max_new_tokens} new tokens; torch threads {torch.get_num_threads()}",
              flush=True)
        sampling = SamplingSettings(temperature=0.0, max_new_tokens=args.max_new_tokens)
        candidates: dict[str, Any] = {}
        for precision in precisions:
            model = models[precision]
            candidates[f"one_at_a_time_{precision}"] = (
                lambda m=model: one_at_a_time(m, tokenizer, conversations, args.max_new_tokens))
            for batch in batch_sizes:
                backend = LocalBackend(model, tokenizer, batch_size=batch, precision=precision)

                def ours(b: LocalBackend = backend) -> tuple[int, list[str]]:
                    generations = b.generate(conversations, sampling, seed=args.seed)
                    return sum(g.completion_tokens for g in generations), [g.text for g in generations]

                candidates[f"batch_{batch}_{precision}"] = ours
        # Warm-up: first calls pay one-off costs (kernels, allocations).
        for precision in precisions:
            one_at_a_time(models[precision], tokenizer, conversations[:1], 2)
            LocalBackend(models[precision], tokenizer, batch_size=2, precision=precision).generate(
                conversations[:2], SamplingSettings(temperature=0.0, max_new_tokens=2), seed=0)

        def report(index: int, name: str, timing: Timed) -> None:
            tokens = timing.result[0]
            print(f"  round {index + 1} {name:<26} {tokens:5d} tokens {timing.seconds:8.1f} s "
                  f"{tokens / timing.seconds:8.2f} tok/s (load {load.samples[-1][1]:.1f})", flush=True)

        timings = alternating_rounds(candidates, args.rounds, report)
    rates = {name: statistics.median(t.result[0] / t.seconds for t in runs) for name, runs in timings.items()}
    texts_by = {name: runs[-1].result[1] for name, runs in timings.items()}
    entry: dict[str, Any] = {
        "prompts": len(ids), "prompt_tokens": {"min": lengths[0], "median": statistics.median(lengths),
                                               "max": lengths[-1], "total": sum(lengths),
                                               "shared_with_an_earlier_prompt": shared},
        "max_new_tokens": args.max_new_tokens, "rounds": args.rounds,
        "tokens_per_s_median": {k: round(v, 2) for k, v in rates.items()},
        "ratio_same_precision": {p: {str(b): round(rates[f"batch_{b}_{p}"] / rates[f"one_at_a_time_{p}"], 2)
                                     for b in batch_sizes} for p in precisions},
        "texts_differing_from_one_at_a_time": {
            f"batch_{b}_{p}": sum(a != c for a, c in zip(texts_by[f"batch_{b}_{p}"], texts_by[f"one_at_a_time_{p}"],
                                                         strict=True)) for p in precisions for b in batch_sizes},
        "runs": {name: [{"tokens": t.result[0], "seconds": round(t.seconds, 3), "cpu_seconds": round(t.cpu_seconds, 3)}
                        for t in runs] for name, runs in timings.items()},
    }
    if "bfloat16" in precisions and "float32" in precisions:
        entry["precision_gain_bf16_over_fp32"] = {
            method: round(rates[f"{method}_bfloat16"] / rates[f"{method}_float32"], 2)
            for method in ["one_at_a_time", *(f"batch_{b}" for b in batch_sizes)]}
    headline = "bfloat16" if "bfloat16" in precisions else precisions[0]
    if 32 in batch_sizes:
        entry["batch_32_ratio_same_precision"] = entry["ratio_same_precision"][headline]["32"]
        entry["batch_32_ratio_precision"] = headline
    entry["command"] = " ".join(["python", "benchmarks/generation_throughput.py", *sys.argv[1:]])
    entry["duration_s"] = round(time.perf_counter() - started, 1)
    entry["machine"] = machine_record(load)
    entry["written"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps({k: entry[k] for k in ("tokens_per_s_median", "ratio_same_precision") if k in entry}, indent=1))
    print(f"precision gain {entry.get('precision_gain_bf16_over_fp32')}; {entry['duration_s']} s")
    if args.quick:
        return
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data[args.prompt_set] = entry
    data["model"] = args.model
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
