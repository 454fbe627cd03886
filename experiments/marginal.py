"""A cheap estimate of what a set of synthetic rows would do to dev loss, per category: gradient alignment.

With the current adapter (trained on the originals), take the gradient of FLock's loss (mean of per-row mean
losses) over the LoRA weights, once for the dev rows of each category and once for a candidate set of rows. A
small step down the candidate's gradient changes the category's dev loss by about ``-lr * <g_dev, g_rows>`` (first
order, as in TracIn / influence estimates). Reported per (candidate set, dev category): the cosine of the two
gradients and that first-order change for a unit step. Positive cosine: training on the rows would lower the
category's dev loss; negative: raise it. Cost: one forward and backward pass over the rows, no training.

    PYTHONPATH=$PWD python -m experiments.marginal ADAPTER --split-seed 0 \
        --set sql_first=data/text2sql-sql_first-split0.jsonl:100 --set transfer=data/text2sql-transfer-split0.jsonl:100

Each candidate set is reported whole and per category of its rows (``NAME/category``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tools.data import FlockRecord


def set_gradient(model: Any, rows: Sequence[FlockRecord], tokenizer: Any, batch_tokens: int = 2048) -> Any:
    """The gradient (flattened, fp32) of the mean of per-row mean losses over ``rows`` (bf16 autocast, as in
    training)."""
    import torch

    from experiments.harness import CONTEXT_LENGTH, TEMPLATE
    from tools.evaluate import length_grouped_batches, make_batch, target_token_losses
    from tools.templates import get_template, tokenize_records

    examples = tokenize_records(rows, tokenizer, get_template(TEMPLATE), CONTEXT_LENGTH)
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=True)
    for indices in length_grouped_batches([len(e) for e in examples], batch_tokens):
        batch = make_batch(examples, indices, tokenizer.pad_token_id)
        per_row = (batch.labels[:, 1:] != -100).sum(dim=1)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            losses, owner = target_token_losses(model, batch)
        loss = (losses / (per_row[owner].to(losses.dtype) * len(examples))).sum()
        loss.backward()
    return torch.cat([p.grad.detach().flatten().float() for p in params])


def grouped_gradients(model: Any, rows: Sequence[FlockRecord], categories: Sequence[str], tokenizer: Any
                      ) -> dict[str, Any]:
    """The gradient of each category's rows, and of all rows ("all": their row-weighted mean), each row once."""
    groups: dict[str, list[FlockRecord]] = defaultdict(list)
    for record, category in zip(rows, categories, strict=True):
        groups[category].append(record)
    grads = {c: set_gradient(model, members, tokenizer) for c, members in sorted(groups.items())}
    grads["all"] = sum(g * (len(groups[c]) / len(rows)) for c, g in list(grads.items()))
    return grads


def alignment(adapter: str, dev: Sequence[FlockRecord], dev_categories: Sequence[str],
              candidates: dict[str, tuple[Sequence[FlockRecord], Sequence[str]]]) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from experiments.harness import MODEL
    from tools.models import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    model = PeftModel.from_pretrained(load_causal_lm(MODEL), adapter, is_trainable=True)
    model.eval()  # no dropout; gradients still flow to the LoRA weights
    dev_grads = grouped_gradients(model, dev, dev_categories, tokenizer)
    out: dict[str, Any] = {}
    for name, (rows, categories) in candidates.items():
        for part, g in grouped_gradients(model, rows, categories, tokenizer).items():
            key = name if part == "all" else f"{name}/{part}"
            out[key] = {c: {"cosine": round(float(torch.nn.functional.cosine_similarity(g, d, dim=0)), 4),
                            "first_order_change": round(float(-(g @ d)), 6)} for c, d in dev_grads.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    from experiments.harness import category_of, load_rows, task_splits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter")
    parser.add_argument("--task", default="text2sql")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="NAME=JSONL[:N] candidate rows (first N)")
    parser.add_argument("--originals", action="store_true", help="also the training split as a candidate set")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    splits = task_splits(args.task, args.split_seed)
    dev = splits["dev"] + splits["test"]
    sets: dict[str, list[FlockRecord]] = {}
    for item in args.set:
        name, _, spec = item.partition("=")
        path, _, n = spec.partition(":")
        sets[name] = load_rows(path)[: int(n)] if n else load_rows(path)
    if args.originals:
        sets["originals"] = splits["train"]
    candidates = {name: (rows, [category_of(args.task, r) for r in rows]) for name, rows in sets.items()}
    result = alignment(args.adapter, dev, [category_of(args.task, r) for r in dev], candidates)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
