"""Query shapes that join tables along foreign keys, and shapes that group rows (GROUP BY, HAVING)."""

from __future__ import annotations

from tools.tasks.text2sql.sql.words import name_words
from tools.tasks.text2sql.sql.writer import From, QueryWriter, Scope, ShapeBook

SHAPES = ShapeBook()


def _join_display(q: QueryWriter, from_: From) -> list[str]:
    shown: list[str] = []
    sources = list(from_.sources)
    q.rng.shuffle(sources)
    for src in sources[: q.rng.choice((1, 2, 2, 3))]:
        shown += q.display(src, qualify=True, extra=q.rng.choice((0, 0, 1)))
    return list(dict.fromkeys(shown))


@SHAPES.over_join("join", "join.pair", 5, witness=True)
def join_pair(q: QueryWriter, at: Scope) -> str | None:
    from_, row = at.from_, at.row
    conds = q.conditions(from_, row, count=q.rng.choice((0, 1, 1, 2)), qualify=True)
    return f"{q.select(_join_display(q, from_))} {from_.sql}{q.where(conds)}"


@SHAPES.over_join("join", "join.three", 2.5, lengths=(3,), witness=True)
def join_three(q: QueryWriter, at: Scope) -> str | None:
    from_, row = at.from_, at.row
    conds = q.conditions(from_, row, count=q.rng.choice((0, 1, 1, 2)), qualify=True)
    return f"{q.select(_join_display(q, from_))} {from_.sql}{q.where(conds)}"


@SHAPES.over_join("join", "join.aggregate", 2, lengths=(2, 2, 3), witness=True)
def join_aggregate(q: QueryWriter, at: Scope) -> str | None:
    from_, row = at.from_, at.row
    numbers = [(src, c) for src in from_.sources for c in q.sampler.infos(src.table, "number")]
    if numbers and q.rng.random() < 0.6:
        src, target = q.rng.choice(numbers)
        item = q.agg(q.rng.choice(("SUM", "AVG", "MAX", "MIN")), q.ref(src, target.name, qualify=True))[0]
        exclude = [(src.key, target.name)]
    else:
        item, exclude = q.agg("COUNT", "*")[0], []
    conds = q.conditions(from_, row, count=q.rng.choice((1, 1, 2)), qualify=True, exclude=exclude)
    return f"{q.select([item])} {from_.sql}{q.where(conds)}" if conds else None


@SHAPES.over_join("join", "join.ordered", 1.5, witness=True)
def join_ordered(q: QueryWriter, at: Scope) -> str | None:
    from_, row = at.from_, at.row
    keys = [(src, c) for src in from_.sources for c in q.sampler.infos(src.table, "number", "year", "date")]
    if not keys:
        return None
    src, key = q.rng.choice(keys)
    key_ref = q.ref(src, key.name, qualify=True)
    shown = _join_display(q, from_)
    if key_ref not in shown:
        shown.append(key_ref)
    conds = q.conditions(from_, row, count=q.rng.choice((0, 1)), qualify=True,
                         exclude=[(src.key, key.name)])
    tail = q.limit(q.rng.choice((1, 3, 5, 10))) if q.rng.random() < 0.6 else ""
    return (f"{q.select(shown)} {from_.sql}{q.where(conds)} {q.kw('ORDER BY')} {key_ref}"
            f"{q.direction(q.rng.random() < 0.6)}{tail}")


@SHAPES.over_join("join", "join.distinct", 1, witness=True)
def join_distinct(q: QueryWriter, at: Scope) -> str | None:
    from_, row = at.from_, at.row
    options = [(src, c) for src in from_.sources for c in q.sampler.infos(src.table, "category", "label")]
    if not options:
        return None
    src, target = q.rng.choice(options)
    conds = q.conditions(from_, row, count=1, qualify=True, exclude=[(src.key, target.name)])
    return f"{q.select([q.ref(src, target.name, qualify=True)], distinct=True)} {from_.sql}" \
           f"{q.where(conds)}"


def _group_tail(q: QueryWriter, select_items: list[str], group: str, from_sql: str, where: str, agg_expr: str,
                agg_alias: str | None) -> str:
    base = f"{from_sql}{where} {q.kw('GROUP BY')} {group}"
    roll = q.rng.random()
    if roll < 0.35:
        values = q.grouped_values(f"{q.kw('SELECT')} {group}, {agg_expr} {base}")
        having = q.having(agg_expr, values)
        if having:
            return f"{q.select(select_items)} {base} {q.kw('HAVING')} {having}"
    if roll < 0.6:
        order_by = agg_alias or agg_expr
        tail = q.limit(q.rng.choice((1, 3, 5))) if q.rng.random() < 0.6 else ""
        return f"{q.select(select_items)} {base} {q.kw('ORDER BY')} {order_by}" \
               f"{q.direction(q.rng.random() < 0.8)}{tail}"
    return f"{q.select(select_items)} {base}"


