"""Word-level views of text, shared by the quality gates (dedup, decontamination), the diversity report and the
task plugins' checks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Lowercased word and punctuation tokens."""
    return _TOKEN.findall(text.lower())


def ngrams(items: Sequence[str], n: int) -> set[str]:
    """Word n-grams joined by spaces; a sequence shorter than n is one n-gram (itself)."""
    if not items:
        return set()
    if len(items) < n:
        return {" ".join(items)}
    return {" ".join(items[i:i + n]) for i in range(len(items) - n + 1)}


def normalized_hash(text: str) -> str:
    return hashlib.sha256(" ".join(tokens(text)).encode("utf-8")).hexdigest()
