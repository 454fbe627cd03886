"""How a task writes its SQL, learned from its real queries, so sampled SQL looks like the task's own.

FLock scores the model's loss on the SQL tokens, so synthetic SQL that spells things the task's way (table aliases
or not, ``AS`` or not, ``T1`` or initials, ``!=`` or ``<>``, ``GROUP BY t.id, t.name``) teaches the right tokens.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from tools.tasks.text2sql.sql.literals import parse_sql


@dataclass(frozen=True)
class SQLStyle:
    """Spelling habits of a task's SQL. Defaults follow the common hand-written style (initials, ``AS``)."""

    #: How tables are aliased in multi-table queries: initials (``orders AS o``), numbered (``T1``) or not at all.
    alias_kind: Literal["initials", "numbered", "none"] = "initials"
    #: ``orders AS o`` rather than ``orders o``.
    alias_keyword: bool = True
    #: Alias a table even when it is the only one (``SELECT o.id FROM orders AS o``).
    alias_single: bool = False
    #: ``INNER JOIN`` rather than ``JOIN``.
    inner_join: bool = False
    #: Group an entity by key and name (``GROUP BY c.id, c.name``) rather than by name alone.
    group_by_key: bool = True
    #: Share of aggregates given a column alias (``SUM(x) AS total``).
    aggregate_alias_rate: float = 0.15
    #: Inequality operator.
    not_equal: str = "!="
    #: Share of ascending sorts written with an explicit ``ASC``.
    explicit_asc_rate: float = 0.3
    #: Keywords in upper case.
    upper_keywords: bool = True


def infer_style(sqls: Iterable[str]) -> SQLStyle:
    """The style of a set of queries; queries that do not parse are ignored, and no evidence keeps the default."""
    multi = aliased = numbered = with_as = single = single_aliased = inner = 0
    grouped_entity = grouped_key = aggregates = aggregate_aliases = neq_bang = neq_angle = 0
    ascending = explicit_asc = upper = lower = 0
    for sql in sqls:
        tree = parse_sql(sql)
        if tree is None:
            continue
        if re.search(r"\bselect\b", sql):
            lower += 1
        if re.search(r"\bSELECT\b", sql):
            upper += 1
        neq_bang += sql.count("!=")
        neq_angle += sql.count("<>")
        inner += len(re.findall(r"\bINNER\s+JOIN\b", sql, re.IGNORECASE))
        with_as += len(re.findall(r"\b(?:FROM|JOIN)\s+\w+\s+AS\s+\w+", sql, re.IGNORECASE))
        for select in tree.find_all(exp.Select):
            tables = [t for t in select.find_all(exp.Table) if t.parent_select is select]
            if len(tables) > 1:
                multi += 1
                if all(t.alias for t in tables):
                    aliased += 1
                    if all(re.fullmatch(r"[Tt]\d+", t.alias) for t in tables):
                        numbered += 1
            elif len(tables) == 1:
                single += 1
                single_aliased += bool(tables[0].alias)
            group = select.args.get("group")
            if group is not None and len(tables) > 1:
                grouped_entity += 1
                names = [c.name.lower() for c in group.expressions if isinstance(c, exp.Column)]
                grouped_key += "id" in names and len(names) > 1
        for agg in tree.find_all(exp.AggFunc):
            aggregates += 1
            aggregate_aliases += isinstance(agg.parent, exp.Alias)
        for ordered in tree.find_all(exp.Ordered):
            if not ordered.args.get("desc"):
                ascending += 1
        explicit_asc += len(re.findall(r"\bASC\b", sql, re.IGNORECASE))
    alias_kind: Literal["initials", "numbered", "none"] = "initials"
    if multi:
        if aliased * 2 < multi:
            alias_kind = "none"
        elif numbered * 2 > aliased:
            alias_kind = "numbered"
    return SQLStyle(
        alias_kind=alias_kind,
        alias_keyword=with_as > 0 or not multi,
        alias_single=single > 0 and single_aliased * 2 > single,
        inner_join=inner > 0 and inner * 2 >= multi,
        group_by_key=grouped_key * 2 >= grouped_entity if grouped_entity else True,
        aggregate_alias_rate=round(aggregate_aliases / aggregates, 2) if aggregates else 0.15,
        not_equal="<>" if neq_angle > neq_bang else "!=",
        explicit_asc_rate=round(min(1.0, explicit_asc / ascending), 2) if ascending else 0.3,
        upper_keywords=upper >= lower,
    )
