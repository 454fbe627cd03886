"""Writing one sampled query: the vocabulary every query shape shares, and the register of shapes.

:class:`QueryWriter` spells keywords and aliases in the task's :class:`~.style.SQLStyle`, builds FROM clauses (one
table, or tables joined along foreign keys), draws a *witness row* so that conditions hold for at least one row,
and writes conditions, projections, ordering and limits. A query shape is a function of a writer that returns SQL,
or None when the schema does not fit it. A :class:`ShapeBook` registers each shape with its category, weight and
the FROM clause it writes over, so the preamble every shape shares (pick the tables, draw the witness, give up
when the schema offers neither) is written once, in :meth:`QueryWriter.over_table`,
:meth:`QueryWriter.over_join` and :meth:`QueryWriter.child_edge`.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tools.tasks.text2sql.sql.sandbox import run_query
from tools.tasks.text2sql.sql.schema import ForeignKey, Table
from tools.tasks.text2sql.sql.values import SQLValue
from tools.tasks.text2sql.sql.words import name_words

if TYPE_CHECKING:
    from tools.tasks.text2sql.sql.sampler import ColumnInfo, QuerySampler, Role, Row

_SIMPLE_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {
    "order", "group", "select", "from", "where", "table", "index", "limit", "by", "join", "on", "as", "and", "or",
    "not", "in", "is", "null", "case", "when", "then", "else", "end", "values", "key", "primary", "default",
    "check", "union", "all", "distinct", "having", "transaction", "to", "into", "set", "exists", "references",
    "do", "if", "of", "at", "asc", "desc", "like", "glob", "between", "cross", "inner", "left", "right", "full",
    "natural", "using", "with", "over", "cast", "collate", "escape", "except", "intersect", "offset", "row", "rows",
}
FILTER_ROLES: tuple[Role, ...] = ("category", "label", "number", "year", "date", "flag")


def sql_ident(name: str) -> str:
    if _SIMPLE_IDENT.match(name) and name.lower() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: SQLValue) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 10:
            return str(int(value))
        return repr(round(value, 2))
    return str(value)


def nice_number(value: float, direction: Literal["below", "above"], rng: random.Random) -> float:
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


@dataclass
class Source:
    table: Table
    alias: str | None

    @property
    def key(self) -> str:
        return self.alias or self.table.name


@dataclass
class From:
    sources: list[Source]
    edges: list[ForeignKey]
    sql: str


@dataclass(frozen=True)
class Scope:
    """What a shape writes over: its FROM clause, and the witness row when the shape was registered with one."""

    from_: From
    witness: Row | None = None

    @property
    def src(self) -> Source:
        return self.from_.sources[0]

    @property
    def qualify(self) -> bool:
        """Whether column references carry the first table's alias."""
        return self.src.alias is not None

    @property
    def row(self) -> Row:
        if self.witness is None:
            raise RuntimeError("the shape was registered without a witness row")
        return self.witness


ShapeWriter = Callable[["QueryWriter"], "str | None"]
ScopedWriter = Callable[["QueryWriter", Scope], "str | None"]
EdgeWriter = Callable[["QueryWriter", ForeignKey], "str | None"]


@dataclass(frozen=True)
class Shape:
    """A way to write a query of one category; the sampler picks shapes by ``weight``."""

    category: str
    name: str
    weight: float
    write: ShapeWriter


