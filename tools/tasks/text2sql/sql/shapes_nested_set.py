"""Query shapes with subqueries (IN, NOT IN, EXISTS, scalar comparisons, derived tables) and set operations."""

from __future__ import annotations

from tools.tasks.text2sql.sql import vocab
from tools.tasks.text2sql.sql.schema import ForeignKey, Table
from tools.tasks.text2sql.sql.values import SQLValue
from tools.tasks.text2sql.sql.words import name_words, singular
from tools.tasks.text2sql.sql.writer import (
    From,
    QueryWriter,
    Scope,
    ShapeBook,
    Source,
    nice_number,
    sql_ident,
    sql_literal,
)

SHAPES = ShapeBook()


def _is_person_table(table: Table) -> bool:
    return any(w in vocab.PERSON_TABLE_WORDS or singular(w) in vocab.PERSON_TABLE_WORDS for w in name_words(table.name))


@SHAPES.over_child_edge("nested", "nested.in", 3)
def nested_in(q: QueryWriter, fk: ForeignKey) -> str | None:
    """Parents whose key is IN the foreign keys of children meeting a condition (maybe through a join)."""
    schema = q.sampler.schema
    parent = schema.require_table(fk.ref_table)
    outer = q.single(parent)
    if outer is None:
        return None
    outer_src = outer.sources[0]
    qualify = outer_src.alias is not None
    child = schema.require_table(fk.table)
    further = [g for g in schema.foreign_keys_of(child.name) if g is not fk
               and g.ref_table.lower() != child.name.lower()]
    if further and q.rng.random() < 0.5:
        g = q.rng.choice(further)
        other = schema.require_table(g.ref_table)
        inner_child = q.source(child, aliased=True)
        inner_other = q.source(other, aliased=True)
        inner = From([inner_child, inner_other], [g],
                      f"{q.kw('FROM')} {q.table_sql(inner_child)} {q.join_word()} "
                      f"{q.table_sql(inner_other)} {q.kw('ON')} "
                      f"{q.ref(inner_child, g.column, qualify=True)} = "
                      f"{q.ref(inner_other, g.ref_column, qualify=True)}")
        row = q.witness(inner)
        if row is None:
            return None
        conds = q.conditions(From([inner_other], [], ""), row, count=1, qualify=True)
        selected = q.ref(inner_child, fk.column, qualify=True)
    else:
        inner = q.single(child) or outer
        row = q.witness(inner)
        if row is None:
            return None
        inner_src = inner.sources[0]
        conds = q.conditions(inner, row, count=1, qualify=inner_src.alias is not None,
                             exclude=[(inner_src.key, fk.column)])
        selected = q.ref(inner_src, fk.column, qualify=inner_src.alias is not None)
    if not conds:
        return None
    subquery = f"{q.select([selected])} {inner.sql}{q.where(conds)}"
    shown = q.display(outer_src, qualify=qualify, extra=q.rng.choice((0, 0, 1)))
    key_ref = q.ref(outer_src, fk.ref_column, qualify=qualify)
    return f"{q.select(shown)} {outer.sql} {q.kw('WHERE')} {key_ref} {q.kw('IN')} ({subquery})"


@SHAPES.over_child_edge("nested", "nested.not_in", 2)
def nested_not_in(q: QueryWriter, fk: ForeignKey) -> str | None:
    schema = q.sampler.schema
    outer = q.single(schema.require_table(fk.ref_table))
    if outer is None:
        return None
    outer_src = outer.sources[0]
    qualify = outer_src.alias is not None
    inner = q.single(schema.require_table(fk.table))
    if inner is None:
        return None
    inner_src = inner.sources[0]
    selected = q.ref(inner_src, fk.column, qualify=inner_src.alias is not None)
    conds: list[str] = []
    if q.rng.random() < 0.3:
        row = q.witness(inner)
        if row is not None:
            conds = q.conditions(inner, row, count=1, qualify=inner_src.alias is not None,
                                 exclude=[(inner_src.key, fk.column)])
    subquery = f"{q.select([selected])} {inner.sql}{q.where(conds)}"
    shown = q.display(outer_src, qualify=qualify)
    key_ref = q.ref(outer_src, fk.ref_column, qualify=qualify)
    return f"{q.select(shown)} {outer.sql} {q.kw('WHERE')} {key_ref} {q.kw('NOT IN')} ({subquery})"


