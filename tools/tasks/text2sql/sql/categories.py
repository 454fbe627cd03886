"""The categories of a SQL query, from its syntax tree (sqlglot).

A query carries every category that applies; its primary category is the first in :data:`CATEGORY_PRIORITY`, the
most demanding construct the query uses.
"""

from __future__ import annotations

import re
from functools import lru_cache

import sqlglot
from sqlglot import exp

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "set_operation": "UNION / INTERSECT / EXCEPT of two queries",
    "nested": "a subquery (IN / EXISTS / scalar comparison / derived table / CTE)",
    "group_by": "GROUP BY, with or without HAVING",
    "join": "a JOIN of two or more tables",
    "aggregation": "an aggregate (COUNT/SUM/AVG/MIN/MAX) over the whole result, no GROUP BY",
    "order_limit": "ORDER BY and/or LIMIT",
    "filter": "a plain SELECT with WHERE conditions (or none)",
}
CATEGORY_PRIORITY: tuple[str, ...] = tuple(CATEGORY_DESCRIPTIONS)
UNPARSABLE = "unparsable"
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def clean_sql(text: str) -> str:
    """The SQL of an assistant answer: code fences and a trailing semicolon removed."""
    sql = _FENCE.sub("", text.strip()).strip()
    return sql.rstrip(";").strip()


def sql_categories(tree: exp.Expression) -> tuple[str, ...]:
    """Every category a parsed query belongs to, in priority order."""
    found: set[str] = set()
    if tree.find(exp.SetOperation) is not None:
        found.add("set_operation")
    for select in tree.find_all(exp.Select):
        parent = select.parent
        while parent is not None and not isinstance(parent, exp.Select):
            parent = parent.parent
        if parent is not None:
            found.add("nested")
            break
    if tree.find(exp.Group) is not None:
        found.add("group_by")
    if tree.find(exp.Join) is not None:
        found.add("join")
    if tree.find(exp.AggFunc) is not None:
        found.add("aggregation")
    if tree.find(exp.Order) is not None or tree.find(exp.Limit) is not None:
        found.add("order_limit")
    if not found:
        found.add("filter")
    return tuple(c for c in CATEGORY_PRIORITY if c in found)


@lru_cache(maxsize=65536)
def categorize_sql(sql: str) -> tuple[str, tuple[str, ...]]:
    """``(primary, all_categories)`` of a SQL query; ``('unparsable', ())`` when sqlglot cannot parse it."""
    try:
        tree = sqlglot.parse_one(clean_sql(sql), read="sqlite")
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError, ValueError):
        return UNPARSABLE, ()
    if not isinstance(tree, exp.Expression):
        return UNPARSABLE, ()
    tags = sql_categories(tree)
    return tags[0], tags


def looks_like_sql(text: str) -> bool:
    return bool(re.match(r"^\s*(```sql\s*)?(SELECT|WITH)\b", text, re.IGNORECASE))
