"""Where the loss sits in a SQL answer: per-token losses of an adapter, grouped by the SQL element each token spells.

Classes: ``keyword`` (SELECT, JOIN, COUNT ...), ``table``/``column`` (schema identifiers), ``alias`` (table
aliases such as ``T1``/``m`` and column aliases), ``string``/``number`` (literals), ``punct`` (operators, commas,
parentheses, dots), ``end`` (the end-of-turn token). A token spanning several elements takes the class of its
first non-space character. Reported per class: share of the answer's summed loss, mean loss per token and count.

    PYTHONPATH=$PWD python -m experiments.token_loss /tmp/i15-research/adapters/p0-e-T68k-s0 --split-seed 0
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlglot.tokens import Tokenizer, TokenType

from tools.data import FlockRecord
from tools.tasks.text2sql import clean_sql, parse_prompt

_PUNCT = {TokenType.COMMA, TokenType.DOT, TokenType.L_PAREN, TokenType.R_PAREN, TokenType.EQ, TokenType.NEQ,
          TokenType.GT, TokenType.GTE, TokenType.LT, TokenType.LTE, TokenType.STAR, TokenType.SEMICOLON,
          TokenType.PLUS, TokenType.DASH, TokenType.SLASH}


def char_classes(sql: str, schema_text: str) -> list[str]:
    """A class for every character of ``sql`` (spaces: ``space``)."""
    from tools.sql.schema import parse_schema

    schema = parse_schema(schema_text)
    tables = {t.name.lower() for t in schema.tables}
    columns = {c.name.lower() for t in schema.tables for c in t.columns}
    classes = ["space"] * len(sql)
    tokens = Tokenizer().tokenize(sql)
    for i, tok in enumerate(tokens):
        text = tok.text.lower()
        if tok.token_type == TokenType.STRING:
            kind = "string"
        elif tok.token_type == TokenType.NUMBER:
            kind = "number"
        elif tok.token_type in _PUNCT:
            kind = "punct"
        elif tok.token_type == TokenType.VAR:
            after_as = i > 0 and tokens[i - 1].token_type == TokenType.ALIAS
            before_dot = i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.DOT
            if text in tables and not after_as:
                kind = "table"
            elif text in columns and not after_as and not before_dot:
                kind = "column"
            else:
                kind = "alias"
        else:
            kind = "keyword"
        start, end = tok.start, tok.end + 1  # a string's span includes its quotes
        for j in range(start, end):
            classes[j] = kind
    return classes


def token_classes(record: FlockRecord, target_ids: Sequence[int], tokenizer: Any) -> list[str]:
    """The class of each target token of a single-answer record (by decoding the targets one by one)."""
    sql = record.assistant_texts()[-1]
    classes = char_classes(clean_sql(sql), parse_prompt(record.first_user_text()).schema)
    out: list[str] = []
    position = 0
    for token_id in target_ids:
        piece = tokenizer.decode([token_id])
        if position >= len(sql) or (not piece.strip() and piece not in sql[position:position + len(piece)]):
            out.append("end" if position >= len(sql) else "space")
            position += len(piece)
            continue
        first = next((k for k in range(len(piece)) if not piece[k].isspace()), 0)
        index = min(position + first, len(classes) - 1)
        out.append(classes[index] if index < len(classes) else "end")
        position += len(piece)
    return out


def class_losses(adapter: str | None, rows: Sequence[FlockRecord]) -> dict[str, Any]:
    import torch

    from experiments.harness import CONTEXT_LENGTH, MODEL, TEMPLATE
    from tools.evaluate import make_batch, target_token_losses
    from tools.models import load_causal_lm, load_tokenizer
    from tools.templates import get_template, tokenize_records

    tokenizer = load_tokenizer(MODEL)
    model = load_causal_lm(MODEL)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    model.eval()
    examples = tokenize_records(rows, tokenizer, get_template(TEMPLATE), CONTEXT_LENGTH)
    sums: dict[str, float] = defaultdict(float)
    raw: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    total = 0.0
    with torch.inference_mode():
        for record, example in zip(rows, examples, strict=True):
            batch = make_batch([example], [0], tokenizer.pad_token_id)
            losses, _ = target_token_losses(model, batch)
            target_ids = [t for t, m in zip(example.input_ids[1:], example.target_mask[1:], strict=True) if m]
            kinds = token_classes(record, target_ids, tokenizer)
            mean = float(losses.mean())
            for kind, loss in zip(kinds, losses.tolist(), strict=True):
                # Each row counts as FLock counts it: its mean loss, so a token weighs 1/len(row) of its row.
                sums[kind] += loss / len(kinds)
                raw[kind] += loss
                counts[kind] += 1
            total += mean
    return {kind: {"share_of_loss": round(sums[kind] / total, 3),
                   "mean_loss_per_token": round(raw[kind] / counts[kind], 3),
                   "tokens": counts[kind]} for kind in sorted(sums, key=lambda k: -sums[k])}


def main(argv: list[str] | None = None) -> None:
    from experiments.harness import task_splits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", nargs="?", help="adapter folder (none: the base model)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--rows", choices=["devtest", "validation"], default="devtest")
    args = parser.parse_args(argv)
    splits = task_splits("text2sql", args.split_seed)
    rows = splits["dev"] + splits["test"] if args.rows == "devtest" else splits["validation"]
    print(json.dumps(class_losses(args.adapter, rows), indent=1))


if __name__ == "__main__":
    main()