@SHAPES.over_table("nested", "nested.scalar_avg", 2.5, need=("number",))
def nested_scalar_avg(q: QueryWriter, at: Scope) -> str | None:
    from_, src, qualify = at.from_, at.src, at.qualify
    measure = q.rng.choice(q.sampler.infos(src.table, "number"))
    ref = q.ref(src, measure.name, qualify=qualify)
    op = q.rng.choice((">", ">", "<", ">="))
    inner_conds = ""
    if q.rng.random() < 0.25:
        row = q.witness(from_)
        if row is not None:
            inner = q.conditions(from_, row, count=1, qualify=False, exclude=[(src.key, measure.name)],
                                 roles=("category",))
            inner_conds = q.where([c.replace(f"{src.key}.", "") for c in inner])
    subquery = f"{q.kw('SELECT')} {q.kw('AVG')}({sql_ident(measure.name)}) {q.kw('FROM')} " \
               f"{sql_ident(src.table.name)}{inner_conds}"
    shown = q.display(src, qualify=qualify, extra=0, exclude=[measure.name])
    if q.rng.random() < 0.6:
        shown.append(ref)
    return f"{q.select(shown)} {from_.sql} {q.kw('WHERE')} {ref} {op} ({subquery})"


@SHAPES.over_table("nested", "nested.scalar_extreme", 2, need=("number",))
def nested_scalar_extreme(q: QueryWriter, at: Scope) -> str | None:
    src, qualify = at.src, at.qualify
    measure = q.rng.choice(q.sampler.infos(src.table, "number") + q.sampler.infos(src.table, "year"))
    ref = q.ref(src, measure.name, qualify=qualify)
    func = q.rng.choice(("MAX", "MIN"))
    subquery = f"{q.kw('SELECT')} {q.kw(func)}({sql_ident(measure.name)}) {q.kw('FROM')} " \
               f"{sql_ident(src.table.name)}"
    shown = q.display(src, qualify=qualify, exclude=[measure.name])
    return f"{q.select(shown)} {at.from_.sql} {q.kw('WHERE')} {ref} = ({subquery})"


def _exists(q: QueryWriter, fk: ForeignKey, *, negate: bool) -> str | None:
    schema = q.sampler.schema
    parent, child = schema.require_table(fk.ref_table), schema.require_table(fk.table)
    outer_src = q.source(parent, aliased=q.style.alias_kind != "none")
    inner_src = q.source(child, aliased=q.style.alias_kind != "none")
    if outer_src.alias is None or inner_src.alias is None:
        outer_src, inner_src = Source(parent, None), Source(child, None)
    inner = From([inner_src], [], f"{q.kw('FROM')} {q.table_sql(inner_src)}")
    link = f"{q.ref(inner_src, fk.column, qualify=True)} = {q.ref(outer_src, fk.ref_column, qualify=True)}"
    conds = [link]
    if not negate or q.rng.random() < 0.4:
        row = q.witness(inner)
        if row is not None:
            conds += q.conditions(inner, row, count=1, qualify=True, exclude=[(inner_src.key, fk.column)])
    word = q.kw("NOT EXISTS" if negate else "EXISTS")
    shown = q.display(Source(parent, None), qualify=False)
    return (f"{q.select(shown)} {q.kw('FROM')} {q.table_sql(outer_src)} {q.kw('WHERE')} {word} "
            f"({q.kw('SELECT')} 1 {inner.sql}{q.where(conds)})")


@SHAPES.over_child_edge("nested", "nested.exists", 2)
def nested_exists(q: QueryWriter, fk: ForeignKey) -> str | None:
    return _exists(q, fk, negate=False)


