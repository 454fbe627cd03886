"""Seeded, realistic SQLite databases synthesized from a schema.

Rows get values chosen by column name and type (:mod:`.values`: person names, cities, countries, titles, genres,
statuses, dates, years, prices, quantities, ratings, ...); personal-looking values are clearly synthetic
(``user12@example.com``, ``555-0142``). Foreign-key columns point at existing parent rows. A *literal pool*
(``"table.column"`` -> values, usually taken from the task's real queries by :func:`.literals.literal_pool`) puts
those values in the data, so a real query's filter such as ``city = 'Berlin'`` or ``year > 2021`` returns rows;
numeric pool values also get neighbours just above and below them so range comparisons match too.

The same schema, seed and pool give the same database, byte for byte. Building is cached (serialized bytes), so
asking again costs a deserialize, not a rebuild.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from tools.tasks.text2sql.sql import vocab
from tools.tasks.text2sql.sql.schema import Column, ForeignKey, Schema, Table, parse_schema
from tools.tasks.text2sql.sql.values import ColumnContext, Maker, SQLValue, column_maker, word_forms
from tools.tasks.text2sql.sql.words import name_words

#: ``"table.column"`` (lower case) -> values that must appear in that column.
LiteralPool = Mapping[str, Sequence[SQLValue]]
#: Values that must appear together in one row: ``{"table.column": value, ...}`` over a single table (the
#: conjunction ``enroll_year = 2022 AND gpa < 2.5`` needs one student with both).
LiteralRow = Mapping[str, SQLValue]

DEFAULT_ROWS = (10, 24)
_AIRPORTS = {code: (name, city, country) for code, name, city, country in vocab.AIRPORTS}
_CITY_COUNTRY = dict(vocab.CITIES)


def pool_key(table: str, column: str) -> str:
    return f"{table.lower()}.{column.lower()}"


def _neighbours(value: SQLValue, maker: Maker, rng: random.Random) -> list[SQLValue]:
    """A numeric pool value plus the nearest values the column's maker writes above and below it, so ``>`` and
    ``<`` filters on that value match rows too (a value beyond the maker's range gets a neighbour 5% further)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value in (0, 1):
        return [value]
    samples = [v for v in (maker(rng) for _ in range(40)) if isinstance(v, int | float) and v != value]
    above = [v for v in samples if v > value]
    below = [v for v in samples if v < value]
    step = abs(value) * 0.05 or 1
    if isinstance(value, int):
        step = max(1, int(step))
    high = min(above) if above else value + step
    low = max(below) if below else value - step
    return [value, high, low]


def _coerce(value: SQLValue, column: Column) -> SQLValue:
    if column.kind == "integer" and isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)  # beyond 64 bits SQLite stores the number as REAL
    if column.kind == "real" and isinstance(value, int):
        return float(value)
    return value


