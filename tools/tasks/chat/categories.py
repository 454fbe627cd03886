"""What puts a chat record in a category: the persona of its system prompt and the length of its replies."""

from __future__ import annotations

import hashlib
import re

from tools.data import FlockRecord

LENGTH_BUCKETS: dict[str, str] = {
    "short": "assistant replies under 60 words on average",
    "medium": "assistant replies of 60-200 words on average",
    "long": "assistant replies over 200 words on average",
}


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
