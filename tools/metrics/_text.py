"""Text normalisation shared by the text metrics (SQuAD-style, the common convention for EM and token F1)."""

from __future__ import annotations

import re
import string
import unicodedata

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str, *, ignore_case: bool = True, ignore_punctuation: bool = False,
                   ignore_articles: bool = False) -> str:
    """NFKC, optional casefold / punctuation and article removal, whitespace collapsed and stripped."""
    text = unicodedata.normalize("NFKC", text)
    if ignore_case:
        text = text.casefold()
    if ignore_punctuation:
        text = text.translate(_PUNCT)
    if ignore_articles:
        text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())