class _TableFiller:
    """Generates one table's rows given the rows already made for its parents."""

    def __init__(self, schema: Schema, table: Table, rng: random.Random, pool: LiteralPool,
                 made: dict[str, list[dict[str, SQLValue]]], together: Sequence[LiteralRow] = ()):
        self.together = together
        self.schema = schema
        self.table = table
        self.rng = rng
        self.pool = pool
        self.made = made
        domain = frozenset().union(*(word_forms(t.name) for t in schema.tables))
        self.ctx = ColumnContext(table.name, word_forms(table.name), domain)
        self.makers = {c.name: self._styled(c, column_maker(c, self.ctx, rng)) for c in table.columns}
        self.fks = {fk.column.lower(): fk for fk in schema.foreign_keys_of(table.name)}
        self.identity = {
            c.name for c in table.columns
            if c.kind == "text" and {"name", "title"} & set(name_words(c.name)) and c.name.lower() not in self.fks
        }
        self.city_column = self._find_column(lambda w: "city" in w)
        self.country_column = self._find_column(lambda w: "country" in w and "user" not in w)
        self.code_column = self._find_column(lambda w: "code" in w) if self.ctx.about("airport") else None
        self.name_column = self._find_column(lambda w: w == ["name"])

    def _find_column(self, test: Callable[[list[str]], bool]) -> str | None:
        return next((c.name for c in self.table.columns if c.kind == "text" and test(name_words(c.name))), None)

    def _styled(self, column: Column, maker: Maker) -> Maker:
        """Follow the case of the pool's strings (``'defender'`` makes the whole column lower case)."""
        strings = [v for v in self.pool.get(pool_key(self.table.name, column.name), ()) if isinstance(v, str)]
        letters = [v for v in strings if any(ch.isalpha() for ch in v)]
        if letters and all(v == v.lower() for v in letters):
            return lambda r: v.lower() if isinstance(v := maker(r), str) else v
        if letters and all(v == v.upper() for v in letters):
            return lambda r: v.upper() if isinstance(v := maker(r), str) else v
        return maker

    def _cohere(self, row: dict[str, SQLValue]) -> None:
        """Keep a row's place columns consistent: an airport code with its city and country, a city with its
        country."""
        if self.code_column is not None:
            airport = _AIRPORTS.get(str(row[self.code_column]))
            if airport is not None:
                if self.name_column:
                    row[self.name_column] = airport[0]
                if self.city_column:
                    row[self.city_column] = airport[1]
                if self.country_column:
                    row[self.country_column] = airport[2]
                return
        if self.city_column and self.country_column:
            country = _CITY_COUNTRY.get(str(row[self.city_column]))
            if country is not None:
                row[self.country_column] = country

    def fill(self, count: int) -> list[dict[str, SQLValue]]:
        rows: list[dict[str, SQLValue]] = []
        seen_unique: dict[str, set[SQLValue]] = {c.name: set() for c in self.table.columns if c.unique}
        seen_keys: set[tuple[SQLValue, ...]] = set()
        integer_key = self._integer_key()
        key_ids = self._key_ids(integer_key, count) if integer_key else []
        for index in range(count):
            for attempt in range(8):
                row = self._row(index, rows, key_ids, integer_key)
                key = tuple(row[p] for p in self._pk_names())
                if key and key in seen_keys:
                    continue
                clashes = [c for c, seen in seen_unique.items() if row[c] is not None and row[c] in seen]
                if clashes and attempt < 7:
                    continue
                if attempt < 4 and any(any(r[c] == row[c] for r in rows) for c in self.identity):
                    continue
                for c in clashes:
                    row[c] = self._fresh(row[c], seen_unique[c], index)
                if key:
                    seen_keys.add(key)
                for c, seen in seen_unique.items():
                    seen.add(row[c])
                rows.append(row)
                break
        self._place_pool_values(rows, integer_key)
        self._place_literal_rows(rows)
        return rows

    def _fresh(self, value: SQLValue, seen: set[SQLValue], index: int) -> SQLValue:
        """A value for a UNIQUE column whose maker keeps repeating itself."""
        if isinstance(value, str):
            if value.isupper() and len(value) <= 4:
                while value in seen:
                    value = "".join(self.rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(len(value)))
                return value
            return f"{value} {index + 1}"
        numbers = [v for v in seen if isinstance(v, int | float)]
        return (max(numbers) if numbers else 0) + 1

    def _place_literal_rows(self, rows: list[dict[str, SQLValue]]) -> None:
        """Give each co-occurrence group its own row (keys, and foreign keys without a parent, left alone)."""
        taken: set[int] = set()
        for group in self.together:
            slot = _unused_rows(len(rows), taken, self.rng)
            if slot is None:
                return
            taken.add(slot)
            for key, value in group.items():
                column = self.table.column(key.split(".", 1)[1])
                if column is None or (column.primary_key and len(self.table.primary_key) == 1):
                    continue
                fk = self.fks.get(column.name.lower())
                if fk is not None and value not in {r.get(fk.ref_column) for r in self.made.get(
                        fk.ref_table.lower(), ())}:
                    continue
                rows[slot][column.name] = _coerce(value, column)

    def _pk_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.table.columns if c.primary_key)

    def _integer_key(self) -> Column | None:
        pk = [c for c in self.table.columns if c.primary_key]
        if len(pk) == 1 and pk[0].kind == "integer" and pk[0].name.lower() not in self.fks:
            return pk[0]
        return None

    def _key_ids(self, key: Column, count: int) -> list[int]:
        """1..count, with ids named by the pool (on this key or on foreign keys pointing at it) swapped in."""
        ids = list(range(1, count + 1))
        wanted: list[SQLValue] = list(self.pool.get(pool_key(self.table.name, key.name), ()))
        for fk in self.schema.foreign_keys:
            if fk.ref_table.lower() == self.table.name.lower() and fk.ref_column.lower() == key.name.lower():
                wanted.extend(self.pool.get(pool_key(fk.table, fk.column), ()))
        extra = [int(v) for v in wanted if isinstance(v, int | float) and not isinstance(v, bool)
                 and float(v).is_integer() and count < int(v) < 2**63]
        slots = self.rng.sample(range(count), min(count, len(set(extra))))
        for slot, value in zip(slots, sorted(set(extra)), strict=False):
            ids[slot] = value
        return ids

    def _row(self, index: int, rows: list[dict[str, SQLValue]], key_ids: list[int],
             integer_key: Column | None) -> dict[str, SQLValue]:
        row: dict[str, SQLValue] = {}
        for column in self.table.columns:
            if integer_key is not None and column is integer_key:
                row[column.name] = key_ids[index]
            elif column.name.lower() in self.fks:
                row[column.name] = self._reference(self.fks[column.name.lower()], rows, column)
            else:
                row[column.name] = self.makers[column.name](self.rng)
        self._cohere(row)
        return row

    def _reference(self, fk: ForeignKey, rows: list[dict[str, SQLValue]], column: Column) -> SQLValue:
        if fk.ref_table.lower() == self.table.name.lower():
            earlier = [r.get(fk.ref_column) for r in rows]
            if not earlier or self.rng.random() < 0.2:
                return None
            return self.rng.choice(earlier)
        parents = self.made.get(fk.ref_table.lower())
        if not parents:
            return None if not column.not_null else self.makers[column.name](self.rng)
        return parents[self.rng.randrange(len(parents))].get(fk.ref_column)

    def _place_pool_values(self, rows: list[dict[str, SQLValue]], integer_key: Column | None) -> None:
        """Put every pool value of this table's columns into some row; a foreign-key value only when a parent row
        has it (the parent's keys took the pool's ids in :meth:`_key_ids`)."""
        if not rows:
            return
        for column in self.table.columns:
            if column is integer_key or (column.primary_key and len(self.table.primary_key) == 1):
                continue
            values = self.pool.get(pool_key(self.table.name, column.name), ())
            placed: list[SQLValue] = []
            fk = self.fks.get(column.name.lower())
            if fk is not None:
                parents = {r.get(fk.ref_column) for r in self.made.get(fk.ref_table.lower(), ())}
                values = [v for v in values if v in parents]
            for value in values:
                if fk is not None:
                    placed.append(value)
                    continue
                for candidate in _neighbours(_coerce(value, column), self.makers[column.name], self.rng):
                    if candidate not in placed:
                        placed.append(candidate)
            if column.unique:
                present = {r[column.name] for r in rows}
                placed = [v for v in placed if v not in present]
            slots = self.rng.sample(range(len(rows)), min(len(rows), len(placed)))
            for slot, value in zip(slots, placed, strict=False):
                rows[slot][column.name] = value


