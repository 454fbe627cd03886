"""Row layouts for training: several question/SQL pairs of one schema packed into one multi-turn row.

A text-to-SQL row is mostly prompt: the schema (about 150 tokens) and the system text, then a question and a
query of about 25 tokens, the only tokens that are trained. Packing k pairs that share a schema into one
conversation (the first user turn carries the schema and the first question, later user turns only
``Question: ...``) trains every query at a fraction of the real tokens. This is a trainer-side layout: it applies
to original rows as much as to synthetic ones, so a comparison must give it to both.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from tools.data import FlockRecord, Turn
from tools.tasks.text2sql import parse_prompt


def pack(records: Sequence[FlockRecord], k: int, seed: int) -> list[FlockRecord]:
    """Rows of up to ``k`` single-turn text-to-SQL records sharing a schema (and system text), in a seeded order;
    rows that cannot be parsed are kept as they are."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    groups: dict[tuple[str | None, str], list[FlockRecord]] = defaultdict(list)
    kept: list[FlockRecord] = []
    for record in records:
        users = [t for t in record.conversations if t.role == "user"]
        if len(users) != 1 or len(record.assistant_texts()) != 1:
            kept.append(record)
            continue
        schema = parse_prompt(users[0].content).schema
        groups[(record.system, schema)].append(record)
    rng = random.Random(seed)
    for (system, _schema), members in sorted(groups.items(), key=lambda item: str(item[0])):
        members = list(members)
        rng.shuffle(members)
        for start in range(0, len(members), k):
            chunk = members[start:start + k]
            turns: list[Turn] = []
            for i, record in enumerate(chunk):
                user = record.conversations[0].content
                if i > 0:
                    question = parse_prompt(user).question
                    user = f"Question: {question}"
                turns += [Turn(role="user", content=user),
                          Turn(role="assistant", content=record.assistant_texts()[0])]
            kept.append(FlockRecord(system=system, conversations=turns))
    return kept
