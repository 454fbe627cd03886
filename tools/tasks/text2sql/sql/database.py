"""Seeded, realistic SQLite databases synthesized from a schema.

Rows get values chosen by column name and type (person names, cities, countries, titles, genres, statuses, dates,
years, prices, quantities, ratings, ...); personal-looking values are clearly synthetic (``user12@example.com``,
``555-0142``). Foreign-key columns point at existing parent rows. A *literal pool* (``"table.column"`` -> values,
usually taken from the task's real queries by :func:`.literals.literal_pool`) puts those values in the
data, so a real query's filter such as ``city = 'Berlin'`` or ``year > 2021`` returns rows; numeric pool values
also get neighbours just above and below them so range comparisons match too.

The same schema, seed and pool give the same database, byte for byte. Building is cached (serialized bytes), so
asking again costs a deserialize, not a rebuild.
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from tools.tasks.text2sql.sql import vocab
from tools.tasks.text2sql.sql.schema import Column, ForeignKey, Schema, Table, parse_schema

SQLValue = int | float | str | None
#: ``"table.column"`` (lower case) -> values that must appear in that column.
LiteralPool = Mapping[str, Sequence[SQLValue]]
#: Values that must appear together in one row: ``{"table.column": value, ...}`` over a single table (the
#: conjunction ``enroll_year = 2022 AND gpa < 2.5`` needs one student with both).
LiteralRow = Mapping[str, SQLValue]
Maker = Callable[[random.Random], SQLValue]

DEFAULT_ROWS = (10, 24)
_AIRPORTS = {code: (name, city, country) for code, name, city, country in vocab.AIRPORTS}
_CITY_COUNTRY = dict(vocab.CITIES)
BOOLEAN_WORDS = {
    "returned", "explicit", "vegetarian", "vegan", "active", "available", "paid", "verified", "completed",
    "cancelled", "deleted", "enabled", "flag", "frequent_flyer", "in_stock", "married", "retired", "open", "online",
    "public", "featured", "premium", "approved", "shipped", "archived", "subscribed", "delivered", "refunded",
}


def pool_key(table: str, column: str) -> str:
    return f"{table.lower()}.{column.lower()}"


@dataclass(frozen=True)
class _Context:
    """What a column's value maker may look at: its table and the kinds of tables around it."""

    table: str
    table_words: frozenset[str]
    domain_words: frozenset[str]

    def about(self, *words: str) -> bool:
        return any(w in self.table_words for w in words)

    def in_domain(self, *words: str) -> bool:
        return any(w in self.domain_words for w in words)


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


def _word_forms(name: str) -> frozenset[str]:
    words = name_words(name)
    return frozenset(words + [singular(w) for w in words])


def _choice(options: Sequence[SQLValue]) -> Maker:
    return lambda rng: rng.choice(options)


def _categorical(options: Sequence[str], rng: random.Random, low: int = 3, high: int = 6) -> Maker:
    """A categorical column uses a few values of its list, unevenly, so GROUP BY and filters are meaningful."""
    count = min(len(options), rng.randint(low, high))
    domain = rng.sample(list(options), count)
    weights = [1.0 / (i + 1) ** 0.7 for i in range(count)]
    return lambda r: r.choices(domain, weights)[0]


def _int_range(low: int, high: int) -> Maker:
    return lambda rng: rng.randint(low, high)


def _real_range(low: float, high: float, digits: int = 2, step: float | None = None) -> Maker:
    if step:
        return lambda rng: round(rng.uniform(low, high) / step) * step
    return lambda rng: round(rng.uniform(low, high), digits)


def _person_name(rng: random.Random) -> str:
    return f"{rng.choice(vocab.FIRST_NAMES)} {rng.choice(vocab.LAST_NAMES)}"


