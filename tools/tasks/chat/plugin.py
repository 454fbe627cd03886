"""Chat / character tasks: plain user/assistant dialogue, often with a persona in the system prompt.

Primary category: the persona when the data has a few recurring system prompts (role-play tasks), otherwise the
length bucket of the assistant's replies. Tags carry both.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Self

from tools.data import FlockRecord
from tools.tasks.base import Categorization, GateCheck, TaskMetric, TaskPlugin, fail, ok
from tools.tasks.chat.categories import LENGTH_BUCKETS, length_bucket, persona_id
from tools.tasks.chat.strategy import ChatStrategy
from tools.text import tokens

MAX_PERSONAS = 16
MIN_PERSONA_RECORDS = 3


def check_dialogue(record: FlockRecord) -> GateCheck:
    """Plain dialogue: starts with the user, alternates user/assistant, no reply repeated verbatim."""
    roles = [t.role for t in record.conversations]
    if roles[0] != "user":
        return fail("chat_bad_order", f"first turn is {roles[0]!r}, expected 'user'")
    for index, (prev, cur) in enumerate(itertools.pairwise(roles), start=1):
        if prev == cur:
            return fail("chat_bad_order", f"conversations[{index}]: two {cur!r} turns in a row")
    replies = [" ".join(tokens(r)) for r in record.assistant_texts()]
    if len(set(replies)) < len(replies):
        return fail("chat_repeated_reply", "an assistant reply is repeated verbatim")
    return ok()


class ChatPlugin(TaskPlugin):
    name = "chat"
    description = "Chat / character role-play: multi-turn dialogue scored on the assistant's replies."
    strategies = (ChatStrategy,)
    metrics = (TaskMetric("token_f1"), TaskMetric("bleu"))
    headline_metric = "token_f1"
    hub_tags = ("conversational",)

    def __init__(self) -> None:
        self.personas: dict[str, str] = {}

    def detect(self, records: Sequence[FlockRecord]) -> float:
        if not records:
            return 0.0
        plain = sum(1 for r in records if all(t.role in ("user", "assistant") for t in r.conversations))
        return 0.5 * plain / len(records)

    def fit(self, records: Sequence[FlockRecord]) -> Self:
        counts = Counter(persona_id(r.system) for r in records)
        recurring = {p: n for p, n in counts.items() if n >= MIN_PERSONA_RECORDS}
        if 2 <= len(recurring) <= MAX_PERSONAS and sum(recurring.values()) >= 0.8 * len(records):
            examples = {persona_id(r.system): (r.system or "")[:80] for r in records}
            self.personas = {p: f"system prompt: {examples[p]!r}" for p in sorted(recurring)}
        else:
            self.personas = {}
        return self

    def categorize(self, record: FlockRecord) -> Categorization:
        bucket = length_bucket(record)
        persona = persona_id(record.system)
        if self.personas:
            primary = persona if persona in self.personas else "persona:other"
            return Categorization(primary=primary, tags=(primary, bucket))
        return Categorization(primary=bucket, tags=(bucket, persona))

    def categories(self) -> dict[str, str]:
        if self.personas:
            return {**self.personas, "persona:other": "a system prompt seen fewer than 3 times"}
        return dict(LENGTH_BUCKETS)

    def check_validity(self, record: FlockRecord) -> GateCheck:
        return check_dialogue(record)
