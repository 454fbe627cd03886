"""Column values for synthesized databases, chosen by a column's type and the words of its name.

:func:`column_maker` gives each column a *maker* (a function of a ``random.Random``): person names, cities,
countries, titles, genres, statuses, dates, years, prices, quantities, ratings and so on, with clearly synthetic
personal values (``user12@example.com``, ``555-0142``). Categorical columns use a few values, unevenly, so
GROUP BY and filters mean something.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tools.tasks.text2sql.sql import vocab
from tools.tasks.text2sql.sql.schema import Column
from tools.tasks.text2sql.sql.words import name_words, singular

SQLValue = int | float | str | None
Maker = Callable[[random.Random], SQLValue]
BOOLEAN_WORDS = {
    "returned", "explicit", "vegetarian", "vegan", "active", "available", "paid", "verified", "completed",
    "cancelled", "deleted", "enabled", "flag", "frequent_flyer", "in_stock", "married", "retired", "open", "online",
    "public", "featured", "premium", "approved", "shipped", "archived", "subscribed", "delivered", "refunded",
}


@dataclass(frozen=True)
class ColumnContext:
    """What a column's value maker may look at: its table and the kinds of tables around it."""

    table: str
    table_words: frozenset[str]
    domain_words: frozenset[str]

    def about(self, *words: str) -> bool:
        return any(w in self.table_words for w in words)

    def in_domain(self, *words: str) -> bool:
        return any(w in self.domain_words for w in words)


def word_forms(name: str) -> frozenset[str]:
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


#: Counts and measures by the words of a column's name, checked in order after the special cases of
#: :func:`_numeric_maker`: (any of these words, and any of these too when given), its range, and whether it is a
#: measure (REAL in a REAL column) rather than a count (always an integer).
_COUNTS_AND_MEASURES: tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[int, int], bool], ...] = (
    (("quantity", "qty", "units"), (), (1, 12), False),
    (("stock", "inventory"), (), (0, 250), False),
    (("seats", "capacity"), (), (20, 250), False),
    (("floor",), (), (1, 9), False),
    (("bedrooms", "rooms", "bathrooms"), (), (1, 6), False),
    (("pages",), (), (80, 900), False),
    (("credits",), (), (1, 6), False),
    (("goals", "points"), ("home", "away"), (0, 5), False),
    (("goals", "points"), (), (0, 30), False),
    (("hours",), (), (1, 60), True),
    (("sec", "seconds"), ("played",), (5, 400), False),
    (("sec", "seconds"), (), (90, 420), False),
    (("min", "minutes", "duration"), (), (35, 720), False),
    (("population",), (), (5000, 9000000), False),
    (("distance", "km", "miles"), (), (5, 5000), True),
    (("weight", "kg"), (), (1, 120), True),
    (("height", "cm"), (), (140, 210), True),
    (("discount", "rate"), (), (0, 40), True),
    (("id", "no", "number", "num", "count"), (), (1, 60), False),
)


def _numeric_maker(words: list[str], name: str, column: Column, ctx: ColumnContext) -> Maker:
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
    for names, also, (low, high), measure in _COUNTS_AND_MEASURES:
        if any(has(w) for w in names) and (not also or any(has(w) for w in also)):
            return number(low, high) if measure else _int_range(low, high)
    return number(1, 500)


def _text_maker(words: list[str], name: str, column: Column, ctx: ColumnContext, rng: random.Random) -> Maker:
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


def _departments(ctx: ColumnContext) -> tuple[str, ...]:
    if ctx.in_domain("doctor", "patient", "hospital", "nurse", "clinic"):
        return vocab.DEPARTMENTS_MEDICAL
    if ctx.in_domain("student", "course", "professor", "enrollment", "university"):
        return vocab.DEPARTMENTS_ACADEMIC
    return vocab.DEPARTMENTS_CORPORATE


def _name_maker(has: Callable[[str], bool], person_column: bool, ctx: ColumnContext, rng: random.Random) -> Maker:
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


def column_maker(column: Column, ctx: ColumnContext, rng: random.Random) -> Maker:
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