@SHAPES.over_child_edge("nested", "nested.not_exists", 1.5)
def nested_not_exists(q: QueryWriter, fk: ForeignKey) -> str | None:
    return _exists(q, fk, negate=True)


@SHAPES.add("nested", "nested.derived", 1.5)
def nested_derived(q: QueryWriter) -> str | None:
    """An aggregate over per-group aggregates: ``SELECT AVG(n) FROM (SELECT COUNT(*) AS n ... GROUP BY fk)``."""
    edges = q.child_edges()
    groupable = [(q.sampler.schema.require_table(fk.table), fk.column) for fk in edges]
    for table in q.sampler.nonempty_tables():
        groupable += [(table, c.name) for c in q.sampler.infos(table, "category")]
    if not groupable:
        return None
    table, group_col = q.rng.choice(groupable)
    numbers = q.sampler.infos(table, "number")
    if numbers and q.rng.random() < 0.4:
        measure = q.rng.choice(numbers)
        inner_func, inner_alias = q.rng.choice(("SUM", "AVG")), f"total_{measure.name}"
        inner_expr = f"{q.kw(inner_func)}({sql_ident(measure.name)})"
        if inner_func == "AVG":
            inner_alias = f"avg_{measure.name}"
    else:
        inner_expr = q.kw("COUNT(*)")
        inner_alias = q.rng.choice(("n", "cnt", f"{name_words(table.name)[-1]}_count"))
    outer_func = q.rng.choice(("AVG", "MAX", "MIN"))
    keep_group = q.rng.random() < 0.3
    items = ([sql_ident(group_col)] if keep_group else []) + [f"{inner_expr} {q.kw('AS')} {inner_alias}"]
    q.tables_used.append(table.name)
    inner = (f"{q.select(items)} {q.kw('FROM')} {sql_ident(table.name)} {q.kw('GROUP BY')} "
             f"{sql_ident(group_col)}")
    if q.rng.random() < 0.25:
        having = q.having(inner_expr, q.grouped_values(f"{inner}".replace(
            f" {q.kw('AS')} {inner_alias}", "")))
        if having:
            return f"{q.kw('SELECT')} {q.kw('COUNT(*)')} {q.kw('FROM')} ({inner} {q.kw('HAVING')} " \
                   f"{having})"
    return f"{q.kw('SELECT')} {q.kw(outer_func)}({inner_alias}) {q.kw('FROM')} ({inner})"


@SHAPES.over_child_edge("nested", "nested.parent_in", 1.5)
def nested_parent_in(q: QueryWriter, fk: ForeignKey) -> str | None:
    """Children whose foreign key is IN the keys of parents meeting a condition."""
    schema = q.sampler.schema
    outer = q.single(schema.require_table(fk.table))
    inner = q.single(schema.require_table(fk.ref_table))
    if outer is None or inner is None:
        return None
    row = q.witness(inner)
    if row is None:
        return None
    inner_src, outer_src = inner.sources[0], outer.sources[0]
    conds = q.conditions(inner, row, count=1, qualify=inner_src.alias is not None)
    if not conds:
        return None
    subquery = f"{q.select([q.ref(inner_src, fk.ref_column, qualify=inner_src.alias is not None)])} " \
               f"{inner.sql}{q.where(conds)}"
    shown = q.display(outer_src, qualify=outer_src.alias is not None, exclude=[fk.column])
    fk_ref = q.ref(outer_src, fk.column, qualify=outer_src.alias is not None)
    return f"{q.select(shown)} {outer.sql} {q.kw('WHERE')} {fk_ref} {q.kw('IN')} ({subquery})"


