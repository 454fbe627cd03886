"""SQL-first generation: sample an executable query of a chosen category from a schema and its database.

:class:`QuerySampler` holds one schema, a synthesized database for it and the task's :class:`SQLStyle`. For a
target category it picks one of many query shapes (a category has 4-9 shapes, each with its own variations:
aliases, DISTINCT, BETWEEN, LIKE, IN lists, OR, several conditions, HAVING, ORDER BY / LIMIT ...). Joins follow
foreign keys (declared or inferred from names); aggregates apply to numeric columns; GROUP BY uses categorical
columns or an entity's key and name; filter values come from a *witness row* of the data, so a query's conditions
hold for at least one row. Every query is executed in the sandbox and kept only when it runs, returns at least
one row, and :func:`.categories.categorize_sql` gives it exactly the requested primary category.

The shapes live by category in :mod:`.shapes_basic` (filter, order/limit, aggregation), :mod:`.shapes_join_group`
(join, group by) and :mod:`.shapes_nested_set` (nested, set operations); :mod:`.writer` holds what they share.
"""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from tools.tasks.text2sql.sql import shapes_basic, shapes_join_group, shapes_nested_set
from tools.tasks.text2sql.sql.categories import CATEGORY_PRIORITY, categorize_sql
from tools.tasks.text2sql.sql.sandbox import run_query
from tools.tasks.text2sql.sql.schema import Schema, Table
from tools.tasks.text2sql.sql.style import SQLStyle
from tools.tasks.text2sql.sql.values import SQLValue
from tools.tasks.text2sql.sql.words import name_words
from tools.tasks.text2sql.sql.writer import From, QueryWriter, Shape, ShapeBook, sql_ident

Role = Literal["key", "fk", "flag", "number", "year", "date", "category", "label", "text"]
Row = dict[tuple[str, str], SQLValue]

_DATE = re.compile(r"^\d{4}-\d\d-\d\d")
_NAME_WORDS = {"name", "title"}
_MAX_ATTEMPTS = 60


def _by_category(*books: ShapeBook) -> dict[str, list[Shape]]:
    by_category: dict[str, list[Shape]] = {category: [] for category in CATEGORY_PRIORITY}
    for book in books:
        for shape in book.shapes:
            by_category[shape.category].append(shape)
    return by_category


#: Category -> its shapes, in the order they are written.
SHAPES_BY_CATEGORY = _by_category(shapes_basic.SHAPES, shapes_join_group.SHAPES, shapes_nested_set.SHAPES)


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
    """A sampled query that ran: its SQL and the shape that wrote it, its categories, the tables it reads and what
    it returned."""

    sql: str
    shape: str
    #: The primary category, and every category the query has.
    category: str
    tags: tuple[str, ...]
    tables: tuple[str, ...]
    #: The columns and the number of rows it returned on the sampler's database.
    columns: tuple[str, ...]
    row_count: int


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
            count = self._scalar(f"SELECT COUNT(*) FROM {sql_ident(table.name)}") or 0
            infos: dict[str, ColumnInfo] = {}
            for column in table.columns:
                name = sql_ident(column.name)
                result = run_query(self.conn, f"SELECT DISTINCT {name} FROM {sql_ident(table.name)} "
                                   f"WHERE {name} IS NOT NULL", max_rows=5000)
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

    def nonempty_tables(self) -> list[Table]:
        return [t for t in self.schema.tables if any(c.values for c in self.infos(t))]

    # ----- public entry point ---------------------------------------------------------------------------------
    def sample(self, category: str, rng: random.Random, *, attempts: int = _MAX_ATTEMPTS) -> SampledQuery:
        """An executed, non-empty query whose primary category is ``category``.

        Raises :class:`SamplerError` for an unknown category, or when the schema does not support the category
        (after ``attempts`` tries, naming the last reason).
        """
        if category not in CATEGORY_PRIORITY:
            raise SamplerError(f"unknown category {category!r}; known: {', '.join(CATEGORY_PRIORITY)}")
        shapes = SHAPES_BY_CATEGORY[category]
        reason = "no shape applies to this schema"
        for _ in range(attempts):
            shape = rng.choices(shapes, weights=[s.weight for s in shapes])[0]
            query = QueryWriter(self, rng)
            sql = shape.write(query)
            if sql is None:
                reason = f"shape {shape.name} does not apply"
                continue
            primary, tags = categorize_sql(sql)
            if primary != category:
                reason = f"shape {shape.name} wrote a {primary} query"
                continue
            result = run_query(self.conn, sql, max_rows=2000)
            if not result.ok:
                reason = f"shape {shape.name} failed to run: {result.error}"
                continue
            if not result.rows or all(all(v is None for v in row) for row in result.rows):
                reason = f"shape {shape.name} returned no rows"
                continue
            return SampledQuery(sql=sql, category=primary, tags=tags, shape=shape.name,
                                tables=tuple(query.tables_used), columns=result.columns, row_count=len(result.rows))
        raise SamplerError(
            f"could not sample a {category} query over tables {', '.join(self.schema.table_names)} "
            f"in {attempts} attempts (last: {reason})"
        )

    # ----- data access for shapes -----------------------------------------------------------------------------
    def rows(self, from_: From) -> list[Row]:
        """Every row of a FROM clause, keyed by (source key, column name): the pool of witness rows."""
        cached = self._row_cache.get(from_.sql)
        if cached is not None:
            return cached
        selected = [(s, c.name) for s in from_.sources for c in s.table.columns]
        columns = ", ".join(f"{sql_ident(s.key)}.{sql_ident(c)}" for s, c in selected)
        result = run_query(self.conn, f"SELECT {columns} {from_.sql}", max_rows=3000)
        rows = [{(s.key, c): v for (s, c), v in zip(selected, r, strict=True)} for r in result.rows]
        self._row_cache[from_.sql] = rows
        return rows