class ShapeBook:
    """The shapes of one module, in the order they are written (the order the sampler draws from)."""

    def __init__(self) -> None:
        self.shapes: list[Shape] = []

    def add(self, category: str, name: str, weight: float) -> Callable[[ShapeWriter], ShapeWriter]:
        """A shape that builds its own FROM clause."""
        def register(write: ShapeWriter) -> ShapeWriter:
            self.shapes.append(Shape(category, name, weight, write))
            return write

        return register

    def over_table(self, category: str, name: str, weight: float, *, need: Sequence[Role] = (),
                   witness: bool = False) -> Callable[[ScopedWriter], ScopedWriter]:
        """A shape over one table with columns of every ``need``ed role (and a witness row, if asked)."""
        return self._scoped(category, name, weight, lambda q: q.over_table(need, witness))

    def over_join(self, category: str, name: str, weight: float, *, lengths: Sequence[int] = (2,),
                  witness: bool = False) -> Callable[[ScopedWriter], ScopedWriter]:
        """A shape over tables joined along foreign keys (and a witness row, if asked)."""
        return self._scoped(category, name, weight, lambda q: q.over_join(lengths, witness))

    def over_child_edge(self, category: str, name: str, weight: float) -> Callable[[EdgeWriter], EdgeWriter]:
        """A shape over a foreign key from a child table to its parent."""
        def register(body: EdgeWriter) -> EdgeWriter:
            def write(q: QueryWriter) -> str | None:
                fk = q.child_edge()
                return None if fk is None else body(q, fk)

            self.shapes.append(Shape(category, name, weight, write))
            return body

        return register

    def _scoped(self, category: str, name: str, weight: float,
                scope: Callable[[QueryWriter], Scope | None]) -> Callable[[ScopedWriter], ScopedWriter]:
        def register(body: ScopedWriter) -> ScopedWriter:
            def write(q: QueryWriter) -> str | None:
                at = scope(q)
                return None if at is None else body(q, at)

            self.shapes.append(Shape(category, name, weight, write))
            return body

        return register