@SHAPES.over_table("nested", "nested.compare_row", 0.8, need=("number",))
def nested_compare_row(q: QueryWriter, at: Scope) -> str | None:
    """Compare against one named row's value: ``budget > (SELECT budget FROM d WHERE name = 'X')``."""
    from_, src = at.from_, at.src
    label = q.sampler.label(src.table)
    if label is None or label.role != "label":
        return None
    rows = q.sampler.rows(from_)
    counts: dict[SQLValue, int] = {}
    for r in rows:
        counts[r[(src.key, label.name)]] = counts.get(r[(src.key, label.name)], 0) + 1
    unique = [v for v, n in counts.items() if n == 1 and v is not None]
    if not unique:
        return None
    name = q.rng.choice(unique)
    measure = q.rng.choice(q.sampler.infos(src.table, "number"))
    qualify = src.alias is not None
    op = q.rng.choice((">", "<"))
    subquery = (f"{q.kw('SELECT')} {sql_ident(measure.name)} {q.kw('FROM')} {sql_ident(src.table.name)} "
                f"{q.kw('WHERE')} {sql_ident(label.name)} = {sql_literal(name)}")
    shown = q.display(src, qualify=qualify, extra=0)
    return f"{q.select(shown)} {from_.sql} {q.kw('WHERE')} " \
           f"{q.ref(src, measure.name, qualify=qualify)} {op} ({subquery})"


def set_word(q: QueryWriter) -> str:
    return q.kw(q.rng.choices(("UNION", "INTERSECT", "EXCEPT", "UNION ALL"), (4, 3, 3, 0.5))[0])


def _branch(q: QueryWriter, table: Table, column: str, *, conds_from: bool = True, force: bool = False) -> str | None:
    from_ = q.single(table)
    if from_ is None:
        return None
    src = from_.sources[0]
    qualify = src.alias is not None
    conds: list[str] = []
    if force or (conds_from and q.rng.random() < 0.4):
        row = q.witness(from_)
        if row is not None:
            conds = q.conditions(from_, row, count=1, qualify=qualify, exclude=[(src.key, column)])
    return f"{q.select([q.ref(src, column, qualify=qualify)])} {from_.sql}{q.where(conds)}"