@SHAPES.over_table("group_by", "group.count", 3, need=("category",))
def group_count(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    groups = q.sampler.infos(src.table, "category") + q.sampler.infos(src.table, "year")
    target = q.rng.choice(groups)
    ref = q.ref(src, target.name, qualify=qualify)
    item, alias = q.agg("COUNT", "*", alias_hint=f"{name_words(src.table.name)[-1]}_count")
    where = q.where(q.aggregate_filters(from_, qualify=qualify)) if q.rng.random() < 0.25 else ""
    return _group_tail(q, [ref, item], ref, from_.sql, where, q.kw("COUNT(*)"), alias)


@SHAPES.over_table("group_by", "group.aggregate", 3, need=("category", "number"))
def group_aggregate(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    target = q.rng.choice(q.sampler.infos(src.table, "category") + q.sampler.infos(src.table, "year"))
    measure = q.rng.choice(q.sampler.infos(src.table, "number"))
    func = q.rng.choice(("AVG", "SUM", "MAX", "MIN", "AVG"))
    measure_ref = q.ref(src, measure.name, qualify=qualify)
    hint = {"AVG": "avg_", "SUM": "total_", "MAX": "max_", "MIN": "min_"}[func] + measure.name
    item, alias = q.agg(func, measure_ref, alias_hint=hint)
    ref = q.ref(src, target.name, qualify=qualify)
    items = [ref, item]
    if q.rng.random() < 0.2:
        items.insert(1, q.agg("COUNT", "*")[0])
    where = q.where(q.aggregate_filters(from_, qualify=qualify)) if q.rng.random() < 0.25 else ""
    return _group_tail(q, items, ref, from_.sql, where, f"{q.kw(func)}({measure_ref})", alias)


@SHAPES.over_table("group_by", "group.top", 2, need=("category",))
def group_top(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    target = q.rng.choice(q.sampler.infos(src.table, "category"))
    ref = q.ref(src, target.name, qualify=qualify)
    numbers = q.sampler.infos(src.table, "number")
    if numbers and q.rng.random() < 0.4:
        measure = f"{q.kw('SUM')}({q.ref(src, q.rng.choice(numbers).name, qualify=qualify)})"
    else:
        measure = q.kw("COUNT(*)")
    return (f"{q.select([ref])} {from_.sql} {q.kw('GROUP BY')} {ref} {q.kw('ORDER BY')} {measure}"
            f"{q.direction(q.rng.random() < 0.8)}{q.limit(1)}")


@SHAPES.over_join("group_by", "group.entity", 4)
def group_entity(q: QueryWriter, at: Scope) -> str | None:
    """Per parent entity over its children: ``SELECT p.name, COUNT(*) FROM child JOIN parent GROUP BY ...``."""
    from_ = at.from_
    fk = from_.edges[0]
    parent_src = next(s for s in from_.sources if s.table.name.lower() == fk.ref_table.lower())
    child_src = next(s for s in from_.sources if s is not parent_src)
    label = q.sampler.label(parent_src.table)
    if label is None:
        return None
    label_ref = q.ref(parent_src, label.name, qualify=True)
    group = label_ref
    if q.style.group_by_key and label.role != "key" and len(parent_src.table.primary_key) == 1:
        group = f"{q.ref(parent_src, parent_src.table.primary_key[0], qualify=True)}, {label_ref}"
    numbers = q.sampler.infos(child_src.table, "number")
    if numbers and q.rng.random() < 0.5:
        func = q.rng.choice(("SUM", "AVG", "MAX"))
        measure = q.rng.choice(numbers)
        agg_expr = f"{q.kw(func)}({q.ref(child_src, measure.name, qualify=True)})"
        hint = {"SUM": "total_", "AVG": "avg_", "MAX": "max_"}[func] + measure.name
    else:
        agg_expr, hint = q.kw("COUNT(*)"), f"{name_words(child_src.table.name)[-1]}_count"
    item, alias = q.agg(agg_expr.split("(")[0], agg_expr[agg_expr.index("(") + 1:-1], alias_hint=hint)
    items = [label_ref, item] if q.rng.random() < 0.75 else [label_ref]
    row = q.witness(from_)
    where = ""
    if row is not None and q.rng.random() < 0.25:
        conds = q.conditions(from_, row, count=1, qualify=True,
                             exclude=[(parent_src.key, label.name)])
        where = q.where(conds)
    return _group_tail(q, items, group, from_.sql, where, agg_expr, alias if len(items) > 1 else None)


@SHAPES.add("group_by", "group.foreign_key", 1)
def group_foreign_key(q: QueryWriter) -> str | None:
    fks = [fk for fk in q.sampler.schema.foreign_keys if fk.table.lower() != fk.ref_table.lower()]
    if not fks:
        return None
    fk = q.rng.choice(fks)
    from_ = q.single(q.sampler.schema.require_table(fk.table))
    if from_ is None:
        return None
    src = from_.sources[0]
    qualify = src.alias is not None
    ref = q.ref(src, fk.column, qualify=qualify)
    numbers = q.sampler.infos(src.table, "number")
    if numbers and q.rng.random() < 0.5:
        func = q.rng.choice(("SUM", "AVG"))
        agg_expr = f"{q.kw(func)}({q.ref(src, q.rng.choice(numbers).name, qualify=qualify)})"
    else:
        agg_expr = q.kw("COUNT(*)")
    return _group_tail(q, [ref, agg_expr], ref, from_.sql, "", agg_expr, None)