def _unused_rows(count: int, taken: set[int], rng: random.Random) -> int | None:
    free = [i for i in range(count) if i not in taken]
    return rng.choice(free) if free else None


def synthesize_rows(schema: Schema, *, seed: int = 0, literal_pool: LiteralPool | None = None,
                    literal_rows: Sequence[LiteralRow] = (), rows: tuple[int, int] = DEFAULT_ROWS
                    ) -> dict[str, list[dict[str, SQLValue]]]:
    """Rows for every table (keyed by lower-case table name), parents before children. Deterministic."""
    rng = random.Random(f"{seed}|{schema.text}")
    pool = {k.lower(): list(v) for k, v in sorted((literal_pool or {}).items())}
    made: dict[str, list[dict[str, SQLValue]]] = {}
    for table in schema.fill_order():
        count = rng.randint(*rows)
        if schema.foreign_keys_of(table.name):
            count = int(count * 1.8)
        prefix = table.name.lower() + "."
        together = [group for group in literal_rows if group and all(k.lower().startswith(prefix) for k in group)]
        made[table.name.lower()] = _TableFiller(schema, table, rng, pool, made, together).fill(count)
    return made


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@lru_cache(maxsize=512)
def _database_bytes(schema_text: str, seed: int, pool_items: tuple[tuple[str, tuple[SQLValue, ...]], ...],
                    row_items: tuple[tuple[tuple[str, SQLValue], ...], ...], rows: tuple[int, int]) -> bytes:
    schema = parse_schema(schema_text)
    data = synthesize_rows(schema, seed=seed, literal_pool=dict(pool_items),
                           literal_rows=[dict(group) for group in row_items], rows=rows)
    conn = sqlite3.connect(":memory:")
    try:
        for table in schema.tables:
            conn.execute(table.create_sql)
        for table in schema.tables:
            table_rows = data[table.name.lower()]
            names = table.column_names
            sql = (f"INSERT INTO {_quote(table.name)} ({', '.join(map(_quote, names))}) "
                   f"VALUES ({', '.join('?' for _ in names)})")
            try:
                conn.executemany(sql, [tuple(r[n] for n in names) for r in table_rows])
            except sqlite3.IntegrityError:
                # A CHECK or UNIQUE constraint the generator does not model: keep the rows SQLite accepts.
                for r in table_rows:
                    try:
                        conn.execute(sql, tuple(r[n] for n in names))
                    except sqlite3.IntegrityError:
                        continue
        conn.commit()
        return conn.serialize()
    finally:
        conn.close()


def _pool_items(literal_pool: LiteralPool | None) -> tuple[tuple[str, tuple[SQLValue, ...]], ...]:
    if not literal_pool:
        return ()
    return tuple(sorted((k.lower(), tuple(v)) for k, v in literal_pool.items()))


def build_database(schema: Schema | str, *, seed: int = 0, literal_pool: LiteralPool | None = None,
                   literal_rows: Sequence[LiteralRow] = (), rows: tuple[int, int] = DEFAULT_ROWS
                   ) -> sqlite3.Connection:
    """A new in-memory SQLite connection holding the schema's tables filled with seeded sample rows.

    ``literal_pool`` values each appear in their column; each ``literal_rows`` group appears together in one row.

    The connection is writable; pass it to :func:`.sandbox.lock_down` (or use
    :func:`.sandbox.sandbox_database`) before running SQL a model wrote.
    """
    text = schema.text if isinstance(schema, Schema) else schema
    row_items = tuple(tuple(sorted((k.lower(), v) for k, v in group.items())) for group in literal_rows)
    image = _database_bytes(text, seed, _pool_items(literal_pool), row_items, rows)
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.deserialize(image)
    return conn
