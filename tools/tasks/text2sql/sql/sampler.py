"""SQL-first generation: sample an executable query of a chosen category from a schema and its database.

:class:`QuerySampler` holds one schema, a synthesized database for it and the task's :class:`SQLStyle`. For a
target category it picks one of many query shapes (a category has 4-9 shapes, each with its own variations:
aliases, DISTINCT, BETWEEN, LIKE, IN lists, OR, several conditions, HAVING, ORDER BY / LIMIT ...). Joins follow
foreign keys (declared or inferred from names); aggregates apply to numeric columns; GROUP BY uses categorical
columns or an entity's key and name; filter values come from a *witness row* of the data, so a query's conditions
hold for at least one row. Every query is executed in the sandbox and kept only when it runs, returns at least
one row, and :func:`tools.tasks.text2sql.records.categorize_sql` gives it exactly the requested primary category.
"""

from __future__ import annotations

import math
import random
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from tools.tasks.text2sql.records import CATEGORY_PRIORITY, categorize_sql
from tools.tasks.text2sql.sql import vocab
from tools.tasks.text2sql.sql.database import SQLValue, name_words, singular
from tools.tasks.text2sql.sql.sandbox import run_query
from tools.tasks.text2sql.sql.schema import ForeignKey, Schema, Table
from tools.tasks.text2sql.sql.style import SQLStyle

Role = Literal["key", "fk", "flag", "number", "year", "date", "category", "label", "text"]
Row = dict[tuple[str, str], SQLValue]

_DATE = re.compile(r"^\d{4}-\d\d-\d\d")
_SIMPLE_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {
    "order", "group", "select", "from", "where", "table", "index", "limit", "by", "join", "on", "as", "and", "or",
    "not", "in", "is", "null", "case", "when", "then", "else", "end", "values", "key", "primary", "default",
    "check", "union", "all", "distinct", "having", "transaction", "to", "into", "set", "exists", "references",
    "do", "if", "of", "at", "asc", "desc", "like", "glob", "between", "cross", "inner", "left", "right", "full",
    "natural", "using", "with", "over", "cast", "collate", "escape", "except", "intersect", "offset", "row", "rows",
}
_NAME_WORDS = {"name", "title"}
_FILTER_ROLES: tuple[Role, ...] = ("category", "label", "number", "year", "date", "flag")
_MAX_ATTEMPTS = 60


class SamplerError(ValueError):
    """The schema cannot yield a query of the requested category (e.g. a join from a single table)."""


@dataclass(frozen=True)
class ColumnInfo:
    """A column as the sampler sees it: its role in queries and its distinct values in the database."""

    table: str
    name: str
    role: Role
    values: tuple[SQLValue, ...]

    @property
    def numeric(self) -> bool:
        return self.role in ("number", "year")


@dataclass(frozen=True)
class SampledQuery:
    """A sampled query that ran: its SQL, its categories, the shape that wrote it and what it returned."""

    sql: str
    category: str
    tags: tuple[str, ...]
    shape: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]
    row_count: int


@dataclass
class _Source:
    table: Table
    alias: str | None

    @property
    def key(self) -> str:
        return self.alias or self.table.name


@dataclass
class _From:
    sources: list[_Source]
    edges: list[ForeignKey]
    sql: str


def _is_person_table(table: Table) -> bool:
    return any(w in vocab.PERSON_TABLE_WORDS or singular(w) in vocab.PERSON_TABLE_WORDS for w in name_words(table.name))


def _ident(name: str) -> str:
    if _SIMPLE_IDENT.match(name) and name.lower() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _literal(value: SQLValue) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 10:
            return str(int(value))
        return repr(round(value, 2))
    return str(value)


def _nice(value: float, direction: Literal["below", "above"], rng: random.Random) -> float:
    """A round number strictly below or above ``value`` (``> 300`` rather than ``> 317.42``)."""
    magnitude = 10 ** math.floor(math.log10(abs(value))) if value else 1
    step = magnitude / rng.choice((1, 2, 10)) if magnitude >= 1 else 0.5
    step = max(step, 1) if abs(value) >= 20 else step
    if direction == "below":
        threshold = math.floor(value / step) * step
        if threshold >= value:
            threshold -= step
    else:
        threshold = math.ceil(value / step) * step
        if threshold <= value:
            threshold += step
    return int(threshold) if float(threshold).is_integer() else round(threshold, 2)


