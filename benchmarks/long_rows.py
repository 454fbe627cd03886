"""Long training rows (400-1,400 SmolLM2 tokens) built deterministically from the demo text-to-SQL task.

The demo's rows are short (about 220 tokens: a 3-4 table schema, one question, one query). Real FLock tasks have
longer rows, and a trainer tuned on short rows can lose its edge on long ones, so the training benchmark also
measures on rows built here from the same hand-written demo data (no other source, no network). Two shapes,
alternating at random (seeded):

- ``conversation``: one domain's schema, then several questions about it, each answered by its query (a
  multi-turn chat: every assistant turn is a target, as FLock masks them);
- ``wide_schema``: the schemas of several domains in one prompt and one question about one of them (a long
  prompt, a short target: the shape of text-to-SQL tasks over large databases).

Each row draws a length in ``[min_tokens, max_tokens]`` and grows until it reaches it; a row that cannot reach
``min_tokens`` is not kept. Built from the training split for training and from the validation split for the
held-out score, so the two never share a question.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from tools.data import FlockRecord
from tools.templates import tokenize_records

QUESTION_MARK = "\n\nQuestion: "


def _split_user(record: FlockRecord) -> tuple[str, str, str]:
    """(schema text, question, gold query) of a demo record."""
    user, answer = record.conversations[0].content, record.conversations[-1].content
    schema, sep, question = user.partition(QUESTION_MARK)
    if not sep or not schema.startswith("Schema:\n"):
        raise ValueError(f"not a demo text-to-SQL record: {user[:60]!r}")
    return schema.removeprefix("Schema:\n"), question, answer


def _record(system: str | None, turns: list[tuple[str, str]]) -> FlockRecord:
    conversations: list[dict[str, Any]] = []
    for user, assistant in turns:
        conversations += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    data: dict[str, Any] = {"conversations": conversations}
    if system is not None:
        data["system"] = system
    return FlockRecord.model_validate(data)


def build_long_rows(records: Sequence[FlockRecord], tokenizer: Any, count: int, *, seed: int = 0,
                    min_tokens: int = 400, max_tokens: int = 1400, template: str = "qwen1.5") -> list[FlockRecord]:
    """``count`` rows of ``min_tokens``-``max_tokens`` tokens (``template`` rendering) from demo records."""
    by_schema: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        schema, question, answer = _split_user(record)
        by_schema.setdefault(schema, []).append((question, answer))
    schemas = sorted(by_schema)
    system = records[0].system
    rng = random.Random(f"long-rows:{seed}")

    def length(record: FlockRecord) -> int:
        return len(tokenize_records([record], tokenizer, template, 10**6)[0])

    out: list[FlockRecord] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 20 * count:
            raise ValueError(f"could not build {count} rows of {min_tokens}-{max_tokens} tokens from "
                             f"{len(records)} records")
        goal = rng.randint(min_tokens, max_tokens)
        home = rng.choice(schemas)
        pairs = rng.sample(by_schema[home], len(by_schema[home]))
        if rng.random() < 0.5:  # conversation: one schema, questions until the goal length
            turns = [(f"Schema:\n{home}{QUESTION_MARK}{pairs[0][0]}", pairs[0][1])]
            for question, answer in pairs[1:]:
                grown = [*turns, (f"Question: {question}", answer)]
                if length(_record(system, grown)) > goal:
                    break
                turns = grown
        else:  # wide schema: other domains' tables until the goal length, then one question
            others = rng.sample([s for s in schemas if s != home], len(schemas) - 1)
            parts = [home]
            for other in others:
                grown_parts = [*parts, other]
                rng.shuffle(grown_parts)
                candidate = [(f"Schema:\n{chr(10).join(grown_parts)}{QUESTION_MARK}{pairs[0][0]}", pairs[0][1])]
                if length(_record(system, candidate)) > goal:
                    break
                parts = grown_parts
            turns = [(f"Schema:\n{chr(10).join(parts)}{QUESTION_MARK}{pairs[0][0]}", pairs[0][1])]
        row = _record(system, turns)
        if min_tokens <= length(row) <= max_tokens:
            out.append(row)
    return out


__all__ = ["build_long_rows"]