class QueryWriter:
    """One query being written: alias allocation, keyword casing, FROM clauses, witness rows and conditions."""

    def __init__(self, sampler: QuerySampler, rng: random.Random):
        self.sampler = sampler
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

    def source(self, table: Table, *, aliased: bool, hint: str | None = None) -> Source:
        self.tables_used.append(table.name)
        if not aliased or self.style.alias_kind == "none":
            return Source(table, None)
        return Source(table, self.alias_for(table, hint))

    def table_sql(self, src: Source) -> str:
        if src.alias is None:
            return sql_ident(src.table.name)
        sep = f" {self.kw('AS')} " if self.style.alias_keyword else " "
        return f"{sql_ident(src.table.name)}{sep}{src.alias}"

    def ref(self, src: Source, column: str, *, qualify: bool) -> str:
        if qualify:
            return f"{sql_ident(src.key)}.{sql_ident(column)}"
        return sql_ident(column)

    def join_word(self) -> str:
        return self.kw("INNER JOIN" if self.style.inner_join else "JOIN")

    def agg(self, func: str, arg: str, alias_hint: str | None = None) -> tuple[str, str | None]:
        """An aggregate expression and, at the style's rate, a column alias for it."""
        text = f"{self.kw(func)}({arg})"
        if alias_hint and self.rng.random() < self.style.aggregate_alias_rate:
            return f"{text} {self.kw('AS')} {alias_hint}", alias_hint
        return text, None

    # ----- building blocks --------------------------------------------------------------------------------------
    def single(self, table: Table | None = None, *, need: Sequence[Role] = ()) -> From | None:
        tables = [t for t in self.sampler.nonempty_tables() if all(self.sampler.infos(t, r) for r in need)]
        if table is None:
            if not tables:
                return None
            table = self.rng.choice(tables)
        aliased = self.style.alias_single and self.style.alias_kind != "none"
        src = self.source(table, aliased=aliased)
        return From([src], [], f"{self.kw('FROM')} {self.table_sql(src)}")

    def joined(self, length: int = 2) -> From | None:
        """A FROM clause joining ``length`` tables along foreign keys (child.fk = parent.key)."""
        edges = [fk for fk in self.sampler.schema.foreign_keys
                 if fk.table.lower() != fk.ref_table.lower() or self.rng.random() < 0.3]
        edges = [fk for fk in edges if self.sampler.info(self.sampler.schema.require_table(fk.table), fk.column).values]
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
        schema = self.sampler.schema
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
        return From(sources, chosen, sql)

    def witness(self, from_: From) -> Row | None:
        rows = self.sampler.rows(from_)
        return self.rng.choice(rows) if rows else None

    def display(self, src: Source, *, qualify: bool, extra: int | None = None,
                exclude: Sequence[str] = ()) -> list[str]:
        """Columns to show for a table: usually its label, plus a few descriptive columns."""
        label = self.sampler.label(src.table)
        chosen: list[ColumnInfo] = []
        if label is not None and (self.rng.random() < 0.85 or label.role == "key"):
            chosen.append(label)
        skip = set(exclude) | {name for key, name in self.filtered if key == src.key}
        if label is not None and label.name in skip and label.role != "key":
            chosen = []
        others = [c for c in self.sampler.infos(src.table, "category", "number", "year", "date", "label")
                  if c not in chosen and c.name not in skip]
        count = extra if extra is not None else self.rng.choices((0, 1, 2), (0.5, 0.35, 0.15))[0]
        if not chosen:
            count = max(count, 1)
        chosen += self.rng.sample(others, min(count, len(others)))
        if not chosen:
            keys = self.sampler.infos(src.table, "key")
            chosen = keys[:1] or [next(iter(self.sampler.columns[src.table.name.lower()].values()))]
        return [self.ref(src, c.name, qualify=qualify) for c in chosen]

    def condition(self, src: Source, info: ColumnInfo, value: SQLValue, *, qualify: bool) -> str | None:
        """A condition on ``info`` that ``value`` (from the witness row) satisfies."""
        if value is None:
            return None
        rng = self.rng
        ref = self.ref(src, info.name, qualify=qualify)
        others = [v for v in info.values if v != value]
        role = info.role
        roll = rng.random()
        if role in ("flag", "fk", "key"):
            return f"{ref} = {sql_literal(value)}"
        if role == "category" and isinstance(value, str):
            if roll < 0.6 or not others:
                return f"{ref} = {sql_literal(value)}"
            if roll < 0.75:
                picks = [value, *rng.sample(others, min(len(others), rng.randint(1, 2)))]
                rng.shuffle(picks)
                return f"{ref} {self.kw('IN')} ({', '.join(sql_literal(v) for v in picks)})"
            if roll < 0.88:
                return f"{ref} {self.style.not_equal} {sql_literal(rng.choice(others))}"
            prefix = value.split()[0] if " " in value else value[: max(1, min(3, len(value) - 1))]
            return f"{ref} {self.kw('LIKE')} {sql_literal(prefix + '%')}"
        if role == "label" and isinstance(value, str):
            words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]+", value) if len(w) > 2]
            if roll < 0.65 or not words:
                return f"{ref} = {sql_literal(value)}"
            if roll < 0.9:
                return f"{ref} {self.kw('LIKE')} {sql_literal('%' + rng.choice(words) + '%')}"
            return f"{ref} {self.kw('LIKE')} {sql_literal(value[0] + '%')}"
        if role == "date" and isinstance(value, str):
            year, month = value[:4], value[5:7]
            first, last, month_start = f"{year}-01-01", f"{year}-12-31", f"{year}-{month}-01"
            next_year = f"{int(year) + 1}-01-01"
            options: list[tuple[float, str, Callable[[SQLValue], bool]]] = [
                (3, f"{ref} >= {sql_literal(month_start)}", lambda v: str(v) >= month_start),
                (2.5, f"{ref} < {sql_literal(next_year)}", lambda v: str(v) < next_year),
                (2.5, f"{ref} {self.kw('BETWEEN')} {sql_literal(first)} {self.kw('AND')} {sql_literal(last)}",
                 lambda v: first <= str(v) <= last),
                (1, f"{ref} {self.kw('LIKE')} {sql_literal(year + '%')}", lambda v: str(v).startswith(year)),
                (1, f"{ref} = {sql_literal(value)}", lambda v: v == value),
            ]
            return self._selective(options, info)
        if role in ("number", "year") and isinstance(value, int | float):
            return self._selective(self._numeric_options(ref, info, value), info)
        return f"{ref} = {sql_literal(value)}"

    def _numeric_options(self, ref: str, info: ColumnInfo, value: float) -> list[
            tuple[float, str, Callable[[SQLValue], bool]]]:
        rng = self.rng

        def num(v: SQLValue) -> float:
            return float(v) if isinstance(v, int | float) else math.nan

        if info.role == "year" or (isinstance(value, int) and len(info.values) <= 12):
            span = rng.randint(1, 3) if info.role == "year" else 1
            low, high = value - span, value + span
            return [
                (4.5, f"{ref} = {sql_literal(value)}", lambda v: v == value),
                (2, f"{ref} > {sql_literal(low)}", lambda v: num(v) > low),
                (1.5, f"{ref} < {sql_literal(high)}", lambda v: num(v) < high),
                (1, f"{ref} >= {sql_literal(value)}", lambda v: num(v) >= value),
                (1, f"{ref} {self.kw('BETWEEN')} {sql_literal(low)} {self.kw('AND')} {sql_literal(high)}",
                 lambda v: low <= num(v) <= high),
            ]
        below, above = nice_number(value, "below", rng), nice_number(value, "above", rng)
        return [
            (4, f"{ref} > {sql_literal(below)}", lambda v: num(v) > below),
            (3, f"{ref} < {sql_literal(above)}", lambda v: num(v) < above),
            (1.5, f"{ref} {self.kw('BETWEEN')} {sql_literal(below)} {self.kw('AND')} {sql_literal(above)}",
             lambda v: below <= num(v) <= above),
            (1.5, f"{ref} >= {sql_literal(value)}", lambda v: num(v) >= value),
            (0.5, f"{ref} <= {sql_literal(value)}", lambda v: num(v) <= value),
        ]

    def _selective(self, options: list[tuple[float, str, Callable[[SQLValue], bool]]], info: ColumnInfo) -> str:
        """One of the options (all hold for the witness value) that leaves out at least one value of the column, so
        the condition filters something; the first option when none does."""
        useful = [o for o in options if not all(o[2](v) for v in info.values)] or options[:1]
        return self.rng.choices(useful, weights=[w for w, _, _ in useful])[0][1]

    def conditions(self, from_: From, row: Row, *, count: int, qualify: bool,
                   exclude: Sequence[tuple[str, str]] = (), roles: Sequence[Role] = FILTER_ROLES) -> list[str]:
        """Up to ``count`` conditions the witness ``row`` satisfies, on distinct columns. A condition naming one
        row (``name = '...'``) is only ever alone: beside other conditions it would make them pointless."""
        if count > 1:
            roles = [r for r in roles if r != "label"]
        candidates = [(src, info) for src in from_.sources for info in self.sampler.infos(src.table, *roles)
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

    def aggregate_filters(self, from_: From, *, qualify: bool, low: int = 0, exclude: Sequence[str] = ()) -> list[str]:
        """Filters for an aggregate: never on the row-naming label (a count of one named row says nothing)."""
        row = self.witness(from_)
        if row is None:
            return []
        count = self.rng.choices((low, low + 1, low + 2), (0.4, 0.45, 0.15))[0]
        src = from_.sources[0]
        roles = [r for r in FILTER_ROLES if r != "label"]
        return self.conditions(from_, row, count=count, qualify=qualify, roles=roles,
                               exclude=[(src.key, name) for name in exclude])

    def having(self, expression: str, values: Sequence[float]) -> str | None:
        """A HAVING threshold some but not necessarily all groups pass."""
        values = [v for v in values if v >= 2]
        if not values:
            return None
        pick = self.rng.choice(sorted(values)[len(values) // 3:] or list(values))
        if isinstance(pick, int) or float(pick).is_integer():
            pick_int = int(pick)
            op, bound = self.rng.choice(((">", pick_int - 1), (">=", pick_int)))
            return f"{expression} {op} {bound}"
        return f"{expression} > {sql_literal(nice_number(float(pick), 'below', self.rng))}"

    def grouped_values(self, sql: str) -> list[float]:
        result = run_query(self.sampler.conn, sql)
        return [float(v) for r in result.rows if isinstance(v := r[-1], int | float)]

    def child_edges(self) -> list[ForeignKey]:
        return [fk for fk in self.sampler.schema.foreign_keys if fk.table.lower() != fk.ref_table.lower()
                and self.sampler.info(self.sampler.schema.require_table(fk.table), fk.column).values]

    # ----- the shapes' preamble ---------------------------------------------------------------------------------
    def over_table(self, need: Sequence[Role], witness: bool) -> Scope | None:
        """One table having columns of every ``need``ed role (chosen here), with a witness row if asked."""
        return self._scope(self.single(need=need), witness)

    def over_join(self, lengths: Sequence[int], witness: bool) -> Scope | None:
        """Tables joined along foreign keys (the number drawn from ``lengths``), with a witness row if asked."""
        return self._scope(self.joined(lengths[0] if len(lengths) == 1 else self.rng.choice(lengths)), witness)

    def _scope(self, from_: From | None, witness: bool) -> Scope | None:
        if from_ is None:
            return None
        if not witness:
            return Scope(from_)
        row = self.witness(from_)
        return None if row is None else Scope(from_, row)

    def child_edge(self) -> ForeignKey | None:
        """A foreign key from a child table to another (parent) table, whose column holds values."""
        edges = self.child_edges()
        return self.rng.choice(edges) if edges else None
