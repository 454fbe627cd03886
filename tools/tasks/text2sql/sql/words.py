"""English for SQL names: plurals, articles, lemmas, readable column and table names, literal values."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlglot import exp

from tools.tasks.text2sql.sql.database import name_words, singular
from tools.tasks.text2sql.sql.literals import literal_value

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


def literal_text(node: exp.Expr) -> str:
    value = literal_value(node)
    if isinstance(node, exp.Neg):
        return "-" + str(node.this.this)
    return str(node.this) if isinstance(node, exp.Literal) else str(value)


def lemmas_of(text: str) -> set[str]:
    return {lemma_of(w) for w in re.findall(r"[A-Za-z]+", text)}
