"""Query shapes over one table: plain filters, ordering with limits, and aggregates without grouping."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.tasks.text2sql.sql.writer import QueryWriter, Scope, ShapeBook, Source, sql_literal

if TYPE_CHECKING:
    from tools.tasks.text2sql.sql.sampler import ColumnInfo

SHAPES = ShapeBook()


@SHAPES.over_table("filter", "filter.where", 6, witness=True)
def filter_where(q: QueryWriter, at: Scope) -> str | None:
    from_, row, src, qualify = at.from_, at.row, at.src, at.qualify
    conds = q.conditions(from_, row, count=q.n_conditions(), qualify=qualify)
    if not conds:
        return None
    shown = q.display(src, qualify=qualify)
    return f"{q.select(shown)} {from_.sql}{q.where(conds)}"


@SHAPES.over_table("filter", "filter.distinct", 2, need=("category",), witness=True)
def filter_distinct(q: QueryWriter, at: Scope) -> str | None:
    from_, row, src, qualify = at.from_, at.row, at.src, at.qualify
    target = q.rng.choice(q.sampler.infos(src.table, "category"))
    conds = q.conditions(from_, row, count=q.rng.choice((0, 1, 1)), qualify=qualify,
                         exclude=[(src.key, target.name)])
    return f"{q.select([q.ref(src, target.name, qualify=qualify)], distinct=True)} {from_.sql}" \
           f"{q.where(conds)}"


@SHAPES.over_table("filter", "filter.or", 1.5, need=("category",), witness=True)
def filter_or(q: QueryWriter, at: Scope) -> str | None:
    from_, row, src, qualify = at.from_, at.row, at.src, at.qualify
    info = q.rng.choice([c for c in q.sampler.infos(src.table, "category") if len(c.values) > 1] or [None])
    if info is None:
        return None
    value = row[(src.key, info.name)]
    other = q.rng.choice([v for v in info.values if v != value])
    ref = q.ref(src, info.name, qualify=qualify)
    either = f"{ref} = {sql_literal(value)} {q.kw('OR')} {ref} = {sql_literal(other)}"
    extra = q.conditions(from_, row, count=q.rng.choice((0, 1)), qualify=qualify,
                         exclude=[(src.key, info.name)])
    conds = [f"({either})", *extra] if extra else [either]
    return f"{q.select(q.display(src, qualify=qualify, exclude=[info.name]))} {from_.sql}" \
           f"{q.where(conds)}"


@SHAPES.over_table("filter", "filter.star", 0.7, witness=True)
def filter_star(q: QueryWriter, at: Scope) -> str | None:
    from_, row = at.from_, at.row
    conds = q.conditions(from_, row, count=1, qualify=from_.sources[0].alias is not None)
    return f"{q.select(['*'])} {from_.sql}{q.where(conds)}" if conds else None


@SHAPES.over_table("filter", "filter.all_rows", 0.4)
def filter_all_rows(q: QueryWriter, at: Scope) -> str | None:
    from_, src = at.from_, at.src
    return f"{q.select(q.display(src, qualify=src.alias is not None, extra=1))} {from_.sql}"


def _sortable(q: QueryWriter, src: Source) -> list[ColumnInfo]:
    return q.sampler.infos(src.table, "number", "year", "date", "label")


@SHAPES.over_table("order_limit", "order.top_k", 5)
def order_top_k(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    keys = [c for c in _sortable(q, src) if c.role != "label"]
    if not keys:
        return None
    key = q.rng.choice(keys)
    shown = q.display(src, qualify=qualify, extra=0, exclude=[key.name])
    shown.append(q.ref(src, key.name, qualify=qualify))
    descending = q.rng.random() < 0.65
    k = q.rng.choice((1, 3, 5, 5, 10))
    return f"{q.select(shown)} {from_.sql} {q.kw('ORDER BY')} {q.ref(src, key.name, qualify=qualify)}" \
           f"{q.direction(descending)}{q.limit(k)}"


@SHAPES.over_table("order_limit", "order.filtered", 3, witness=True)
def order_filtered(q: QueryWriter, at: Scope) -> str | None:
    from_, row, src, qualify = at.from_, at.row, at.src, at.qualify
    keys = _sortable(q, src)
    if not keys:
        return None
    key = q.rng.choice(keys)
    conds = q.conditions(from_, row, count=1, qualify=qualify, exclude=[(src.key, key.name)])
    shown = q.display(src, qualify=qualify, exclude=[key.name])
    if q.ref(src, key.name, qualify=qualify) not in shown and q.rng.random() < 0.6:
        shown.append(q.ref(src, key.name, qualify=qualify))
    tail = q.limit(q.rng.choice((3, 5, 10))) if q.rng.random() < 0.3 else ""
    return (f"{q.select(shown)} {from_.sql}{q.where(conds)} {q.kw('ORDER BY')} "
            f"{q.ref(src, key.name, qualify=qualify)}{q.direction(q.rng.random() < 0.5)}{tail}")


@SHAPES.over_table("order_limit", "order.two_keys", 1.5, need=("category",))
def order_two_keys(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    first = q.rng.choice(q.sampler.infos(src.table, "category"))
    seconds = [c for c in _sortable(q, src) if c.name != first.name]
    if not seconds:
        return None
    second = q.rng.choice(seconds)
    shown = q.display(src, qualify=qualify, extra=0, exclude=[first.name, second.name])
    for c in (first, second):
        ref = q.ref(src, c.name, qualify=qualify)
        if ref not in shown:
            shown.append(ref)
    order = (f"{q.ref(src, first.name, qualify=qualify)}{q.direction(False)}, "
             f"{q.ref(src, second.name, qualify=qualify)}{q.direction(q.rng.random() < 0.5)}")
    return f"{q.select(shown)} {from_.sql} {q.kw('ORDER BY')} {order}"


@SHAPES.over_table("order_limit", "order.limit_only", 0.5)
def order_limit_only(q: QueryWriter, at: Scope) -> str | None:
    from_, src = at.from_, at.src
    return f"{q.select(q.display(src, qualify=src.alias is not None))} {from_.sql}" \
           f"{q.limit(q.rng.choice((3, 5, 10)))}"


@SHAPES.over_table("aggregation", "agg.count", 3)
def agg_count(q: QueryWriter, at: Scope) -> str | None:
    from_ = at.from_
    conds = q.aggregate_filters(from_, qualify=from_.sources[0].alias is not None, low=1)
    return f"{q.select([q.agg('COUNT', '*')[0]])} {from_.sql}{q.where(conds)}"


@SHAPES.over_table("aggregation", "agg.numeric", 4, need=("number",))
def agg_numeric(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    target = q.rng.choice(q.sampler.infos(src.table, "number"))
    func = q.rng.choice(("AVG", "SUM", "MAX", "MIN", "AVG", "SUM"))
    conds = q.aggregate_filters(from_, qualify=qualify, exclude=[target.name])
    item = q.agg(func, q.ref(src, target.name, qualify=qualify))[0]
    return f"{q.select([item])} {from_.sql}{q.where(conds)}"


@SHAPES.over_table("aggregation", "agg.min_max", 1.5, need=("number",))
def agg_min_max(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    target = q.rng.choice(q.sampler.infos(src.table, "number") + q.sampler.infos(src.table, "year"))
    ref = q.ref(src, target.name, qualify=qualify)
    funcs = q.rng.choice((("MIN", "MAX"), ("AVG", "MAX"), ("MIN", "AVG", "MAX"), ("COUNT", "AVG")))
    items = [q.agg(f, "*" if f == "COUNT" else ref)[0] for f in funcs]
    conds = q.aggregate_filters(from_, qualify=qualify, exclude=[target.name])
    return f"{q.select(items)} {from_.sql}{q.where(conds)}"


@SHAPES.over_table("aggregation", "agg.count_distinct", 1.2, need=("category",))
def agg_count_distinct(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    target = q.rng.choice(q.sampler.infos(src.table, "category"))
    item = q.agg("COUNT", f"{q.kw('DISTINCT')} {q.ref(src, target.name, qualify=qualify)}")[0]
    conds = q.aggregate_filters(from_, qualify=qualify, exclude=[target.name])
    return f"{q.select([item])} {from_.sql}{q.where(conds)}"

