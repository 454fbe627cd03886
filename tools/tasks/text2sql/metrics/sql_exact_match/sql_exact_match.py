"""SQL exact match: 1 when prediction and gold are the same query after normalization, else 0.

Normalization (:func:`normalize_sql`, sqlglot, SQLite dialect): the query is parsed and written back, so keyword
case, whitespace, ``!=``/``<>``, optional ``AS``, a trailing semicolon and Markdown code fences do not matter;
identifiers are unquoted where quoting is not needed and lower-cased (SQLite names are case-insensitive); string
literals keep their case. Anything else (alias names, column order, join order, ``COUNT(*)`` vs ``COUNT(id)``)
counts, which is why execution accuracy is the primary SQL metric and this one a strict companion. A prediction
that does not parse is compared by its whitespace-collapsed text.

Entry points: :func:`exact_match` (plain Python), :func:`compute` (dict form, with a per-category breakdown from
the gold SQL) and the ``evaluate`` module class.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import datasets
import evaluate
import sqlglot
from sqlglot import exp

from tools.tasks.text2sql.sql.categories import categorize_sql, clean_sql

_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@lru_cache(maxsize=65536)
def normalize_sql(sql: str) -> str:
    """The canonical text of a query (see the module docstring)."""
    text = clean_sql(sql or "")
    try:
        tree = sqlglot.parse_one(text, read="sqlite")
        if tree is None:
            return " ".join(text.split())
        for identifier in tree.find_all(exp.Identifier):
            if identifier.quoted and _SIMPLE.match(identifier.this):
                identifier.set("quoted", False)
            if not identifier.quoted:
                identifier.set("this", identifier.this.lower())
        return str(tree.sql(dialect="sqlite", normalize_functions="upper"))
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError):  # unparsable, or nested past the parser
        return " ".join(text.split())


def exact_match(predictions: Sequence[str], golds: Sequence[str]) -> list[bool]:
    """Per-example exact match after normalization."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} golds")
    return [normalize_sql(p) == normalize_sql(g) for p, g in zip(predictions, golds, strict=True)]


def compute(predictions: Sequence[str], references: Sequence[Any]) -> dict[str, Any]:
    """``{"sql_exact_match": mean, "count", "per_category": {category: mean}}``; references are gold SQL strings
    or mappings with an ``sql`` key (as the execution metric takes them)."""
    golds = [str(r["sql"]) if isinstance(r, dict) else str(r) for r in references]
    hits = exact_match(predictions, golds)
    by_category: dict[str, list[bool]] = defaultdict(list)
    for gold, hit in zip(golds, hits, strict=True):
        by_category[categorize_sql(gold)[0]].append(hit)
    return {"sql_exact_match": sum(hits) / len(hits) if hits else 0.0, "count": len(hits),
            "per_category": {c: sum(v) / len(v) for c, v in sorted(by_category.items())}}


class SqlExactMatch(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="",
            inputs_description="predictions: list of SQL strings; references: list of gold SQL strings",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        return compute(predictions, references)
