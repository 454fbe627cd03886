"""Literal values in SQL: which a question must name, and which columns they filter (for the literal pool).

Shared by the database synthesizer (the pool puts a domain's real filter values into the data), the faithfulness
check (every literal must appear in the question) and the execution metric (gold literals populate its databases).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp

from tools.tasks.text2sql.sql.database import pool_key
from tools.tasks.text2sql.sql.schema import Schema
from tools.tasks.text2sql.sql.values import SQLValue

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike, exp.Is)


@dataclass(frozen=True)
class LiteralUse:
    """One literal of a query, the column it is compared with (if any) and how."""

    value: SQLValue
    text: str
    column: exp.Column | None
    operator: str
    #: False for literals a faithful question may leave implicit: ``= 0``/``= 1`` on a column (a flag) and
    #: ``LIMIT 1`` ("the most ..."), and the constant of ``SELECT 1`` inside EXISTS.
    must_mention: bool = True


def literal_value(node: exp.Expr) -> SQLValue:
    """The Python value of a literal node (``Neg(Literal)`` included); strings stay strings."""
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        inner = literal_value(node.this)
        return -inner if isinstance(inner, int | float) else inner
    if isinstance(node, exp.Null):
        return None
    if not isinstance(node, exp.Literal):
        raise TypeError(f"not a literal: {node.sql()}")
    if node.is_string:
        return str(node.this)
    text = str(node.this)
    try:
        value = int(text)
    except ValueError:
        return float(text)
    # SQLite reads an integer literal beyond 64 bits as REAL; so do we (a Python int that size cannot be stored).
    return value if -(2**63) <= value < 2**63 else float(text)


def like_text(pattern: str) -> str:
    """The words a LIKE pattern asks for: ``'%Smith%'`` -> ``Smith``."""
    return pattern.replace("%", " ").replace("_", " ").strip()


def _is_literal(node: exp.Expr | None) -> bool:
    return isinstance(node, exp.Literal) or (isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal))


def query_literals(tree: exp.Expr) -> list[LiteralUse]:
    """Every literal in the query, with the column it is compared to when there is one."""
    uses: list[LiteralUse] = []
    claimed: set[int] = set()

    def add(node: exp.Expr, column: exp.Column | None, operator: str, must: bool = True) -> None:
        claimed.add(id(node))
        value = literal_value(node)
        text = like_text(str(value)) if operator == "like" and isinstance(value, str) else str(value)
        if column is not None and operator in ("eq", "neq") and value in (0, 1) and not isinstance(value, str):
            must = False
        uses.append(LiteralUse(value=value, text=text, column=column, operator=operator, must_mention=must))

    for node in tree.walk():
        if isinstance(node, _COMPARISONS):
            left, right = node.this, node.expression
            if isinstance(left, exp.Column) and _is_literal(right):
                add(right, left, node.key)
            elif isinstance(right, exp.Column) and _is_literal(left):
                add(left, right, node.key)
        elif isinstance(node, exp.In) and isinstance(node.this, exp.Column):
            for item in node.expressions:
                if _is_literal(item):
                    add(item, node.this, "in")
        elif isinstance(node, exp.Between) and isinstance(node.this, exp.Column):
            for bound in (node.args.get("low"), node.args.get("high")):
                if bound is not None and _is_literal(bound):
                    add(bound, node.this, "between")
        elif isinstance(node, exp.Limit | exp.Offset):
            target = node.expression
            if _is_literal(target):
                add(target, None, node.key, must=literal_value(target) != 1 or isinstance(node, exp.Offset))
    for node in tree.find_all(exp.Literal):
        if id(node) in claimed or (isinstance(node.parent, exp.Neg) and id(node.parent) in claimed):
            continue
        projected = isinstance(node.parent, exp.Select) and node in node.parent.expressions
        value = literal_value(node)
        uses.append(LiteralUse(value, str(value), None, "other", must_mention=not projected))
    return uses


def _scope_tables(select: exp.Select) -> dict[str, str]:
    """alias or name (lower) -> table name, for the tables a SELECT reads directly."""
    tables: dict[str, str] = {}
    sources: list[exp.Expression] = []
    from_ = select.args.get("from_") or select.args.get("from")
    if from_ is not None:
        sources.append(from_.this)
    sources.extend(j.this for j in select.args.get("joins") or [])
    for source in sources:
        if isinstance(source, exp.Table):
            tables[source.alias_or_name.lower()] = source.name
    return tables


def resolve_column(column: exp.Column, schema: Schema) -> tuple[str, str] | None:
    """``(table, column)`` a column reference reads, looking outwards through enclosing SELECTs."""
    qualifier = column.table.lower()
    node: exp.Expr | None = column
    while node is not None:
        node = node.parent
        if not isinstance(node, exp.Select):
            continue
        tables = _scope_tables(node)
        if qualifier:
            if qualifier in tables:
                table = schema.table(tables[qualifier])
                found = table.column(column.name) if table else None
                return (table.name, found.name) if table and found else None
            continue
        for name in tables.values():
            table = schema.table(name)
            found = table.column(column.name) if table else None
            if table and found:
                return table.name, found.name
    return None


@lru_cache(maxsize=8192)
def parse_sql(sql: str) -> exp.Expr | None:
    """The SQLite syntax tree of ``sql``, or None when it does not parse. Cached and shared between callers:
    copy a tree (``tree.copy()``) before changing it."""
    try:
        return sqlglot.parse_one(sql, read="sqlite")
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError):  # model output nests past any parser
        return None


def literal_pool(schema: Schema, sqls: Iterable[str]) -> dict[str, list[SQLValue]]:
    """``"table.column"`` -> the literal values the queries compare that column with (in first-seen order).

    Queries that do not parse are skipped: the pool only makes synthetic data more like the real data.
    """
    pool: dict[str, list[SQLValue]] = defaultdict(list)
    for sql in sqls:
        tree = parse_sql(sql)
        if tree is None:
            continue
        for use in query_literals(tree):
            if use.column is None or use.value is None:
                continue
            resolved = resolve_column(use.column, schema)
            if resolved is None:
                continue
            value: SQLValue = use.text if use.operator == "like" else use.value
            key = pool_key(*resolved)
            if value not in pool[key]:
                pool[key].append(value)
    return dict(pool)


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    return [node]


def _satisfying(node: exp.Expr) -> tuple[exp.Column, SQLValue] | None:
    """A column and a value that makes the comparison true (``x > 5`` -> 6), when one is easy to name."""
    if isinstance(node, exp.Between) and isinstance(node.this, exp.Column) and _is_literal(node.args.get("low")):
        return node.this, literal_value(node.args["low"])
    if isinstance(node, exp.In) and isinstance(node.this, exp.Column) and node.expressions \
            and _is_literal(node.expressions[0]):
        return node.this, literal_value(node.expressions[0])
    if not isinstance(node, exp.EQ | exp.GT | exp.GTE | exp.LT | exp.LTE | exp.Like | exp.ILike):
        return None
    left, right = node.this, node.expression
    if not (isinstance(left, exp.Column) and _is_literal(right)):
        return None
    value = literal_value(right)
    if isinstance(node, exp.Like | exp.ILike):
        return (left, like_text(value)) if isinstance(value, str) else None
    if isinstance(node, exp.GT | exp.LT):
        if not isinstance(value, int | float):
            return None
        step = 1 if isinstance(value, int) else max(0.01, round(abs(value) * 0.01, 2))
        value = value + step if isinstance(node, exp.GT) else value - step
    return left, value


def literal_rows(schema: Schema, sqls: Iterable[str]) -> list[dict[str, SQLValue]]:
    """For each AND of two or more conditions on one table's columns, the values one row needs to meet them all
    (``"table.column"`` -> value), so a synthesized database has a row for that conjunction."""
    groups: list[dict[str, SQLValue]] = []
    for sql in sqls:
        tree = parse_sql(sql)
        if tree is None:
            continue
        for select in tree.find_all(exp.Select):
            where = select.args.get("where")
            if where is None:
                continue
            by_table: dict[str, dict[str, SQLValue]] = defaultdict(dict)
            for conjunct in _conjuncts(where.this):
                found = _satisfying(conjunct)
                if found is None:
                    continue
                resolved = resolve_column(found[0], schema)
                if resolved is not None:
                    by_table[resolved[0]].setdefault(pool_key(*resolved), found[1])
            groups += [group for group in by_table.values() if len(group) > 1 and group not in groups]
    return groups