class QuerySampler:
    """Samples executable queries of a requested category over one schema and its (locked-down) database."""

    def __init__(self, schema: Schema, conn: sqlite3.Connection, style: SQLStyle | None = None):
        self.schema = schema
        self.conn = conn
        self.style = style or SQLStyle()
        self._row_cache: dict[str, list[Row]] = {}

    # ----- what the data looks like -------------------------------------------------------------------------
    @cached_property
    def columns(self) -> dict[str, dict[str, ColumnInfo]]:
        """table (lower) -> column (lower) -> ColumnInfo."""
        fk_columns = {(fk.table.lower(), fk.column.lower()) for fk in self.schema.foreign_keys}
        out: dict[str, dict[str, ColumnInfo]] = {}
        for table in self.schema.tables:
            count = self._scalar(f"SELECT COUNT(*) FROM {_ident(table.name)}") or 0
            infos: dict[str, ColumnInfo] = {}
            for column in table.columns:
                result = run_query(self.conn, f"SELECT DISTINCT {_ident(column.name)} FROM {_ident(table.name)} "
                                   f"WHERE {_ident(column.name)} IS NOT NULL", max_rows=5000)
                values = tuple(sorted((r[0] for r in result.rows), key=lambda v: (type(v).__name__, str(v))))
                role = self._role(table, column.name, column.kind, column.primary_key,
                                  (table.name.lower(), column.name.lower()) in fk_columns, values, int(count))
                infos[column.name.lower()] = ColumnInfo(table.name, column.name, role, values)
            out[table.name.lower()] = infos
        return out

    @staticmethod
    def _role(table: Table, name: str, kind: str, primary: bool, is_fk: bool, values: tuple[SQLValue, ...],
              count: int) -> Role:
        words = set(name_words(name))
        if is_fk:
            return "fk"
        if primary and len(table.primary_key) == 1:
            return "key"
        if name.lower() == "id" or name.lower().endswith("_id"):
            return "key"
        if kind in ("integer", "real", "boolean"):
            if values and set(values) <= {0, 1}:
                return "flag"
            if "year" in words or name.lower() in ("founded", "established"):
                return "year"
            return "number"
        if values and all(isinstance(v, str) and _DATE.match(v) for v in values):
            return "date"
        if words & _NAME_WORDS:
            return "label"
        if len(values) <= max(8, count // 2):
            return "category"
        if not any(w in words for w in ("email", "phone", "mail", "fax", "mobile")):
            return "label"
        return "text"

    def _scalar(self, sql: str) -> SQLValue:
        result = run_query(self.conn, sql)
        return result.rows[0][0] if result.ok and result.rows else None

    def info(self, table: Table, column: str) -> ColumnInfo:
        return self.columns[table.name.lower()][column.lower()]

    def infos(self, table: Table, *roles: Role) -> list[ColumnInfo]:
        return [c for c in self.columns[table.name.lower()].values() if not roles or c.role in roles]

    def label(self, table: Table) -> ColumnInfo | None:
        """The column that names a row: ``name``/``title``, else a distinctive text column, else the key."""
        labels = self.infos(table, "label")
        named = [c for c in labels if set(name_words(c.name)) & _NAME_WORDS]
        if named:
            return named[0]
        if labels:
            return labels[0]
        keys = self.infos(table, "key")
        return keys[0] if keys else None

    def _nonempty_tables(self) -> list[Table]:
        return [t for t in self.schema.tables if any(c.values for c in self.infos(t))]

    # ----- public entry point ---------------------------------------------------------------------------------
    def sample(self, category: str, rng: random.Random, *, attempts: int = _MAX_ATTEMPTS) -> SampledQuery:
        """An executed, non-empty query whose primary category is ``category``.

        Raises :class:`SamplerError` for an unknown category, or when the schema does not support the category
        (after ``attempts`` tries, naming the last reason).
        """
        if category not in CATEGORY_PRIORITY:
            raise SamplerError(f"unknown category {category!r}; known: {', '.join(CATEGORY_PRIORITY)}")
        shapes = self._shapes()[category]
        reason = "no shape applies to this schema"
        for _ in range(attempts):
            name, build, _weight = rng.choices(shapes, weights=[w for _, _, w in shapes])[0]
            query = _Query(self, rng)
            sql = build(query)
            if sql is None:
                reason = f"shape {name} does not apply"
                continue
            primary, tags = categorize_sql(sql)
            if primary != category:
                reason = f"shape {name} wrote a {primary} query"
                continue
            result = run_query(self.conn, sql, max_rows=2000)
            if not result.ok:
                reason = f"shape {name} failed to run: {result.error}"
                continue
            if not result.rows or all(all(v is None for v in row) for row in result.rows):
                reason = f"shape {name} returned no rows"
                continue
            return SampledQuery(sql=sql, category=primary, tags=tags, shape=name, tables=tuple(query.tables_used),
                                columns=result.columns, row_count=len(result.rows))
        raise SamplerError(
            f"could not sample a {category} query over tables {', '.join(self.schema.table_names)} "
            f"in {attempts} attempts (last: {reason})"
        )

    def _shapes(self) -> dict[str, list[tuple[str, Callable[[_Query], str | None], float]]]:
        return {
            "filter": [("filter.where", _Query.filter_where, 6), ("filter.distinct", _Query.filter_distinct, 2),
                       ("filter.or", _Query.filter_or, 1.5), ("filter.star", _Query.filter_star, 0.7),
                       ("filter.all_rows", _Query.filter_all_rows, 0.4)],
            "order_limit": [("order.top_k", _Query.order_top_k, 5), ("order.filtered", _Query.order_filtered, 3),
                            ("order.two_keys", _Query.order_two_keys, 1.5),
                            ("order.limit_only", _Query.order_limit_only, 0.5)],
            "aggregation": [("agg.count", _Query.agg_count, 3), ("agg.numeric", _Query.agg_numeric, 4),
                            ("agg.min_max", _Query.agg_min_max, 1.5), ("agg.count_distinct", _Query.agg_count_distinct,
                                                                       1.2)],
            "join": [("join.pair", _Query.join_pair, 5), ("join.three", _Query.join_three, 2.5),
                     ("join.aggregate", _Query.join_aggregate, 2), ("join.ordered", _Query.join_ordered, 1.5),
                     ("join.distinct", _Query.join_distinct, 1)],
            "group_by": [("group.count", _Query.group_count, 3), ("group.aggregate", _Query.group_aggregate, 3),
                         ("group.top", _Query.group_top, 2), ("group.entity", _Query.group_entity, 4),
                         ("group.foreign_key", _Query.group_foreign_key, 1)],
            "nested": [("nested.in", _Query.nested_in, 3), ("nested.not_in", _Query.nested_not_in, 2),
                       ("nested.scalar_avg", _Query.nested_scalar_avg, 2.5),
                       ("nested.scalar_extreme", _Query.nested_scalar_extreme, 2),
                       ("nested.exists", _Query.nested_exists, 2), ("nested.not_exists", _Query.nested_not_exists, 1.5),
                       ("nested.derived", _Query.nested_derived, 1.5),
                       ("nested.parent_in", _Query.nested_parent_in, 1.5),
                       ("nested.compare_row", _Query.nested_compare_row, 0.8)],
            "set_operation": [("set.same_column", _Query.set_same_column, 4), ("set.keys", _Query.set_keys, 3),
                              ("set.same_name", _Query.set_same_name, 2),
                              ("set.except_joined", _Query.set_except_joined, 1.5),
                              ("set.two_references", _Query.set_two_references, 1)],
        }

    # ----- data access for shapes -----------------------------------------------------------------------------
    def rows(self, from_: _From) -> list[Row]:
        """Every row of a FROM clause, keyed by (source key, column name): the pool of witness rows."""
        cached = self._row_cache.get(from_.sql)
        if cached is not None:
            return cached
        selected = [(s, c.name) for s in from_.sources for c in s.table.columns]
        columns = ", ".join(f"{_ident(s.key)}.{_ident(c)}" for s, c in selected)
        result = run_query(self.conn, f"SELECT {columns} {from_.sql}", max_rows=3000)
        rows = [{(s.key, c): v for (s, c), v in zip(selected, r, strict=True)} for r in result.rows]
        self._row_cache[from_.sql] = rows
        return rows


class _Query:
    """One query being written: alias allocation, keyword casing and the shape methods."""

    def __init__(self, sampler: QuerySampler, rng: random.Random):
        self.s = sampler
        self.rng = rng
        self.style = sampler.style
        self.aliases: set[str] = set()
        self.tables_used: list[str] = []
        #: (source key, column) of every column a condition was written on; display() leaves them out.
        self.filtered: set[tuple[str, str]] = set()

    # ----- spelling ---------------------------------------------------------------------------------------------
    def kw(self, text: str) -> str:
        return text if self.style.upper_keywords else text.lower()

    def alias_for(self, table: Table, hint: str | None = None) -> str:
        if self.style.alias_kind == "numbered":
            alias = f"T{len(self.aliases) + 1}"
            self.aliases.add(alias)
            return alias
        words = name_words(hint or table.name) or ["t"]
        initials = "".join(w[0] for w in words if w[0].isalpha()) or "t"
        candidates = [initials, words[0][:2], words[0][:3], *(f"{initials}{i}" for i in range(2, 9))]
        alias = next(c for c in candidates if c.lower() not in self.aliases and c.lower() not in _RESERVED)
        self.aliases.add(alias.lower())
        return alias

    def source(self, table: Table, *, aliased: bool, hint: str | None = None) -> _Source:
        self.tables_used.append(table.name)
        if not aliased or self.style.alias_kind == "none":
            return _Source(table, None)
        return _Source(table, self.alias_for(table, hint))

    def table_sql(self, src: _Source) -> str:
        if src.alias is None:
            return _ident(src.table.name)
        sep = f" {self.kw('AS')} " if self.style.alias_keyword else " "
        return f"{_ident(src.table.name)}{sep}{src.alias}"

    def ref(self, src: _Source, column: str, *, qualify: bool) -> str:
        if qualify:
            return f"{_ident(src.key)}.{_ident(column)}"
        return _ident(column)

    def join_word(self) -> str:
        return self.kw("INNER JOIN" if self.style.inner_join else "JOIN")

    def agg(self, func: str, arg: str, alias_hint: str | None = None) -> tuple[str, str | None]:
        """An aggregate expression and, at the style's rate, a column alias for it."""
        text = f"{self.kw(func)}({arg})"
        if alias_hint and self.rng.random() < self.style.aggregate_alias_rate:
            return f"{text} {self.kw('AS')} {alias_hint}", alias_hint
        return text, None

    # ----- building blocks --------------------------------------------------------------------------------------
    def single(self, table: Table | None = None, *, need: Sequence[Role] = ()) -> _From | None:
        tables = [t for t in self.s._nonempty_tables() if all(self.s.infos(t, r) for r in need)]
        if table is None:
            if not tables:
                return None
            table = self.rng.choice(tables)
        aliased = self.style.alias_single and self.style.alias_kind != "none"
        src = self.source(table, aliased=aliased)
        return _From([src], [], f"{self.kw('FROM')} {self.table_sql(src)}")

    def joined(self, length: int = 2) -> _From | None:
        """A FROM clause joining ``length`` tables along foreign keys (child.fk = parent.key)."""
        edges = [fk for fk in self.s.schema.foreign_keys
                 if fk.table.lower() != fk.ref_table.lower() or self.rng.random() < 0.3]
        edges = [fk for fk in edges if self.s.info(self.s.schema.require_table(fk.table), fk.column).values]
        if not edges:
            return None
        first = self.rng.choice(edges)
        chosen = [first]
        if length >= 3:
            joined = {first.table.lower(), first.ref_table.lower()}
            # Extend along a chain or to a junction's other parent; two children of one parent would fan out.
            more = [fk for fk in edges if fk is not first
                    and not ({fk.table.lower(), fk.ref_table.lower()} <= joined)
                    and (fk.table.lower() in joined
                         or (fk.ref_table.lower() in joined and fk.ref_table.lower() != first.ref_table.lower()))]
            if not more:
                return None
            chosen.append(self.rng.choice(more))
        schema = self.s.schema
        child = schema.require_table(first.table)
        parent = schema.require_table(first.ref_table)
        self_join = child.name.lower() == parent.name.lower()
        start_with_child = self.rng.random() < 0.6 or self_join
        order = [child, parent] if start_with_child else [parent, child]
        hints = [None, name_words(first.column)[0]] if self_join else [None, None]
        sources = [self.source(order[0], aliased=True, hint=hints[0]),
                   self.source(order[1], aliased=True, hint=hints[1])]
        by_table = {order[0].name.lower(): sources[0], order[1].name.lower(): sources[1]}
        child_src, parent_src = (sources[0], sources[1]) if start_with_child else (sources[1], sources[0])
        sql = (f"{self.kw('FROM')} {self.table_sql(sources[0])} {self.join_word()} {self.table_sql(sources[1])} "
               f"{self.kw('ON')} {self.ref(child_src, first.column, qualify=True)} = "
               f"{self.ref(parent_src, first.ref_column, qualify=True)}")
        for fk in chosen[1:]:
            new_is_child = fk.table.lower() not in by_table
            new_table = schema.require_table(fk.table if new_is_child else fk.ref_table)
            src = self.source(new_table, aliased=True)
            old = by_table[(fk.ref_table if new_is_child else fk.table).lower()]
            child_ref = self.ref(src if new_is_child else old, fk.column, qualify=True)
            parent_ref = self.ref(old if new_is_child else src, fk.ref_column, qualify=True)
            sql += f" {self.join_word()} {self.table_sql(src)} {self.kw('ON')} {child_ref} = {parent_ref}"
            sources.append(src)
            by_table[new_table.name.lower()] = src
        return _From(sources, chosen, sql)

    def witness(self, from_: _From) -> Row | None:
        rows = self.s.rows(from_)
        return self.rng.choice(rows) if rows else None

    def display(self, src: _Source, *, qualify: bool, extra: int | None = None,
                exclude: Sequence[str] = ()) -> list[str]:
        """Columns to show for a table: usually its label, plus a few descriptive columns."""
        label = self.s.label(src.table)
        chosen: list[ColumnInfo] = []
        if label is not None and (self.rng.random() < 0.85 or label.role == "key"):
            chosen.append(label)
        skip = set(exclude) | {name for key, name in self.filtered if key == src.key}
        if label is not None and label.name in skip and label.role != "key":
            chosen = []
        others = [c for c in self.s.infos(src.table, "category", "number", "year", "date", "label")
                  if c not in chosen and c.name not in skip]
        count = extra if extra is not None else self.rng.choices((0, 1, 2), (0.5, 0.35, 0.15))[0]
        if not chosen:
            count = max(count, 1)
        chosen += self.rng.sample(others, min(count, len(others)))
        if not chosen:
            keys = self.s.infos(src.table, "key")
            chosen = keys[:1] or [next(iter(self.s.columns[src.table.name.lower()].values()))]
        return [self.ref(src, c.name, qualify=qualify) for c in chosen]

    def condition(self, src: _Source, info: ColumnInfo, value: SQLValue, *, qualify: bool) -> str | None:
        """A condition on ``info`` that ``value`` (from the witness row) satisfies."""
        if value is None:
            return None
        rng = self.rng
        ref = self.ref(src, info.name, qualify=qualify)
        others = [v for v in info.values if v != value]
        role = info.role
        roll = rng.random()
        if role in ("flag", "fk", "key"):
            return f"{ref} = {_literal(value)}"
        if role == "category" and isinstance(value, str):
            if roll < 0.6 or not others:
                return f"{ref} = {_literal(value)}"
            if roll < 0.75:
                picks = [value, *rng.sample(others, min(len(others), rng.randint(1, 2)))]
                rng.shuffle(picks)
                return f"{ref} {self.kw('IN')} ({', '.join(_literal(v) for v in picks)})"
            if roll < 0.88:
                return f"{ref} {self.style.not_equal} {_literal(rng.choice(others))}"
            prefix = value.split()[0] if " " in value else value[: max(1, min(3, len(value) - 1))]
            return f"{ref} {self.kw('LIKE')} {_literal(prefix + '%')}"
        if role == "label" and isinstance(value, str):
            words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]+", value) if len(w) > 2]
            if roll < 0.65 or not words:
                return f"{ref} = {_literal(value)}"
            if roll < 0.9:
                return f"{ref} {self.kw('LIKE')} {_literal('%' + rng.choice(words) + '%')}"
            return f"{ref} {self.kw('LIKE')} {_literal(value[0] + '%')}"
        if role == "date" and isinstance(value, str):
            year, month = value[:4], value[5:7]
            first, last, month_start = f"{year}-01-01", f"{year}-12-31", f"{year}-{month}-01"
            next_year = f"{int(year) + 1}-01-01"
            options: list[tuple[float, str, Callable[[SQLValue], bool]]] = [
                (3, f"{ref} >= {_literal(month_start)}", lambda v: str(v) >= month_start),
                (2.5, f"{ref} < {_literal(next_year)}", lambda v: str(v) < next_year),
                (2.5, f"{ref} {self.kw('BETWEEN')} {_literal(first)} {self.kw('AND')} {_literal(last)}",
                 lambda v: first <= str(v) <= last),
                (1, f"{ref} {self.kw('LIKE')} {_literal(year + '%')}", lambda v: str(v).startswith(year)),
                (1, f"{ref} = {_literal(value)}", lambda v: v == value),
            ]
            return self._selective(options, info)
        if role in ("number", "year") and isinstance(value, int | float):
            return self._selective(self._numeric_options(ref, info, value), info)
        return f"{ref} = {_literal(value)}"

    def _numeric_options(self, ref: str, info: ColumnInfo, value: float) -> list[
            tuple[float, str, Callable[[SQLValue], bool]]]:
        rng = self.rng

        def num(v: SQLValue) -> float:
            return float(v) if isinstance(v, int | float) else math.nan

        if info.role == "year" or (isinstance(value, int) and len(info.values) <= 12):
            span = rng.randint(1, 3) if info.role == "year" else 1
            low, high = value - span, value + span
            return [
                (4.5, f"{ref} = {_literal(value)}", lambda v: v == value),
                (2, f"{ref} > {_literal(low)}", lambda v: num(v) > low),
                (1.5, f"{ref} < {_literal(high)}", lambda v: num(v) < high),
                (1, f"{ref} >= {_literal(value)}", lambda v: num(v) >= value),
                (1, f"{ref} {self.kw('BETWEEN')} {_literal(low)} {self.kw('AND')} {_literal(high)}",
                 lambda v: low <= num(v) <= high),
            ]
        below, above = _nice(value, "below", rng), _nice(value, "above", rng)
        return [
            (4, f"{ref} > {_literal(below)}", lambda v: num(v) > below),
            (3, f"{ref} < {_literal(above)}", lambda v: num(v) < above),
            (1.5, f"{ref} {self.kw('BETWEEN')} {_literal(below)} {self.kw('AND')} {_literal(above)}",
             lambda v: below <= num(v) <= above),
            (1.5, f"{ref} >= {_literal(value)}", lambda v: num(v) >= value),
            (0.5, f"{ref} <= {_literal(value)}", lambda v: num(v) <= value),
        ]

    def _selective(self, options: list[tuple[float, str, Callable[[SQLValue], bool]]], info: ColumnInfo) -> str:
        """One of the options (all hold for the witness value) that leaves out at least one value of the column, so
        the condition filters something; the first option when none does."""
        useful = [o for o in options if not all(o[2](v) for v in info.values)] or options[:1]
        return self.rng.choices(useful, weights=[w for w, _, _ in useful])[0][1]

    def conditions(self, from_: _From, row: Row, *, count: int, qualify: bool,
                   exclude: Sequence[tuple[str, str]] = (), roles: Sequence[Role] = _FILTER_ROLES) -> list[str]:
        """Up to ``count`` conditions the witness ``row`` satisfies, on distinct columns. A condition naming one
        row (``name = '...'``) is only ever alone: beside other conditions it would make them pointless."""
        if count > 1:
            roles = [r for r in roles if r != "label"]
        candidates = [(src, info) for src in from_.sources for info in self.s.infos(src.table, *roles)
                      if (src.key, info.name) not in exclude and row.get((src.key, info.name)) is not None]
        picked = self.rng.sample(candidates, min(count, len(candidates)))
        out: list[str] = []
        for src, info in picked:
            text = self.condition(src, info, row[(src.key, info.name)], qualify=qualify)
            if text:
                out.append(text)
                self.filtered.add((src.key, info.name))
        return out

    def where(self, conds: Sequence[str]) -> str:
        return f" {self.kw('WHERE')} " + f" {self.kw('AND')} ".join(conds) if conds else ""

    def n_conditions(self, low: int = 1) -> int:
        return self.rng.choices((low, low + 1, low + 2), (0.6, 0.3, 0.1))[0]

    def select(self, items: Sequence[str], *, distinct: bool = False) -> str:
        return f"{self.kw('SELECT')} {self.kw('DISTINCT') + ' ' if distinct else ''}{', '.join(items)}"

    def direction(self, descending: bool) -> str:
        if descending:
            return f" {self.kw('DESC')}"
        return f" {self.kw('ASC')}" if self.rng.random() < self.style.explicit_asc_rate else ""

    def limit(self, k: int) -> str:
        return f" {self.kw('LIMIT')} {k}"

    # ----- filter -----------------------------------------------------------------------------------------------
    def filter_where(self) -> str | None:
        from_ = self.single()
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        conds = self.conditions(from_, row, count=self.n_conditions(), qualify=qualify)
        if not conds:
            return None
        shown = self.display(src, qualify=qualify)
        return f"{self.select(shown)} {from_.sql}{self.where(conds)}"

    def filter_distinct(self) -> str | None:
        from_ = self.single(need=("category",))
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        target = self.rng.choice(self.s.infos(src.table, "category"))
        conds = self.conditions(from_, row, count=self.rng.choice((0, 1, 1)), qualify=qualify,
                                exclude=[(src.key, target.name)])
        return f"{self.select([self.ref(src, target.name, qualify=qualify)], distinct=True)} {from_.sql}" \
               f"{self.where(conds)}"

    def filter_or(self) -> str | None:
        from_ = self.single(need=("category",))
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        info = self.rng.choice([c for c in self.s.infos(src.table, "category") if len(c.values) > 1] or [None])
        if info is None:
            return None
        value = row[(src.key, info.name)]
        other = self.rng.choice([v for v in info.values if v != value])
        ref = self.ref(src, info.name, qualify=qualify)
        either = f"{ref} = {_literal(value)} {self.kw('OR')} {ref} = {_literal(other)}"
        extra = self.conditions(from_, row, count=self.rng.choice((0, 1)), qualify=qualify,
                                exclude=[(src.key, info.name)])
        conds = [f"({either})", *extra] if extra else [either]
        return f"{self.select(self.display(src, qualify=qualify, exclude=[info.name]))} {from_.sql}" \
               f"{self.where(conds)}"

    def filter_star(self) -> str | None:
        from_ = self.single()
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        conds = self.conditions(from_, row, count=1, qualify=from_.sources[0].alias is not None)
        return f"{self.select(['*'])} {from_.sql}{self.where(conds)}" if conds else None

    def filter_all_rows(self) -> str | None:
        from_ = self.single()
        if from_ is None:
            return None
        src = from_.sources[0]
        return f"{self.select(self.display(src, qualify=src.alias is not None, extra=1))} {from_.sql}"

    # ----- order / limit ----------------------------------------------------------------------------------------
    def _sortable(self, src: _Source) -> list[ColumnInfo]:
        return self.s.infos(src.table, "number", "year", "date", "label")

    def order_top_k(self) -> str | None:
        from_ = self.single()
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        keys = [c for c in self._sortable(src) if c.role != "label"]
        if not keys:
            return None
        key = self.rng.choice(keys)
        shown = self.display(src, qualify=qualify, extra=0, exclude=[key.name])
        shown.append(self.ref(src, key.name, qualify=qualify))
        descending = self.rng.random() < 0.65
        k = self.rng.choice((1, 3, 5, 5, 10))
        return f"{self.select(shown)} {from_.sql} {self.kw('ORDER BY')} {self.ref(src, key.name, qualify=qualify)}" \
               f"{self.direction(descending)}{self.limit(k)}"

    def order_filtered(self) -> str | None:
        from_ = self.single()
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        keys = self._sortable(src)
        if not keys:
            return None
        key = self.rng.choice(keys)
        conds = self.conditions(from_, row, count=1, qualify=qualify, exclude=[(src.key, key.name)])
        shown = self.display(src, qualify=qualify, exclude=[key.name])
        if self.ref(src, key.name, qualify=qualify) not in shown and self.rng.random() < 0.6:
            shown.append(self.ref(src, key.name, qualify=qualify))
        tail = self.limit(self.rng.choice((3, 5, 10))) if self.rng.random() < 0.3 else ""
        return (f"{self.select(shown)} {from_.sql}{self.where(conds)} {self.kw('ORDER BY')} "
                f"{self.ref(src, key.name, qualify=qualify)}{self.direction(self.rng.random() < 0.5)}{tail}")

    def order_two_keys(self) -> str | None:
        from_ = self.single(need=("category",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        first = self.rng.choice(self.s.infos(src.table, "category"))
        seconds = [c for c in self._sortable(src) if c.name != first.name]
        if not seconds:
            return None
        second = self.rng.choice(seconds)
        shown = self.display(src, qualify=qualify, extra=0, exclude=[first.name, second.name])
        for c in (first, second):
            ref = self.ref(src, c.name, qualify=qualify)
            if ref not in shown:
                shown.append(ref)
        order = (f"{self.ref(src, first.name, qualify=qualify)}{self.direction(False)}, "
                 f"{self.ref(src, second.name, qualify=qualify)}{self.direction(self.rng.random() < 0.5)}")
        return f"{self.select(shown)} {from_.sql} {self.kw('ORDER BY')} {order}"

    def order_limit_only(self) -> str | None:
        from_ = self.single()
        if from_ is None:
            return None
        src = from_.sources[0]
        return f"{self.select(self.display(src, qualify=src.alias is not None))} {from_.sql}" \
               f"{self.limit(self.rng.choice((3, 5, 10)))}"

    # ----- aggregation ------------------------------------------------------------------------------------------
    def _filters(self, from_: _From, *, qualify: bool, low: int = 0, exclude: Sequence[str] = ()) -> list[str]:
        """Filters for an aggregate: never on the row-naming label (a count of one named row says nothing)."""
        row = self.witness(from_)
        if row is None:
            return []
        count = self.rng.choices((low, low + 1, low + 2), (0.4, 0.45, 0.15))[0]
        src = from_.sources[0]
        roles = [r for r in _FILTER_ROLES if r != "label"]
        return self.conditions(from_, row, count=count, qualify=qualify, roles=roles,
                               exclude=[(src.key, name) for name in exclude])

    def agg_count(self) -> str | None:
        from_ = self.single()
        if from_ is None:
            return None
        conds = self._filters(from_, qualify=from_.sources[0].alias is not None, low=1)
        return f"{self.select([self.agg('COUNT', '*')[0]])} {from_.sql}{self.where(conds)}"

    def agg_numeric(self) -> str | None:
        from_ = self.single(need=("number",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        target = self.rng.choice(self.s.infos(src.table, "number"))
        func = self.rng.choice(("AVG", "SUM", "MAX", "MIN", "AVG", "SUM"))
        conds = self._filters(from_, qualify=qualify, exclude=[target.name])
        item = self.agg(func, self.ref(src, target.name, qualify=qualify))[0]
        return f"{self.select([item])} {from_.sql}{self.where(conds)}"

    def agg_min_max(self) -> str | None:
        from_ = self.single(need=("number",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        target = self.rng.choice(self.s.infos(src.table, "number") + self.s.infos(src.table, "year"))
        ref = self.ref(src, target.name, qualify=qualify)
        funcs = self.rng.choice((("MIN", "MAX"), ("AVG", "MAX"), ("MIN", "AVG", "MAX"), ("COUNT", "AVG")))
        items = [self.agg(f, "*" if f == "COUNT" else ref)[0] for f in funcs]
        conds = self._filters(from_, qualify=qualify, exclude=[target.name])
        return f"{self.select(items)} {from_.sql}{self.where(conds)}"

    def agg_count_distinct(self) -> str | None:
        from_ = self.single(need=("category",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        target = self.rng.choice(self.s.infos(src.table, "category"))
        item = self.agg("COUNT", f"{self.kw('DISTINCT')} {self.ref(src, target.name, qualify=qualify)}")[0]
        conds = self._filters(from_, qualify=qualify, exclude=[target.name])
        return f"{self.select([item])} {from_.sql}{self.where(conds)}"

    # ----- join -------------------------------------------------------------------------------------------------
    def _join_display(self, from_: _From) -> list[str]:
        shown: list[str] = []
        sources = list(from_.sources)
        self.rng.shuffle(sources)
        for src in sources[: self.rng.choice((1, 2, 2, 3))]:
            shown += self.display(src, qualify=True, extra=self.rng.choice((0, 0, 1)))
        return list(dict.fromkeys(shown))

    def join_pair(self) -> str | None:
        from_ = self.joined(2)
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        conds = self.conditions(from_, row, count=self.rng.choice((0, 1, 1, 2)), qualify=True)
        return f"{self.select(self._join_display(from_))} {from_.sql}{self.where(conds)}"

    def join_three(self) -> str | None:
        from_ = self.joined(3)
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        conds = self.conditions(from_, row, count=self.rng.choice((0, 1, 1, 2)), qualify=True)
        return f"{self.select(self._join_display(from_))} {from_.sql}{self.where(conds)}"

    def join_aggregate(self) -> str | None:
        from_ = self.joined(self.rng.choice((2, 2, 3)))
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        numbers = [(src, c) for src in from_.sources for c in self.s.infos(src.table, "number")]
        if numbers and self.rng.random() < 0.6:
            src, target = self.rng.choice(numbers)
            item = self.agg(self.rng.choice(("SUM", "AVG", "MAX", "MIN")), self.ref(src, target.name, qualify=True))[0]
            exclude = [(src.key, target.name)]
        else:
            item, exclude = self.agg("COUNT", "*")[0], []
        conds = self.conditions(from_, row, count=self.rng.choice((1, 1, 2)), qualify=True, exclude=exclude)
        return f"{self.select([item])} {from_.sql}{self.where(conds)}" if conds else None

    def join_ordered(self) -> str | None:
        from_ = self.joined(2)
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        keys = [(src, c) for src in from_.sources for c in self.s.infos(src.table, "number", "year", "date")]
        if not keys:
            return None
        src, key = self.rng.choice(keys)
        key_ref = self.ref(src, key.name, qualify=True)
        shown = self._join_display(from_)
        if key_ref not in shown:
            shown.append(key_ref)
        conds = self.conditions(from_, row, count=self.rng.choice((0, 1)), qualify=True,
                                exclude=[(src.key, key.name)])
        tail = self.limit(self.rng.choice((1, 3, 5, 10))) if self.rng.random() < 0.6 else ""
        return (f"{self.select(shown)} {from_.sql}{self.where(conds)} {self.kw('ORDER BY')} {key_ref}"
                f"{self.direction(self.rng.random() < 0.6)}{tail}")

    def join_distinct(self) -> str | None:
        from_ = self.joined(2)
        row = self.witness(from_) if from_ else None
        if from_ is None or row is None:
            return None
        options = [(src, c) for src in from_.sources for c in self.s.infos(src.table, "category", "label")]
        if not options:
            return None
        src, target = self.rng.choice(options)
        conds = self.conditions(from_, row, count=1, qualify=True, exclude=[(src.key, target.name)])
        return f"{self.select([self.ref(src, target.name, qualify=True)], distinct=True)} {from_.sql}" \
               f"{self.where(conds)}"

    # ----- group by ---------------------------------------------------------------------------------------------
    def _having(self, expression: str, values: Sequence[float]) -> str | None:
        """A HAVING threshold some but not necessarily all groups pass."""
        values = [v for v in values if v >= 2]
        if not values:
            return None
        pick = self.rng.choice(sorted(values)[len(values) // 3:] or list(values))
        if isinstance(pick, int) or float(pick).is_integer():
            pick_int = int(pick)
            op, bound = self.rng.choice(((">", pick_int - 1), (">=", pick_int)))
            return f"{expression} {op} {bound}"
        return f"{expression} > {_literal(_nice(float(pick), 'below', self.rng))}"

    def _grouped_values(self, sql: str) -> list[float]:
        result = run_query(self.s.conn, sql)
        return [float(v) for r in result.rows if isinstance(v := r[-1], int | float)]

    def _group_tail(self, select_items: list[str], group: str, from_sql: str, where: str, agg_expr: str,
                    agg_alias: str | None) -> str:
        base = f"{from_sql}{where} {self.kw('GROUP BY')} {group}"
        roll = self.rng.random()
        if roll < 0.35:
            values = self._grouped_values(f"{self.kw('SELECT')} {group}, {agg_expr} {base}")
            having = self._having(agg_expr, values)
            if having:
                return f"{self.select(select_items)} {base} {self.kw('HAVING')} {having}"
        if roll < 0.6:
            order_by = agg_alias or agg_expr
            tail = self.limit(self.rng.choice((1, 3, 5))) if self.rng.random() < 0.6 else ""
            return f"{self.select(select_items)} {base} {self.kw('ORDER BY')} {order_by}" \
                   f"{self.direction(self.rng.random() < 0.8)}{tail}"
        return f"{self.select(select_items)} {base}"

    def group_count(self) -> str | None:
        from_ = self.single(need=("category",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        groups = self.s.infos(src.table, "category") + self.s.infos(src.table, "year")
        target = self.rng.choice(groups)
        ref = self.ref(src, target.name, qualify=qualify)
        item, alias = self.agg("COUNT", "*", alias_hint=f"{name_words(src.table.name)[-1]}_count")
        where = self.where(self._filters(from_, qualify=qualify)) if self.rng.random() < 0.25 else ""
        return self._group_tail([ref, item], ref, from_.sql, where, self.kw("COUNT(*)"), alias)

    def group_aggregate(self) -> str | None:
        from_ = self.single(need=("category", "number"))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        target = self.rng.choice(self.s.infos(src.table, "category") + self.s.infos(src.table, "year"))
        measure = self.rng.choice(self.s.infos(src.table, "number"))
        func = self.rng.choice(("AVG", "SUM", "MAX", "MIN", "AVG"))
        measure_ref = self.ref(src, measure.name, qualify=qualify)
        hint = {"AVG": "avg_", "SUM": "total_", "MAX": "max_", "MIN": "min_"}[func] + measure.name
        item, alias = self.agg(func, measure_ref, alias_hint=hint)
        ref = self.ref(src, target.name, qualify=qualify)
        items = [ref, item]
        if self.rng.random() < 0.2:
            items.insert(1, self.agg("COUNT", "*")[0])
        where = self.where(self._filters(from_, qualify=qualify)) if self.rng.random() < 0.25 else ""
        return self._group_tail(items, ref, from_.sql, where, f"{self.kw(func)}({measure_ref})", alias)

    def group_top(self) -> str | None:
        from_ = self.single(need=("category",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        target = self.rng.choice(self.s.infos(src.table, "category"))
        ref = self.ref(src, target.name, qualify=qualify)
        numbers = self.s.infos(src.table, "number")
        if numbers and self.rng.random() < 0.4:
            measure = f"{self.kw('SUM')}({self.ref(src, self.rng.choice(numbers).name, qualify=qualify)})"
        else:
            measure = self.kw("COUNT(*)")
        return (f"{self.select([ref])} {from_.sql} {self.kw('GROUP BY')} {ref} {self.kw('ORDER BY')} {measure}"
                f"{self.direction(self.rng.random() < 0.8)}{self.limit(1)}")

    def group_entity(self) -> str | None:
        """Per parent entity over its children: ``SELECT p.name, COUNT(*) FROM child JOIN parent GROUP BY ...``."""
        from_ = self.joined(2)
        if from_ is None:
            return None
        fk = from_.edges[0]
        parent_src = next(s for s in from_.sources if s.table.name.lower() == fk.ref_table.lower())
        child_src = next(s for s in from_.sources if s is not parent_src)
        label = self.s.label(parent_src.table)
        if label is None:
            return None
        label_ref = self.ref(parent_src, label.name, qualify=True)
        group = label_ref
        if self.style.group_by_key and label.role != "key" and len(parent_src.table.primary_key) == 1:
            group = f"{self.ref(parent_src, parent_src.table.primary_key[0], qualify=True)}, {label_ref}"
        numbers = self.s.infos(child_src.table, "number")
        if numbers and self.rng.random() < 0.5:
            func = self.rng.choice(("SUM", "AVG", "MAX"))
            measure = self.rng.choice(numbers)
            agg_expr = f"{self.kw(func)}({self.ref(child_src, measure.name, qualify=True)})"
            hint = {"SUM": "total_", "AVG": "avg_", "MAX": "max_"}[func] + measure.name
        else:
            agg_expr, hint = self.kw("COUNT(*)"), f"{name_words(child_src.table.name)[-1]}_count"
        item, alias = self.agg(agg_expr.split("(")[0], agg_expr[agg_expr.index("(") + 1:-1], alias_hint=hint)
        items = [label_ref, item] if self.rng.random() < 0.75 else [label_ref]
        row = self.witness(from_)
        where = ""
        if row is not None and self.rng.random() < 0.25:
            conds = self.conditions(from_, row, count=1, qualify=True,
                                    exclude=[(parent_src.key, label.name)])
            where = self.where(conds)
        return self._group_tail(items, group, from_.sql, where, agg_expr, alias if len(items) > 1 else None)

    def group_foreign_key(self) -> str | None:
        fks = [fk for fk in self.s.schema.foreign_keys if fk.table.lower() != fk.ref_table.lower()]
        if not fks:
            return None
        fk = self.rng.choice(fks)
        from_ = self.single(self.s.schema.require_table(fk.table))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        ref = self.ref(src, fk.column, qualify=qualify)
        numbers = self.s.infos(src.table, "number")
        if numbers and self.rng.random() < 0.5:
            func = self.rng.choice(("SUM", "AVG"))
            agg_expr = f"{self.kw(func)}({self.ref(src, self.rng.choice(numbers).name, qualify=qualify)})"
        else:
            agg_expr = self.kw("COUNT(*)")
        return self._group_tail([ref, agg_expr], ref, from_.sql, "", agg_expr, None)

    # ----- nested -----------------------------------------------------------------------------------------------
    def _child_edges(self) -> list[ForeignKey]:
        return [fk for fk in self.s.schema.foreign_keys if fk.table.lower() != fk.ref_table.lower()
                and self.s.info(self.s.schema.require_table(fk.table), fk.column).values]

    def nested_in(self) -> str | None:
        """Parents whose key is IN the foreign keys of children meeting a condition (maybe through a join)."""
        edges = self._child_edges()
        if not edges:
            return None
        fk = self.rng.choice(edges)
        schema = self.s.schema
        parent = schema.require_table(fk.ref_table)
        outer = self.single(parent)
        if outer is None:
            return None
        outer_src = outer.sources[0]
        qualify = outer_src.alias is not None
        child = schema.require_table(fk.table)
        further = [g for g in schema.foreign_keys_of(child.name) if g is not fk
                   and g.ref_table.lower() != child.name.lower()]
        if further and self.rng.random() < 0.5:
            g = self.rng.choice(further)
            other = schema.require_table(g.ref_table)
            inner_child = self.source(child, aliased=True)
            inner_other = self.source(other, aliased=True)
            inner = _From([inner_child, inner_other], [g],
                          f"{self.kw('FROM')} {self.table_sql(inner_child)} {self.join_word()} "
                          f"{self.table_sql(inner_other)} {self.kw('ON')} "
                          f"{self.ref(inner_child, g.column, qualify=True)} = "
                          f"{self.ref(inner_other, g.ref_column, qualify=True)}")
            row = self.witness(inner)
            if row is None:
                return None
            conds = self.conditions(_From([inner_other], [], ""), row, count=1, qualify=True)
            selected = self.ref(inner_child, fk.column, qualify=True)
        else:
            inner = self.single(child) or outer
            row = self.witness(inner)
            if row is None:
                return None
            inner_src = inner.sources[0]
            conds = self.conditions(inner, row, count=1, qualify=inner_src.alias is not None,
                                    exclude=[(inner_src.key, fk.column)])
            selected = self.ref(inner_src, fk.column, qualify=inner_src.alias is not None)
        if not conds:
            return None
        subquery = f"{self.select([selected])} {inner.sql}{self.where(conds)}"
        shown = self.display(outer_src, qualify=qualify, extra=self.rng.choice((0, 0, 1)))
        key_ref = self.ref(outer_src, fk.ref_column, qualify=qualify)
        return f"{self.select(shown)} {outer.sql} {self.kw('WHERE')} {key_ref} {self.kw('IN')} ({subquery})"

    def nested_not_in(self) -> str | None:
        edges = self._child_edges()
        if not edges:
            return None
        fk = self.rng.choice(edges)
        schema = self.s.schema
        outer = self.single(schema.require_table(fk.ref_table))
        if outer is None:
            return None
        outer_src = outer.sources[0]
        qualify = outer_src.alias is not None
        inner = self.single(schema.require_table(fk.table))
        if inner is None:
            return None
        inner_src = inner.sources[0]
        selected = self.ref(inner_src, fk.column, qualify=inner_src.alias is not None)
        conds: list[str] = []
        if self.rng.random() < 0.3:
            row = self.witness(inner)
            if row is not None:
                conds = self.conditions(inner, row, count=1, qualify=inner_src.alias is not None,
                                        exclude=[(inner_src.key, fk.column)])
        subquery = f"{self.select([selected])} {inner.sql}{self.where(conds)}"
        shown = self.display(outer_src, qualify=qualify)
        key_ref = self.ref(outer_src, fk.ref_column, qualify=qualify)
        return f"{self.select(shown)} {outer.sql} {self.kw('WHERE')} {key_ref} {self.kw('NOT IN')} ({subquery})"

    def nested_scalar_avg(self) -> str | None:
        from_ = self.single(need=("number",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        measure = self.rng.choice(self.s.infos(src.table, "number"))
        ref = self.ref(src, measure.name, qualify=qualify)
        op = self.rng.choice((">", ">", "<", ">="))
        inner_conds = ""
        if self.rng.random() < 0.25:
            row = self.witness(from_)
            if row is not None:
                inner = self.conditions(from_, row, count=1, qualify=False, exclude=[(src.key, measure.name)],
                                        roles=("category",))
                inner_conds = self.where([c.replace(f"{src.key}.", "") for c in inner])
        subquery = f"{self.kw('SELECT')} {self.kw('AVG')}({_ident(measure.name)}) {self.kw('FROM')} " \
                   f"{_ident(src.table.name)}{inner_conds}"
        shown = self.display(src, qualify=qualify, extra=0, exclude=[measure.name])
        if self.rng.random() < 0.6:
            shown.append(ref)
        return f"{self.select(shown)} {from_.sql} {self.kw('WHERE')} {ref} {op} ({subquery})"

    def nested_scalar_extreme(self) -> str | None:
        from_ = self.single(need=("number",))
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        measure = self.rng.choice(self.s.infos(src.table, "number") + self.s.infos(src.table, "year"))
        ref = self.ref(src, measure.name, qualify=qualify)
        func = self.rng.choice(("MAX", "MIN"))
        subquery = f"{self.kw('SELECT')} {self.kw(func)}({_ident(measure.name)}) {self.kw('FROM')} " \
                   f"{_ident(src.table.name)}"
        shown = self.display(src, qualify=qualify, exclude=[measure.name])
        return f"{self.select(shown)} {from_.sql} {self.kw('WHERE')} {ref} = ({subquery})"

    def _exists(self, negate: bool) -> str | None:
        edges = self._child_edges()
        if not edges:
            return None
        fk = self.rng.choice(edges)
        schema = self.s.schema
        parent, child = schema.require_table(fk.ref_table), schema.require_table(fk.table)
        outer_src = self.source(parent, aliased=self.style.alias_kind != "none")
        inner_src = self.source(child, aliased=self.style.alias_kind != "none")
        if outer_src.alias is None or inner_src.alias is None:
            outer_src, inner_src = _Source(parent, None), _Source(child, None)
        inner = _From([inner_src], [], f"{self.kw('FROM')} {self.table_sql(inner_src)}")
        link = f"{self.ref(inner_src, fk.column, qualify=True)} = {self.ref(outer_src, fk.ref_column, qualify=True)}"
        conds = [link]
        if not negate or self.rng.random() < 0.4:
            row = self.witness(inner)
            if row is not None:
                conds += self.conditions(inner, row, count=1, qualify=True, exclude=[(inner_src.key, fk.column)])
        word = self.kw("NOT EXISTS" if negate else "EXISTS")
        shown = self.display(_Source(parent, None), qualify=False)
        return (f"{self.select(shown)} {self.kw('FROM')} {self.table_sql(outer_src)} {self.kw('WHERE')} {word} "
                f"({self.kw('SELECT')} 1 {inner.sql}{self.where(conds)})")

    def nested_exists(self) -> str | None:
        return self._exists(negate=False)

    def nested_not_exists(self) -> str | None:
        return self._exists(negate=True)

    def nested_derived(self) -> str | None:
        """An aggregate over per-group aggregates: ``SELECT AVG(n) FROM (SELECT COUNT(*) AS n ... GROUP BY fk)``."""
        edges = self._child_edges()
        groupable = [(self.s.schema.require_table(fk.table), fk.column) for fk in edges]
        for table in self.s._nonempty_tables():
            groupable += [(table, c.name) for c in self.s.infos(table, "category")]
        if not groupable:
            return None
        table, group_col = self.rng.choice(groupable)
        numbers = self.s.infos(table, "number")
        if numbers and self.rng.random() < 0.4:
            measure = self.rng.choice(numbers)
            inner_func, inner_alias = self.rng.choice(("SUM", "AVG")), f"total_{measure.name}"
            inner_expr = f"{self.kw(inner_func)}({_ident(measure.name)})"
            if inner_func == "AVG":
                inner_alias = f"avg_{measure.name}"
        else:
            inner_expr = self.kw("COUNT(*)")
            inner_alias = self.rng.choice(("n", "cnt", f"{name_words(table.name)[-1]}_count"))
        outer_func = self.rng.choice(("AVG", "MAX", "MIN"))
        keep_group = self.rng.random() < 0.3
        items = ([_ident(group_col)] if keep_group else []) + [f"{inner_expr} {self.kw('AS')} {inner_alias}"]
        self.tables_used.append(table.name)
        inner = (f"{self.select(items)} {self.kw('FROM')} {_ident(table.name)} {self.kw('GROUP BY')} "
                 f"{_ident(group_col)}")
        if self.rng.random() < 0.25:
            having = self._having(inner_expr, self._grouped_values(f"{inner}".replace(
                f" {self.kw('AS')} {inner_alias}", "")))
            if having:
                return f"{self.kw('SELECT')} {self.kw('COUNT(*)')} {self.kw('FROM')} ({inner} {self.kw('HAVING')} " \
                       f"{having})"
        return f"{self.kw('SELECT')} {self.kw(outer_func)}({inner_alias}) {self.kw('FROM')} ({inner})"

    def nested_parent_in(self) -> str | None:
        """Children whose foreign key is IN the keys of parents meeting a condition."""
        edges = self._child_edges()
        if not edges:
            return None
        fk = self.rng.choice(edges)
        schema = self.s.schema
        outer = self.single(schema.require_table(fk.table))
        inner = self.single(schema.require_table(fk.ref_table))
        if outer is None or inner is None:
            return None
        row = self.witness(inner)
        if row is None:
            return None
        inner_src, outer_src = inner.sources[0], outer.sources[0]
        conds = self.conditions(inner, row, count=1, qualify=inner_src.alias is not None)
        if not conds:
            return None
        subquery = f"{self.select([self.ref(inner_src, fk.ref_column, qualify=inner_src.alias is not None)])} " \
                   f"{inner.sql}{self.where(conds)}"
        shown = self.display(outer_src, qualify=outer_src.alias is not None, exclude=[fk.column])
        fk_ref = self.ref(outer_src, fk.column, qualify=outer_src.alias is not None)
        return f"{self.select(shown)} {outer.sql} {self.kw('WHERE')} {fk_ref} {self.kw('IN')} ({subquery})"

    def nested_compare_row(self) -> str | None:
        """Compare against one named row's value: ``budget > (SELECT budget FROM d WHERE name = 'X')``."""
        from_ = self.single(need=("number",))
        if from_ is None:
            return None
        src = from_.sources[0]
        label = self.s.label(src.table)
        if label is None or label.role != "label":
            return None
        rows = self.s.rows(from_)
        counts: dict[SQLValue, int] = {}
        for r in rows:
            counts[r[(src.key, label.name)]] = counts.get(r[(src.key, label.name)], 0) + 1
        unique = [v for v, n in counts.items() if n == 1 and v is not None]
        if not unique:
            return None
        name = self.rng.choice(unique)
        measure = self.rng.choice(self.s.infos(src.table, "number"))
        qualify = src.alias is not None
        op = self.rng.choice((">", "<"))
        subquery = (f"{self.kw('SELECT')} {_ident(measure.name)} {self.kw('FROM')} {_ident(src.table.name)} "
                    f"{self.kw('WHERE')} {_ident(label.name)} = {_literal(name)}")
        shown = self.display(src, qualify=qualify, extra=0)
        return f"{self.select(shown)} {from_.sql} {self.kw('WHERE')} " \
               f"{self.ref(src, measure.name, qualify=qualify)} {op} ({subquery})"

    # ----- set operations ---------------------------------------------------------------------------------------
    def set_word(self) -> str:
        return self.kw(self.rng.choices(("UNION", "INTERSECT", "EXCEPT", "UNION ALL"), (4, 3, 3, 0.5))[0])

    def _branch(self, table: Table, column: str, *, conds_from: bool = True, force: bool = False) -> str | None:
        from_ = self.single(table)
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = src.alias is not None
        conds: list[str] = []
        if force or (conds_from and self.rng.random() < 0.4):
            row = self.witness(from_)
            if row is not None:
                conds = self.conditions(from_, row, count=1, qualify=qualify, exclude=[(src.key, column)])
        return f"{self.select([self.ref(src, column, qualify=qualify)])} {from_.sql}{self.where(conds)}"

    def set_same_column(self) -> str | None:
        """One column of one table (or of a join) under two different conditions."""
        use_join = self.rng.random() < 0.3
        from_ = self.joined(2) if use_join else self.single()
        if from_ is None:
            return None
        src = from_.sources[0]
        qualify = use_join or src.alias is not None
        outputs = self.s.infos(src.table, "category", "label", "fk", "key", "year")
        conditions = [(s, c) for s in from_.sources for c in self.s.infos(s.table, "category", "flag", "year", "number")
                      if len(c.values) > 1]
        if not outputs or not conditions:
            return None
        output = self.rng.choice(outputs)
        cond_src, cond = self.rng.choice([(s, c) for s, c in conditions if c.name != output.name or s is not src]
                                         or conditions)
        ref = self.ref(cond_src, cond.name, qualify=qualify)
        if cond.numeric and self.rng.random() < 0.5:
            middle = cond.values[len(cond.values) // 2]
            if not isinstance(middle, int | float):
                return None
            threshold = _literal(middle if cond.role == "year" else _nice(middle, "below", self.rng))
            left, right = f"{ref} < {threshold}", f"{ref} > {threshold}"
        else:
            first, second = self.rng.sample(list(cond.values), 2)
            left, right = f"{ref} = {_literal(first)}", f"{ref} = {_literal(second)}"
        out = self.ref(src, output.name, qualify=qualify)
        head = f"{self.select([out])} {from_.sql} {self.kw('WHERE')}"
        return f"{head} {left} {self.set_word()} {head} {right}"

    def set_keys(self) -> str | None:
        """Key-compatible columns: a parent's key and a child's foreign key, or two children's foreign keys."""
        edges = self._child_edges()
        if not edges:
            return None
        fk = self.rng.choice(edges)
        schema = self.s.schema
        siblings = [g for g in edges if g is not fk and g.ref_table.lower() == fk.ref_table.lower()
                    and g.ref_column.lower() == fk.ref_column.lower()]
        child = schema.require_table(fk.table)
        if siblings and self.rng.random() < 0.5:
            g = self.rng.choice(siblings)
            left = self._branch(child, fk.column)
            right = self._branch(schema.require_table(g.table), g.column)
        else:
            left = self._branch(schema.require_table(fk.ref_table), fk.ref_column)
            right = self._branch(child, fk.column)
            if self.rng.random() < 0.5:
                left, right = right, left
        if left is None or right is None:
            return None
        return f"{left} {self.set_word()} {right}"

    def set_same_name(self) -> str | None:
        """Same-named text columns of two tables (``SELECT city FROM a UNION SELECT city FROM b``)."""
        pairs: list[tuple[Table, str, Table, str]] = []
        tables = self.s._nonempty_tables()
        for i, a in enumerate(tables):
            for b in tables[i + 1:]:
                people = _is_person_table(a) and _is_person_table(b)
                for info_a in self.s.infos(a, "category", "label"):
                    for info_b in self.s.infos(b, "category", "label"):
                        if name_words(info_a.name)[-1] != name_words(info_b.name)[-1]:
                            continue
                        # Union-compatible in meaning, not just in type: person names of two person tables, or
                        # columns whose values overlap (cities, countries).
                        if people or set(info_a.values) & set(info_b.values):
                            pairs.append((a, info_a.name, b, info_b.name))
        if not pairs:
            return None
        first, first_column, second, second_column = self.rng.choice(pairs)
        if self.rng.random() < 0.5:
            first, first_column, second, second_column = second, second_column, first, first_column
        left, right = self._branch(first, first_column), self._branch(second, second_column)
        if left is None or right is None:
            return None
        return f"{left} {self.set_word()} {right}"

    def set_except_joined(self) -> str | None:
        """Values of a parent column minus those of parents that have (matching) children."""
        edges = self._child_edges()
        if not edges:
            return None
        fk = self.rng.choice(edges)
        parent = self.s.schema.require_table(fk.ref_table)
        outputs = self.s.infos(parent, "category", "label")
        if not outputs:
            return None
        output = self.rng.choice(outputs)
        left = self._branch(parent, output.name, conds_from=False)
        child_src = self.source(self.s.schema.require_table(fk.table), aliased=True)
        parent_src = self.source(parent, aliased=True)
        from_ = _From([child_src, parent_src], [fk],
                      f"{self.kw('FROM')} {self.table_sql(child_src)} {self.join_word()} {self.table_sql(parent_src)} "
                      f"{self.kw('ON')} {self.ref(child_src, fk.column, qualify=True)} = "
                      f"{self.ref(parent_src, fk.ref_column, qualify=True)}")
        row = self.witness(from_)
        conds = self.conditions(_From([child_src], [], ""), row, count=1, qualify=True) if row and \
            self.rng.random() < 0.6 else []
        right = f"{self.select([self.ref(parent_src, output.name, qualify=True)])} {from_.sql}{self.where(conds)}"
        word = self.kw("EXCEPT") if self.rng.random() < 0.7 else self.kw("INTERSECT")
        return f"{left} {word} {right}" if left else None

    def set_two_references(self) -> str | None:
        """Two foreign keys of one table to the same parent (origin/destination, home/away)."""
        by_target: dict[tuple[str, str, str], list[ForeignKey]] = {}
        for fk in self._child_edges():
            by_target.setdefault((fk.table.lower(), fk.ref_table.lower(), fk.ref_column.lower()), []).append(fk)
        options = [fks for fks in by_target.values() if len(fks) > 1]
        if not options:
            return None
        first, second = self.rng.sample(self.rng.choice(options), 2)
        table = self.s.schema.require_table(first.table)
        left, right = self._branch(table, first.column), self._branch(table, second.column)
        if left is None or right is None:
            return None
        return f"{left} {self.set_word()} {right}"
