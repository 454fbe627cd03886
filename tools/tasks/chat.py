"""Chat / character tasks: plain user/assistant dialogue, often with a persona in the system prompt.

Primary category: the persona when the data has a few recurring system prompts (role-play tasks), otherwise the
length bucket of the assistant's replies. Tags carry both.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence

from tools.data import FlockRecord
from tools.tasks.base import Categorization, TaskPlugin

LENGTH_BUCKETS: dict[str, str] = {
    "short": "assistant replies under 60 words on average",
    "medium": "assistant replies of 60-200 words on average",
    "long": "assistant replies over 200 words on average",
}
MAX_PERSONAS = 16
MIN_PERSONA_RECORDS = 3


def length_bucket(record: FlockRecord) -> str:
    replies = record.assistant_texts()
    words = sum(len(r.split()) for r in replies) / max(1, len(replies))
    if words < 60:
        return "short"
    return "medium" if words <= 200 else "long"


def persona_id(system: str | None) -> str:
    """A short stable name for a system prompt: its first words plus a hash of the whole text."""
    text = (system or "").strip()
    if not text:
        return "persona:none"
    words = re.findall(r"\w+", text.lower())[:3]
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]
    return "persona:" + "-".join([*words, digest])


class ChatPlugin(TaskPlugin):
    name = "chat"
    description = "Chat / character role-play: multi-turn dialogue scored on the assistant's replies."

    def __init__(self) -> None:
        self.personas: dict[str, str] = {}

    def detect(self, records: Sequence[FlockRecord]) -> float:
        if not records:
            return 0.0
        plain = sum(1 for r in records if all(t.role in ("user", "assistant") for t in r.conversations))
        return 0.5 * plain / len(records)

    def fit(self, records: Sequence[FlockRecord]) -> ChatPlugin:
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