@SHAPES.add("set_operation", "set.same_column", 4)
def set_same_column(q: QueryWriter) -> str | None:
    """One column of one table (or of a join) under two different conditions."""
    use_join = q.rng.random() < 0.3
    from_ = q.joined(2) if use_join else q.single()
    if from_ is None:
        return None
    src = from_.sources[0]
    qualify = use_join or src.alias is not None
    outputs = q.sampler.infos(src.table, "category", "label", "fk", "key", "year")
    conditions = [(s, c) for s in from_.sources for c in q.sampler.infos(s.table, "category", "flag", "year", "number")
                  if len(c.values) > 1]
    if not outputs or not conditions:
        return None
    output = q.rng.choice(outputs)
    cond_src, cond = q.rng.choice([(s, c) for s, c in conditions if c.name != output.name or s is not src]
                                  or conditions)
    ref = q.ref(cond_src, cond.name, qualify=qualify)
    if cond.numeric and q.rng.random() < 0.5:
        middle = cond.values[len(cond.values) // 2]
        if not isinstance(middle, int | float):
            return None
        threshold = sql_literal(middle if cond.role == "year" else nice_number(middle, "below", q.rng))
        left, right = f"{ref} < {threshold}", f"{ref} > {threshold}"
    else:
        first, second = q.rng.sample(list(cond.values), 2)
        left, right = f"{ref} = {sql_literal(first)}", f"{ref} = {sql_literal(second)}"
    out = q.ref(src, output.name, qualify=qualify)
    head = f"{q.select([out])} {from_.sql} {q.kw('WHERE')}"
    return f"{head} {left} {set_word(q)} {head} {right}"


@SHAPES.over_child_edge("set_operation", "set.keys", 3)
def set_keys(q: QueryWriter, fk: ForeignKey) -> str | None:
    """Key-compatible columns: a parent's key and a child's foreign key, or two children's foreign keys."""
    schema = q.sampler.schema
    siblings = [g for g in q.child_edges() if g is not fk and g.ref_table.lower() == fk.ref_table.lower()
                and g.ref_column.lower() == fk.ref_column.lower()]
    child = schema.require_table(fk.table)
    if siblings and q.rng.random() < 0.5:
        g = q.rng.choice(siblings)
        left = _branch(q, child, fk.column)
        right = _branch(q, schema.require_table(g.table), g.column)
    else:
        left = _branch(q, schema.require_table(fk.ref_table), fk.ref_column)
        right = _branch(q, child, fk.column)
        if q.rng.random() < 0.5:
            left, right = right, left
    if left is None or right is None:
        return None
    return f"{left} {set_word(q)} {right}"


@SHAPES.add("set_operation", "set.same_name", 2)
def set_same_name(q: QueryWriter) -> str | None:
    """Same-named text columns of two tables (``SELECT city FROM a UNION SELECT city FROM b``)."""
    pairs: list[tuple[Table, str, Table, str]] = []
    tables = q.sampler.nonempty_tables()
    for i, a in enumerate(tables):
        for b in tables[i + 1:]:
            people = _is_person_table(a) and _is_person_table(b)
            for info_a in q.sampler.infos(a, "category", "label"):
                for info_b in q.sampler.infos(b, "category", "label"):
                    if name_words(info_a.name)[-1] != name_words(info_b.name)[-1]:
                        continue
                    # Union-compatible in meaning, not just in type: person names of two person tables, or
                    # columns whose values overlap (cities, countries).
                    if people or set(info_a.values) & set(info_b.values):
                        pairs.append((a, info_a.name, b, info_b.name))
    if not pairs:
        return None
    first, first_column, second, second_column = q.rng.choice(pairs)
    if q.rng.random() < 0.5:
        first, first_column, second, second_column = second, second_column, first, first_column
    left, right = _branch(q, first, first_column), _branch(q, second, second_column)
    if left is None or right is None:
        return None
    return f"{left} {set_word(q)} {right}"


@SHAPES.over_child_edge("set_operation", "set.except_joined", 1.5)
def set_except_joined(q: QueryWriter, fk: ForeignKey) -> str | None:
    """Values of a parent column minus those of parents that have (matching) children."""
    parent = q.sampler.schema.require_table(fk.ref_table)
    outputs = q.sampler.infos(parent, "category", "label")
    if not outputs:
        return None
    output = q.rng.choice(outputs)
    left = _branch(q, parent, output.name, conds_from=False)
    child_src = q.source(q.sampler.schema.require_table(fk.table), aliased=True)
    parent_src = q.source(parent, aliased=True)
    from_ = From([child_src, parent_src], [fk],
                  f"{q.kw('FROM')} {q.table_sql(child_src)} {q.join_word()} {q.table_sql(parent_src)} "
                  f"{q.kw('ON')} {q.ref(child_src, fk.column, qualify=True)} = "
                  f"{q.ref(parent_src, fk.ref_column, qualify=True)}")
    row = q.witness(from_)
    conds = q.conditions(From([child_src], [], ""), row, count=1, qualify=True) if row and \
        q.rng.random() < 0.6 else []
    right = f"{q.select([q.ref(parent_src, output.name, qualify=True)])} {from_.sql}{q.where(conds)}"
    word = q.kw("EXCEPT") if q.rng.random() < 0.7 else q.kw("INTERSECT")
    return f"{left} {word} {right}" if left else None


@SHAPES.add("set_operation", "set.two_references", 1)
def set_two_references(q: QueryWriter) -> str | None:
    """Two foreign keys of one table to the same parent (origin/destination, home/away)."""
    by_target: dict[tuple[str, str, str], list[ForeignKey]] = {}
    for fk in q.child_edges():
        by_target.setdefault((fk.table.lower(), fk.ref_table.lower(), fk.ref_column.lower()), []).append(fk)
    options = [fks for fks in by_target.values() if len(fks) > 1]
    if not options:
        return None
    first, second = q.rng.sample(q.rng.choice(options), 2)
    table = q.sampler.schema.require_table(first.table)
    left, right = _branch(q, table, first.column), _branch(q, table, second.column)
    if left is None or right is None:
        return None
    return f"{left} {set_word(q)} {right}"

