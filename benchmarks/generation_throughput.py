"""Generation throughput: plain one-at-a-time ``model.generate`` versus our batched LocalBackend.

Both sides use the same model (loaded once through tools.models), the same prompts (real generation prompts
drafted by the function-calling strategy from the demo task) and the same decoding (greedy by default, so both
produce the same texts and the comparison is of speed alone). Tokens/s counts generated tokens up to and
including each end-of-turn token; padding after a finished row is not counted, so a batch pays for its
longest row.

    .venv/bin/python benchmarks/generation_throughput.py                 # batch sizes 1, 8, 32
    .venv/bin/python benchmarks/generation_throughput.py --quick         # 8 prompts, batch 1 and 8
    .venv/bin/python benchmarks/generation_throughput.py --prompt-set questions   # short prompts, decode-bound
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.backends import LocalBackend, Message, SamplingSettings  # noqa: E402
from tools.data import load_jsonl  # noqa: E402
from tools.models import load_causal_lm, load_tokenizer  # noqa: E402
from tools.tasks.base import Draft  # noqa: E402
from tools.tasks.function_calling import FunctionCallingPlugin  # noqa: E402
from tools.tasks.function_calling.strategy import FunctionCallingStrategy  # noqa: E402

DEMO_FC = ROOT / "tools" / "demo_tasks" / "function_calling" / "training_set.jsonl"


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


def baseline(model, tokenizer, conversations: list[list[Message]], sampling: SamplingSettings) -> tuple[int, float]:
    """Plain transformers: one prompt per ``generate`` call, fp32, default cache."""
    import torch

    eos = tokenizer.eos_token_id
    tokens = 0
    start = time.perf_counter()
    for messages in conversations:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        kwargs = {"do_sample": sampling.temperature > 0, "max_new_tokens": sampling.max_new_tokens,
                  "pad_token_id": tokenizer.pad_token_id}
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        with torch.inference_mode():
            output = model.generate(**encoded, **kwargs)
        new = output[0, encoded["input_ids"].shape[1]:].tolist()
        tokens += new.index(eos) + 1 if eos in new else len(new)
    return tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-set", default="engine", choices=["engine", "questions"])
    parser.add_argument("--quick", action="store_true", help="8 prompts, batch sizes 1 and 8")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.batch_sizes = 8, "1,8"
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    import torch

    model = load_causal_lm(args.model)
    tokenizer = load_tokenizer(args.model)
    conversations = prompts(args.prompts, args.seed, args.prompt_set)
    sampling = SamplingSettings(temperature=args.temperature, top_p=0.95, max_new_tokens=args.max_new_tokens)
    prompt_lengths = [len(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)) for c in
                      conversations]
    print(f"model {args.model}; {len(conversations)} {args.prompt_set} prompts "
          f"({min(prompt_lengths)}-{max(prompt_lengths)} chars); "
          f"max_new_tokens {args.max_new_tokens}; temperature {args.temperature}; torch threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} (shared machine)", flush=True)

    # Warm up both paths once so neither pays first-call costs.
    LocalBackend(model, tokenizer, batch_size=2, precision=args.precision).generate(
        conversations[:2], SamplingSettings(temperature=0.0, max_new_tokens=2), seed=0)
    baseline(model, tokenizer, conversations[:1], SamplingSettings(temperature=0.0, max_new_tokens=2))

    base_tokens, base_seconds = baseline(model, tokenizer, conversations, sampling)
    base_rate = base_tokens / base_seconds
    rows = [{"mode": "baseline: model.generate one at a time (fp32)", "batch": 1, "tokens": base_tokens,
             "seconds": round(base_seconds, 2), "tokens_per_s": round(base_rate, 2), "ratio": 1.0}]
    print(f"{rows[0]['mode']:<52} batch  1: {base_tokens:5d} tokens {base_seconds:8.1f} s {base_rate:8.2f} tok/s",
          flush=True)
    for batch_size in batch_sizes:
        backend = LocalBackend(model, tokenizer, batch_size=batch_size, precision=args.precision)
        start = time.perf_counter()
        generations = backend.generate(conversations, sampling, seed=args.seed)
        seconds = time.perf_counter() - start
        tokens = sum(g.completion_tokens for g in generations)
        rate = tokens / seconds
        mode = f"ours: LocalBackend ({'bf16' if backend.bf16 else 'fp32'})"
        rows.append({"mode": mode, "batch": batch_size, "tokens": tokens, "seconds": round(seconds, 2),
                     "tokens_per_s": round(rate, 2), "ratio": round(rate / base_rate, 2)})
        print(f"{mode:<52} batch {batch_size:2d}: {tokens:5d} tokens {seconds:8.1f} s {rate:8.2f} tok/s "
              f"= {rate / base_rate:5.2f}x baseline", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "prompts": len(conversations), "prompt_set": args.prompt_set,
                                         "max_new_tokens": args.max_new_tokens}, indent=2) + "\n")


if __name__ == "__main__":
    main()