def _pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(vocab.WORD_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _date(rng: random.Random, first_year: int = 2019, last_year: int = 2025) -> str:
    return f"{rng.randint(first_year, last_year)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _datetime(rng: random.Random) -> str:
    return f"{_date(rng)} {rng.randint(5, 22):02d}:{rng.choice((0, 15, 30, 45)):02d}"


def _numeric_maker(words: list[str], name: str, column: Column, ctx: _Context) -> Maker:
    """Integers and reals by what the column measures."""
    real = column.kind == "real"
    has = set(words).__contains__

    def number(low: float, high: float, digits: int = 2) -> Maker:
        return _real_range(low, high, digits) if real else _int_range(int(low), int(high))

    if has("year") or name in ("founded", "established", "built"):
        if has("birth"):
            return _int_range(1945, 2006)
        if name in ("founded", "established") or has("founded"):
            return _int_range(1880, 2015)
        return _int_range(1995, 2025) if not has("release") else _int_range(1965, 2025)
    if has("age"):
        return _int_range(17, 38) if ctx.about("player", "athlete") else _int_range(18, 80)
    if has("salary") or has("income"):
        return _real_range(30000, 250000, step=500) if real else _int_range(30, 250)
    if has("wage") or has("hourly"):
        return number(12, 60)
    if has("budget"):
        return _real_range(20000, 3000000, step=1000) if real else _int_range(20000, 3000000)
    if has("gpa"):
        return _real_range(2.0, 4.0, 1)
    if has("rating") or has("stars"):
        return _real_range(1.0, 5.0, 1) if real else _int_range(1, 5)
    if has("score") or has("percent") or has("percentage"):
        return number(0, 100)
    if (has("price") or has("cost") or has("value")) and (ctx.in_domain("property", "house", "listing") or has("list")):
        return _real_range(90000, 1500000, step=1000) if real else _int_range(90000, 1500000)
    if has("fee"):
        return number(20, 450)
    if has("price") and ctx.about("dish", "menu", "meal", "food", "drink", "recipe"):
        return number(4, 40)
    if any(has(w) for w in ("price", "cost", "amount", "total", "revenue", "balance", "payment", "spent", "value")):
        return number(3, 1200)
    if has("quantity") or has("qty") or has("units"):
        return _int_range(1, 12)
    if has("stock") or has("inventory"):
        return _int_range(0, 250)
    if has("seats") or has("capacity"):
        return _int_range(20, 250)
    if has("floor"):
        return _int_range(1, 9)
    if has("bedrooms") or has("rooms") or has("bathrooms"):
        return _int_range(1, 6)
    if has("pages"):
        return _int_range(80, 900)
    if has("credits"):
        return _int_range(1, 6)
    if has("goals") or has("points"):
        return _int_range(0, 5) if has("home") or has("away") else _int_range(0, 30)
    if has("hours"):
        return number(1, 60)
    if has("sec") or has("seconds"):
        return _int_range(5, 400) if has("played") else _int_range(90, 420)
    if has("min") or has("minutes") or has("duration"):
        return _int_range(35, 720)
    if has("population"):
        return _int_range(5000, 9000000)
    if has("distance") or has("km") or has("miles"):
        return number(5, 5000)
    if has("weight") or has("kg"):
        return number(1, 120)
    if has("height") or has("cm"):
        return number(140, 210)
    if has("discount") or has("rate"):
        return number(0, 40)
    if has("id") or has("no") or has("number") or has("num") or has("count"):
        return _int_range(1, 60)
    return number(1, 500)


def _text_maker(words: list[str], name: str, column: Column, ctx: _Context, rng: random.Random) -> Maker:
    """Strings by what the column names (and, for ``name``/``title``/``category``, by its table)."""
    has = set(words).__contains__
    if has("email") or has("mail"):
        return lambda r: f"user{r.randint(1, 9999)}@example.com"
    if has("phone") or has("mobile") or has("fax") or has("tel"):
        return lambda r: f"555-01{r.randint(0, 99):02d}"
    if has("code") and ctx.about("airport"):
        return _choice([a[0] for a in vocab.AIRPORTS])
    if (has("flight") and (has("no") or has("number"))) or name == "flight_code":
        return lambda r: f"{r.choice(vocab.AIRLINE_CODES)}{r.randint(10, 999)}"
    if has("code") or has("sku"):
        return lambda r: "".join(r.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(3)) + str(r.randint(10, 99))
    if has("first") and has("name"):
        return _choice(vocab.FIRST_NAMES)
    if ((has("last") or has("family") or has("sur")) and has("name")) or name == "surname":
        return _choice(vocab.LAST_NAMES)
    person_column = any(w in vocab.PERSON_TABLE_WORDS for w in words)
    if has("name") or (has("title") and not has("job")):
        return _name_maker(has, person_column, ctx, rng)
    if has("city") or has("town") or has("hometown") or has("birthplace") or has("office") or has("location"):
        return _categorical([c for c, _ in vocab.CITIES], rng, 4, 8)
    if has("nationality"):
        return _categorical(vocab.NATIONALITIES, rng, 4, 8)
    if has("country"):
        return _categorical(sorted({c for _, c in vocab.CITIES}), rng, 4, 8)
    if has("address") or has("street"):
        return lambda r: f"{r.randint(1, 240)} {r.choice(vocab.STREETS)}"
    if has("zip") or has("postal") or has("postcode"):
        return lambda r: f"{r.randint(10000, 99999)}"
    if has("stadium") or has("venue") or has("arena"):
        return lambda r: f"{r.choice(vocab.PLACE_PREFIXES)} {r.choice(('Stadium', 'Park', 'Arena'))}"
    if has("building"):
        return _categorical(vocab.BUILDINGS, rng)
    if has("genre"):
        if ctx.in_domain("artist", "album", "track", "song", "stream", "music", "band"):
            return _categorical(vocab.GENRES_MUSIC, rng, 4, 7)
        if ctx.in_domain("movie", "film", "actor", "cinema"):
            return _categorical(vocab.GENRES_MOVIE, rng, 4, 7)
        return _categorical(vocab.GENRES_BOOK, rng, 4, 7)
    if has("category") or has("type") or has("kind"):
        if ctx.about("dish", "menu", "meal", "recipe"):
            return _categorical(vocab.DISH_CATEGORIES, rng)
        if ctx.about("property", "house", "home", "listing"):
            return _categorical(vocab.PROPERTY_TYPES, rng)
        if ctx.about("product", "item", "good"):
            return _categorical(vocab.PRODUCT_CATEGORIES, rng, 4, 7)
        return _categorical(vocab.DESCRIPTIONS, rng)
    if has("status") or has("state"):
        if ctx.about("order", "shipment", "delivery", "purchase"):
            return _categorical(vocab.STATUSES_ORDER, rng, 3, 5)
        if ctx.about("appointment", "visit", "booking", "reservation"):
            return _categorical(vocab.STATUSES_APPOINTMENT, rng, 3, 4)
        if ctx.about("project", "task", "ticket"):
            return _categorical(vocab.STATUSES_PROJECT, rng, 3, 4)
        return _categorical(vocab.STATUSES_GENERIC, rng, 2, 4)
    if has("class") or has("cabin"):
        return _categorical(vocab.SEAT_CLASSES, rng, 3, 4)
    if has("grade"):
        return _categorical(vocab.GRADES, rng, 4, 5)
    if has("semester") or has("term"):
        return _categorical(vocab.SEMESTERS, rng, 2, 4)
    if has("specialty") or has("speciality") or has("specialization"):
        return _categorical(vocab.SPECIALTIES, rng, 4, 7)
    if has("insurance") or has("insurer") or has("provider"):
        return _categorical(vocab.INSURERS, rng, 3, 6)
    if has("position"):
        if ctx.in_domain("player", "team", "match", "athlete"):
            return _categorical(vocab.PLAYER_POSITIONS, rng, 4, 4)
        return _categorical(vocab.JOB_TITLES, rng)
    if has("role"):
        if ctx.about("assignment", "project", "task", "member"):
            return _categorical(vocab.PROJECT_ROLES, rng)
        return _categorical(vocab.STAFF_ROLES, rng)
    if has("job") or has("occupation") or has("profession"):
        return _categorical(vocab.JOB_TITLES, rng)
    if has("department") or has("dept"):
        return _categorical(_departments(ctx), rng, 4, 7)
    if has("color") or has("colour"):
        return _categorical(vocab.COLORS, rng)
    if has("language"):
        return _categorical(vocab.LANGUAGES, rng)
    if has("gender") or has("sex"):
        return _categorical(vocab.GENDERS, rng, 2, 3)
    if has("level"):
        return _categorical(vocab.LEVELS, rng, 3, 3)
    if has("method") or has("payment"):
        return _categorical(vocab.PAYMENT_METHODS, rng)
    if has("brand") or has("manufacturer") or has("maker"):
        return _categorical(vocab.BRANDS, rng)
    if has("company") or has("employer") or has("publisher") or has("label") or has("airline"):
        return _categorical(vocab.COMPANY_NAMES, rng, 4, 7)
    if has("description") or has("notes") or has("comment") or has("remarks"):
        return _choice(vocab.DESCRIPTIONS)
    return _categorical([_pseudo_word(rng) for _ in range(8)], rng, 4, 8)


def _departments(ctx: _Context) -> tuple[str, ...]:
    if ctx.in_domain("doctor", "patient", "hospital", "nurse", "clinic"):
        return vocab.DEPARTMENTS_MEDICAL
    if ctx.in_domain("student", "course", "professor", "enrollment", "university"):
        return vocab.DEPARTMENTS_ACADEMIC
    return vocab.DEPARTMENTS_CORPORATE


def _name_maker(has: Callable[[str], bool], person_column: bool, ctx: _Context, rng: random.Random) -> Maker:
    if person_column or (has("name") and ctx.about(*vocab.PERSON_TABLE_WORDS) and not ctx.about("artist")):
        return _person_name
    if has("title"):
        if ctx.about("album", "record"):
            return _choice(vocab.ALBUM_TITLES)
        if ctx.about("track", "song"):
            return _choice(vocab.TRACK_TITLES)
        if ctx.about("movie", "film", "show"):
            return _choice(vocab.MOVIE_TITLES)
        if ctx.about("course", "class", "lecture", "subject"):
            return _choice(vocab.COURSE_TITLES)
        if ctx.about("job", "position", "employee", "staff"):
            return _choice(vocab.JOB_TITLES)
        return _choice(vocab.BOOK_TITLES)
    if ctx.about("artist", "band"):
        return lambda r: _person_name(r) if r.random() < 0.5 else f"The {_pseudo_word(r)}s"
    if ctx.about("airport"):
        return _choice([a[1] for a in vocab.AIRPORTS])
    if ctx.about("team", "club"):
        return lambda r: f"{r.choice(vocab.PLACE_PREFIXES)} {r.choice(vocab.TEAM_SUFFIXES)}"
    if ctx.about("restaurant", "cafe", "bar"):
        return _choice(vocab.RESTAURANT_NAMES)
    if ctx.about("product", "item", "good"):
        return _choice(vocab.PRODUCT_NAMES)
    if ctx.about("dish", "menu", "meal", "recipe", "food"):
        return _choice(vocab.DISH_NAMES)
    if ctx.about("department", "dept", "division"):
        return _choice(_departments(ctx))
    if ctx.about("project"):
        return _choice(vocab.PROJECT_NAMES)
    if ctx.about("company", "supplier", "vendor", "publisher", "manufacturer", "airline"):
        return _choice(vocab.COMPANY_NAMES)
    if ctx.about("course", "class", "subject"):
        return _choice(vocab.COURSE_TITLES)
    if ctx.about("book"):
        return _choice(vocab.BOOK_TITLES)
    if ctx.about("city", "town"):
        return _choice([c for c, _ in vocab.CITIES])
    if ctx.about("country"):
        return _choice(sorted({c for _, c in vocab.CITIES}))
    if ctx.about("genre"):
        return _choice(vocab.GENRES_BOOK)
    if ctx.about("category"):
        return _choice(vocab.PRODUCT_CATEGORIES)
    if ctx.about("store", "shop", "hotel", "branch", "warehouse", "school", "library", "museum", "gym", "park"):
        suffix = next(w for w in ("store", "shop", "hotel", "branch", "warehouse", "school", "library", "museum",
                                  "gym", "park") if ctx.about(w))
        return lambda r: f"{r.choice(vocab.PLACE_PREFIXES)} {suffix.capitalize()}"
    return lambda r: f"{_pseudo_word(r)} {_pseudo_word(r)}"


def _column_maker(column: Column, ctx: _Context, rng: random.Random) -> Maker:
    """The value maker for one column, from its kind and the words of its name."""
    name = column.name.lower()
    words = name_words(column.name)
    is_flag = name.startswith(("is_", "has_", "can_")) or name in BOOLEAN_WORDS or words[-1] in BOOLEAN_WORDS
    if column.kind == "boolean" or (column.kind == "integer" and is_flag):
        share = rng.uniform(0.25, 0.75)
        return lambda r: int(r.random() < share)
    if column.kind == "blob":
        return lambda r: bytes(r.randrange(256) for _ in range(8)).hex()
    dated = {"date", "day", "dob", "birthday", "created", "updated", "timestamp"} & set(words)
    timed = {"departure", "arrival", "time", "timestamp"} & set(words) or name.endswith("_at")
    if column.kind == "datetime" or (column.kind == "text" and timed):
        return _datetime
    if column.kind == "date" or (column.kind == "text" and (dated or name.endswith("_on"))):
        if "birth" in words or "dob" in words or "birthday" in words:
            return lambda r: _date(r, 1950, 2005)
        return _date
    if column.kind in ("integer", "real"):
        return _numeric_maker(words, name, column, ctx)
    if "year" in words:
        return lambda r: str(r.randint(1995, 2025))
    return _text_maker(words, name, column, ctx, rng)


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
        domain = frozenset().union(*(_word_forms(t.name) for t in schema.tables))
        self.ctx = _Context(table.name, _word_forms(table.name), domain)
        self.makers = {c.name: self._styled(c, _column_maker(c, self.ctx, rng)) for c in table.columns}
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
