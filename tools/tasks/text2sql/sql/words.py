"""English for SQL names: the words of an identifier, singulars and plurals, articles, lemmas, readable names."""

from __future__ import annotations

import re
from collections.abc import Sequence


def name_words(name: str) -> list[str]:
    """The lower-case words of an identifier: ``unit_price`` and ``unitPrice`` give ``['unit', 'price']``."""
    parts = re.split(r"[_\s]+|(?<=[a-z])(?=[A-Z])", name)
    return [p.lower() for p in parts if p]


def singular(word: str) -> str:
    """A plural English noun's singular (``categories`` -> ``category``); other words unchanged."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


_IRREGULAR = {"person": "people", "child": "children", "staff": "staff", "man": "men", "woman": "women",
              "data": "data", "series": "series", "species": "species", "info": "info"}
_IRREGULAR_SINGULAR = {v: k for k, v in _IRREGULAR.items()}


def plural_noun(noun: str) -> str:
    words = noun.split()
    last = words[-1]
    if last in _IRREGULAR:
        plural = _IRREGULAR[last]
    elif last.endswith("s") and singular(last) != last:
        plural = last
    elif last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        plural = last[:-1] + "ies"
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        plural = last + "es"
    else:
        plural = last + "s"
    return " ".join([*words[:-1], plural])


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def lemma_of(word: str) -> str:
    lowered = word.lower()
    return _IRREGULAR_SINGULAR.get(lowered) or singular(lowered)


def humanize(name: str) -> str:
    """``unit_price`` -> ``unit price``; ``orderDate`` -> ``order date``."""
    return " ".join(name_words(name))


def table_noun(name: str, *, plural: bool = True) -> str:
    words = name_words(name)
    if not words:
        return name
    singular = " ".join([*words[:-1], lemma_of(words[-1])])
    return plural_noun(singular) if plural else singular


def join_words(items: Sequence[str], conjunction: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def lemmas_of(text: str) -> set[str]:
    return {lemma_of(w) for w in re.findall(r"[A-Za-z]+", text)}
