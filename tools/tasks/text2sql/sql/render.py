"""Questions from SQL: a grammar-based writer over the sqlglot syntax tree, and the faithfulness check.

:func:`render_question` writes an English question that names what a query selects (columns, aggregates), the
tables it reads, every literal value verbatim, its conditions (including subqueries and EXISTS), grouping and
HAVING, ordering and LIMIT, and set operations. Phrasings are picked by the caller's ``random.Random`` ("List...",
"Which...", "Show...", "How many...", "What is the average...") so rendered data stays varied. It is the fallback
writer of the text-to-SQL strategy: a small model writes an unfaithful question most of the time.

:func:`faithfulness` judges any question (from a model or from the renderer) against its SQL:
- every literal a question must name appears in it (strings case-insensitively, numbers by value; ``= 0``/``= 1``
  on a column and ``LIMIT 1`` may stay implicit);
- each top-level SELECT names one of its tables, and every column an aggregate measures (singular or plural,
  underscores as spaces, any word of a column name, or a word sharing its stem);
- the question does not contradict the query's structure: aggregates (SUM asked as "maximum"), GROUP BY columns,
  ORDER BY direction with LIMIT ("earliest" for DESC), comparison direction ("under" for ``>``), negation (NOT IN,
  NOT EXISTS, ``!=``, EXCEPT), INTERSECT/UNION, LIKE, counting when the query counts nothing, or a table the query
  does not read (one foreign key away is allowed);
- no meta-text ("The answer is", "SQL", "query", "SELECT", "Here is"); one or two sentences of 3-80 words starting
  with a capital letter and ending in ``?`` or ``.``.
The word lists are lenient: measured on the demo task, 323 of its 372 hand-written questions pass (most misses
name a measure by a synonym, "revenue" for ``SUM(price)``); every question the renderer writes for sampled queries
passes.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from tools.tasks.text2sql.sql.database import BOOLEAN_WORDS, name_words, singular
from tools.tasks.text2sql.sql.literals import like_text, literal_value, parse_sql, query_literals
from tools.tasks.text2sql.sql.schema import Schema

_IRREGULAR = {"person": "people", "child": "children", "staff": "staff", "man": "men", "woman": "women",
              "data": "data", "series": "series", "species": "species", "info": "info"}
_IRREGULAR_SINGULAR = {v: k for k, v in _IRREGULAR.items()}
_FUNC_WORDS = {"AVG": "average", "SUM": "total", "MAX": "highest", "MIN": "lowest", "COUNT": "number of"}
_FUNC_SYNONYMS = {"AVG": ("average", "mean"), "SUM": ("total", "combined"), "MAX": ("highest", "maximum"),
                  "MIN": ("lowest", "minimum")}
_DATE_WORDS = {"date", "day", "time", "departure", "arrival", "created", "updated", "dob", "birthday"}
_STOP_COLUMN_WORDS = {"id", "no", "num", "the", "of", "and", "is", "at", "on", "in"}
_META = re.compile(
    r"\b(the answer|answer is|sql|query|queries|select\b|here is|here's|schema|sqlite|as an ai)\b|```",
    re.IGNORECASE,
)
_MAX_QUESTION_CHARS = 400


class RenderError(ValueError):
    """The SQL does not parse, so no question can be written for it."""


def _plural(noun: str) -> str:
    words = noun.split()
    last = words[-1]
    if last in _IRREGULAR:
        plural = _IRREGULAR[last]
    elif last.endswith("s") and singular(last) != last:
        plural = last
    elif last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        plural = last[:-1] + "ies"
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        plural = last + "es"
    else:
        plural = last + "s"
    return " ".join([*words[:-1], plural])


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def _lemma(word: str) -> str:
    lowered = word.lower()
    return _IRREGULAR_SINGULAR.get(lowered) or singular(lowered)


def humanize(name: str) -> str:
    """``unit_price`` -> ``unit price``; ``orderDate`` -> ``order date``."""
    return " ".join(name_words(name))


def table_noun(name: str, *, plural: bool = True) -> str:
    words = name_words(name)
    if not words:
        return name
    singular = " ".join([*words[:-1], _lemma(words[-1])])
    return _plural(singular) if plural else singular


def _join_words(items: Sequence[str], conjunction: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def _literal_text(node: exp.Expr) -> str:
    value = literal_value(node)
    if isinstance(node, exp.Neg):
        return "-" + str(node.this.this)
    return str(node.this) if isinstance(node, exp.Literal) else str(value)


@dataclass
class _Scope:
    """Tables a SELECT reads: alias -> table name, its main table, and derived tables by alias."""

    aliases: dict[str, str]
    main: str | None
    derived: dict[str, exp.Select] = field(default_factory=dict)
    parent: _Scope | None = None

    def table_of(self, column: exp.Column, schema: Schema) -> str | None:
        qualifier = column.table.lower()
        scope: _Scope | None = self
        while scope is not None:
            if qualifier:
                if qualifier in scope.aliases:
                    return scope.aliases[qualifier]
            else:
                for table in scope.aliases.values():
                    found = schema.table(table)
                    if found is not None and found.column(column.name) is not None:
                        return table
            scope = scope.parent
        return None


class _Renderer:
    def __init__(self, schema: Schema, rng: random.Random):
        self.schema = schema
        self.rng = rng

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    # ----- scopes and names -------------------------------------------------------------------------------------
    def scope(self, select: exp.Select, parent: _Scope | None = None) -> _Scope:
        aliases: dict[str, str] = {}
        derived: dict[str, exp.Select] = {}
        main: str | None = None
        sources: list[exp.Expr] = []
        from_ = select.args.get("from_")
        if from_ is not None:
            sources.append(from_.this)
        sources += [j.this for j in select.args.get("joins") or []]
        for source in sources:
            if isinstance(source, exp.Table):
                aliases[source.alias_or_name.lower()] = source.name
                main = main or source.name
            elif isinstance(source, exp.Subquery) and isinstance(source.this, exp.Select):
                derived[source.alias_or_name.lower()] = source.this
        return _Scope(aliases, main, derived, parent)

    def column_phrase(self, column: exp.Column, scope: _Scope) -> str:
        words = humanize(column.name)
        table = scope.table_of(column, self.schema)
        if table is None or scope.main is None or table.lower() == (scope.main or "").lower():
            return words
        owner = table_noun(table, plural=False)
        if {_lemma(w) for w in owner.split()} & {_lemma(w) for w in words.split()}:
            return words
        return f"{owner} {words}"

    def is_flag(self, column: exp.Column, scope: _Scope) -> bool:
        """A yes/no column by its declared type or its name (``returned``, ``is_active``, ``vegetarian``)."""
        table = scope.table_of(column, self.schema)
        found = self.schema.table(table) if table else None
        declared = found.column(column.name) if found else None
        if declared is not None and declared.kind == "boolean":
            return True
        name = column.name.lower()
        last = name_words(name)[-1] if name_words(name) else name
        return name.startswith(("is_", "has_", "can_")) or name in BOOLEAN_WORDS or last in BOOLEAN_WORDS

    def is_text(self, column: exp.Column, scope: _Scope) -> bool:
        table = scope.table_of(column, self.schema)
        found = self.schema.table(table) if table else None
        declared = found.column(column.name) if found else None
        return declared is not None and declared.kind == "text" and not self.is_date(column)

    def is_date(self, column: exp.Column) -> bool:
        return bool(set(name_words(column.name)) & _DATE_WORDS) or column.name.lower().endswith(("_at", "_on"))

    def expression_phrase(self, node: exp.Expr, scope: _Scope, subject: str) -> str:
        """A noun phrase for a projected or ordered expression (column, aggregate, star, literal)."""
        if isinstance(node, exp.Alias):
            return self.expression_phrase(node.this, scope, subject)
        if isinstance(node, exp.Column):
            return self.column_phrase(node, scope)
        if isinstance(node, exp.Star):
            return "all details"
        if isinstance(node, exp.AggFunc):
            func = node.key.upper()
            arg = node.this
            if func == "COUNT":
                if isinstance(arg, exp.Star) or arg is None:
                    return f"number of {subject}"
                if isinstance(arg, exp.Distinct):
                    inner = arg.expressions[0] if arg.expressions else None
                    noun = self.expression_phrase(inner, scope, subject) if inner is not None else "values"
                    return f"number of different {_plural(noun)}"
                return f"number of {subject} with a {self.expression_phrase(arg, scope, subject)}"
            word = self.pick(*_FUNC_SYNONYMS.get(func, (func.lower(),)))
            if isinstance(arg, exp.Distinct) and arg.expressions:
                return f"{word} of the distinct {self.expression_phrase(arg.expressions[0], scope, subject)}"
            return f"{word} {self.expression_phrase(arg, scope, subject)}"
        if isinstance(node, exp.Literal | exp.Neg):
            return _literal_text(node)
        if isinstance(node, exp.Paren):
            return self.expression_phrase(node.this, scope, subject)
        columns = list(node.find_all(exp.Column))
        if columns:
            return "value computed from the " + _join_words([self.column_phrase(c, scope) for c in columns])
        return node.sql(dialect="sqlite")

    def subject(self, select: exp.Select, scope: _Scope, mentioned: str = "") -> str:
        """The plural noun of the main table, plus any joined table the rest of the question will not name."""
        if scope.main is None:
            if scope.derived:
                return "groups"
            return "rows"
        main = table_noun(scope.main)
        others = []
        text = f" {mentioned.lower()} "
        for table in dict.fromkeys(scope.aliases.values()):
            if table.lower() == scope.main.lower():
                continue
            noun = table_noun(table, plural=False)
            if not re.search(rf"\b{re.escape(noun.split()[-1])}", text):
                others.append(table_noun(table))
        if others:
            return f"{main} {self.pick('joined with', 'together with', 'linked to')} their {_join_words(others)}"
        return main

    # ----- conditions ---------------------------------------------------------------------------------------------
    def conditions(self, node: exp.Expr | None, scope: _Scope, *, skip_links: bool = False) -> str:
        """A relative clause for a WHERE/HAVING tree (``whose price is above 100 and ...``), or ''."""
        if node is None:
            return ""
        return self.cond(node, scope, skip_links=skip_links)

    def cond(self, node: exp.Expr, scope: _Scope, *, skip_links: bool = False) -> str:
        if isinstance(node, exp.Paren):
            inner = self.cond(node.this, scope, skip_links=skip_links)
            return f"either {inner}," if isinstance(node.this, exp.Or) and inner else inner
        if isinstance(node, exp.And):
            parts = [self.cond(p, scope, skip_links=skip_links) for p in (node.this, node.expression)]
            return " and ".join(p for p in parts if p)
        if isinstance(node, exp.Or):
            parts = [self.cond(p, scope, skip_links=skip_links) for p in (node.this, node.expression)]
            return " or ".join(p for p in parts if p)
        if isinstance(node, exp.Not):
            inner = node.this
            if isinstance(inner, exp.Exists):
                return self.exists(inner, scope, negate=True)
            if isinstance(inner, exp.In):
                return self.in_condition(inner, scope, negate=True)
            if isinstance(inner, exp.Is):
                return self.is_condition(inner, scope, negate=True)
            if isinstance(inner, exp.Like):
                return self.like(inner, scope, negate=True)
            return f"that do not satisfy this: {self.cond(inner, scope)}"
        if isinstance(node, exp.Exists):
            return self.exists(node, scope, negate=False)
        if isinstance(node, exp.In):
            return self.in_condition(node, scope, negate=False)
        if isinstance(node, exp.Is):
            return self.is_condition(node, scope, negate=False)
        if isinstance(node, exp.Like | exp.ILike):
            return self.like(node, scope, negate=False)
        if isinstance(node, exp.Between):
            subject = self.operand_noun(node.this, scope)
            low, high = self.operand(node.args["low"], scope), self.operand(node.args["high"], scope)
            return f"whose {subject} is between {low} and {high}"
        if isinstance(node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
            return self.comparison(node, scope, skip_links=skip_links)
        if isinstance(node, exp.Column):
            noun = self.column_phrase(node, scope)
            return f"that have {_article(noun)} {noun}"
        return f"matching {node.sql(dialect='sqlite')}"

    def operand(self, node: exp.Expr, scope: _Scope) -> str:
        if isinstance(node, exp.Literal | exp.Neg):
            return _literal_text(node)
        if isinstance(node, exp.Subquery):
            return self.scalar_subquery(node.this, scope)
        if isinstance(node, exp.Column):
            return f"the {self.column_phrase(node, scope)}"
        if isinstance(node, exp.AggFunc):
            return f"the {self.expression_phrase(node, scope, 'rows')}"
        return self.expression_phrase(node, scope, "rows")

    def comparison(self, node: exp.Expr, scope: _Scope, *, skip_links: bool) -> str:
        left, right = node.this, node.expression
        if isinstance(left, exp.Literal | exp.Neg) and isinstance(right, exp.Column):
            flipped = {"gt": exp.LT, "gte": exp.LTE, "lt": exp.GT, "lte": exp.GTE}.get(node.key)
            if flipped is not None:
                return self.comparison(flipped(this=right.copy(), expression=left.copy()), scope, skip_links=skip_links)
            left, right = right, left
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            left_table, right_table = scope.table_of(left, self.schema), scope.table_of(right, self.schema)
            if node.key == "eq" and (skip_links or left_table != right_table):
                if skip_links:
                    return ""
                return f"whose {self.column_phrase(left, scope)} matches the {self.column_phrase(right, scope)}"
        if isinstance(right, exp.Subquery) and node.key == "eq" and isinstance(right.this, exp.Select):
            inner = right.this
            projected = inner.expressions[0] if inner.expressions else None
            if isinstance(projected, exp.Max | exp.Min) and not inner.args.get("where"):
                word = "highest" if isinstance(projected, exp.Max) else "lowest"
                if isinstance(left, exp.Column) and self.is_date(left):
                    word = "latest" if word == "highest" else "earliest"
                return self.pick(f"with the {word} {self.operand_noun(left, scope)}",
                                 f"that have the {word} {self.operand_noun(left, scope)}")
        subject = self.operand_noun(left, scope)
        value = self.operand(right, scope)
        date = isinstance(left, exp.Column) and self.is_date(left)
        if node.key == "eq":
            if isinstance(right, exp.Literal) and not right.is_string and right.this in ("0", "1") \
                    and isinstance(left, exp.Column) and self.is_flag(left, scope):
                return f"{'not ' if right.this == '0' else ''}marked as {subject}"
            return self.pick(f"whose {subject} is {value}", f"with {subject} {value}",
                             f"where the {subject} is {value}")
        if node.key == "neq":
            return self.pick(f"whose {subject} is not {value}", f"with a {subject} other than {value}")
        words = {
            "gt": ("after",) if date else ("greater than", "above", "more than", "over"),
            "gte": ("on or after",) if date else ("at least", "greater than or equal to"),
            "lt": ("before",) if date else ("less than", "below", "under"),
            "lte": ("on or before",) if date else ("at most", "less than or equal to"),
        }[node.key]
        return f"whose {subject} is {self.pick(*words)} {value}"

    def operand_noun(self, node: exp.Expr, scope: _Scope) -> str:
        if isinstance(node, exp.Column):
            return self.column_phrase(node, scope)
        return self.expression_phrase(node, scope, "rows")

    def like(self, node: exp.Expr, scope: _Scope, *, negate: bool) -> str:
        subject = self.operand_noun(node.this, scope)
        pattern = node.expression
        if not isinstance(pattern, exp.Literal):
            return f"whose {subject} {'does not match' if negate else 'matches'} the {self.operand(pattern, scope)}"
        raw = str(pattern.this)
        text = like_text(raw)
        verb_not = "does not " if negate else ""
        if isinstance(node.this, exp.Column) and self.is_date(node.this) and re.fullmatch(r"\d{4}-?%", raw):
            return f"whose {subject} is {'not ' if negate else ''}in {text.rstrip('-')}"
        if raw.startswith("%") and raw.endswith("%"):
            return f"whose {subject} {verb_not}{'contain' if negate else 'contains'} {text}"
        if raw.endswith("%"):
            return f"whose {subject} {verb_not}{'start' if negate else 'starts'} with {text}"
        if raw.startswith("%"):
            return f"whose {subject} {verb_not}{'end' if negate else 'ends'} with {text}"
        return f"whose {subject} is {'not ' if negate else ''}like {text}"

    def is_condition(self, node: exp.Is, scope: _Scope, *, negate: bool) -> str:
        subject = self.operand_noun(node.this, scope)
        return f"that have {_article(subject) if negate else 'no'} {subject}"

    def in_condition(self, node: exp.In, scope: _Scope, *, negate: bool) -> str:
        subject = self.operand_noun(node.this, scope)
        query = node.args.get("query")
        if query is not None:
            inner = query.this if isinstance(query, exp.Subquery) else query
            if isinstance(inner, exp.Select):
                return self.in_subquery(node.this, inner, scope, negate=negate)
            return f"whose {subject} is {'not ' if negate else ''}among {self.noun_phrase(inner, scope)}"
        values = [self.operand(v, scope) for v in node.expressions]
        if negate:
            return f"whose {subject} is not {_join_words(values, 'or')}"
        return self.pick(f"whose {subject} is {_join_words(values, 'or')}",
                         f"whose {subject} is one of {_join_words(values)}")

    def in_subquery(self, outer: exp.Expr, inner: exp.Select, scope: _Scope, *, negate: bool) -> str:
        """``key IN (SELECT fk FROM child ...)`` reads as "that have <children> ..."; ``fk IN (SELECT key FROM
        parent ...)`` as "whose <parent> ..."; anything else as "whose X is among the Y of ..."."""
        inner_scope = self.scope(inner, scope)
        selected = inner.expressions[0] if inner.expressions else None
        where = inner.args.get("where")
        clause = self.conditions(where.this if where else None, inner_scope)
        if isinstance(outer, exp.Column) and isinstance(selected, exp.Column):
            outer_table = scope.table_of(outer, self.schema)
            inner_table = inner_scope.table_of(selected, self.schema)
            for fk in self.schema.foreign_keys:
                if outer_table is None or inner_table is None:
                    break
                child_to_parent = (fk.table.lower() == inner_table.lower()
                                   and fk.column.lower() == selected.name.lower()
                                   and fk.ref_table.lower() == outer_table.lower()
                                   and fk.ref_column.lower() == outer.name.lower())
                if child_to_parent:
                    children = self.subject(inner, inner_scope, clause)
                    if negate:
                        tail = f" {clause}" if clause else ""
                        return f"that have no {children}{tail}"
                    noun = table_noun(inner_table, plural=False)
                    if children != table_noun(inner_table):
                        noun = children
                    return f"that have at least one {noun}{' ' + clause if clause else ''}"
                parent_to_child = (fk.table.lower() == outer_table.lower() and fk.column.lower() == outer.name.lower()
                                   and fk.ref_table.lower() == inner_table.lower())
                if parent_to_child and clause:
                    parent = table_noun(inner_table, plural=False)
                    return (f"whose {self.column_phrase(outer, scope)} {'does not belong' if negate else 'belongs'} "
                            f"to a {parent} {clause}")
        subject = self.operand_noun(outer, scope)
        return f"whose {subject} is {'not ' if negate else ''}among {self.noun_phrase(inner, scope)}"

    def exists(self, node: exp.Exists, scope: _Scope, *, negate: bool) -> str:
        inner = node.this
        if not isinstance(inner, exp.Select):
            return f"for which {'no' if negate else 'some'} matching row exists"
        inner_scope = self.scope(inner, scope)
        where = inner.args.get("where")
        clause = self.conditions(where.this if where else None, inner_scope, skip_links=True)
        children = self.subject(inner, inner_scope, clause)
        if negate:
            return f"that have no {children}{' ' + clause if clause else ''}"
        singular = table_noun(inner_scope.main, plural=False) if inner_scope.main else "matching row"
        if children != (table_noun(inner_scope.main) if inner_scope.main else ""):
            singular = children
        return f"that have at least one {singular}{' ' + clause if clause else ''}"

    def scalar_subquery(self, inner: exp.Expr, scope: _Scope) -> str:
        if not isinstance(inner, exp.Select):
            return self.noun_phrase(inner, scope)
        inner_scope = self.scope(inner, scope)
        projected = inner.expressions[0] if inner.expressions else None
        where = inner.args.get("where")
        subject = self.subject(inner, inner_scope)
        if where is not None and self._correlated(where.this, inner_scope):
            clause = self.conditions(where.this, inner_scope, skip_links=True)
            link = next(self._links(where.this, inner_scope))
            same = self.column_phrase(link, inner_scope)
            tail = f" {clause}" if clause else ""
            phrase = self.expression_phrase(projected, inner_scope, subject) if projected is not None else "value"
            return f"the {phrase} among {subject} with the same {same}{tail}"
        clause = self.conditions(where.this if where else None, inner_scope)
        phrase = self.expression_phrase(projected, inner_scope, subject) if projected is not None else "value"
        return f"the {phrase} of {subject}{' ' + clause if clause else ''}"

    def _links(self, node: exp.Expr, scope: _Scope) -> Iterator[exp.Column]:
        """Columns of ``scope`` compared for equality with a column of an outer scope (correlation)."""
        for eq in node.find_all(exp.EQ):
            left, right = eq.this, eq.expression
            if isinstance(left, exp.Column) and isinstance(right, exp.Column):
                left_local = left.table.lower() in scope.aliases or not left.table
                right_local = right.table.lower() in scope.aliases or not right.table
                if left_local and not right_local:
                    yield left
                elif right_local and not left_local:
                    yield right

    def _correlated(self, node: exp.Expr, scope: _Scope) -> bool:
        return next(self._links(node, scope), None) is not None

    # ----- selects ----------------------------------------------------------------------------------------------
    def noun_phrase(self, node: exp.Expr, parent: _Scope | None = None) -> str:
        """``the name and city of customers whose country is Spain`` for a SELECT; set operations combine."""
        if isinstance(node, exp.Subquery):
            return self.noun_phrase(node.this, parent)
        if isinstance(node, exp.SetOperation):
            word = {"union": "together with", "intersect": "that also appear among", "except": "excluding"}[node.key]
            return f"{self.noun_phrase(node.this, parent)} {word} {self.noun_phrase(node.expression, parent)}"
        if not isinstance(node, exp.Select):
            return node.sql(dialect="sqlite")
        scope = self.scope(node, parent)
        where = node.args.get("where")
        clause = self.conditions(where.this if where else None, scope)
        items = [self.expression_phrase(e, scope, table_noun(scope.main) if scope.main else "rows")
                 for e in node.expressions]
        subject = self.subject(node, scope, " ".join(items) + " " + clause)
        distinct = "distinct " if node.args.get("distinct") else ""
        group = self.group_phrase(node, scope)
        return (f"the {distinct}{_join_words(items)} of {subject}{' ' + clause if clause else ''}"
                f"{' for each ' + group if group else ''}")

    def group_phrase(self, select: exp.Select, scope: _Scope) -> str:
        group = select.args.get("group")
        if group is None:
            return ""
        columns = [c for c in group.expressions if isinstance(c, exp.Column)]
        names: list[str] = []
        for column in columns:
            table = scope.table_of(column, self.schema)
            found = self.schema.table(table) if table else None
            others = [c for c in columns if c is not column]
            is_key = found is not None and column.name in found.primary_key
            if is_key and others and found is not None:
                continue
            joined = len(set(scope.aliases.values())) > 1
            label_of_other_table = (found is not None and scope.main is not None
                                    and (found.name.lower() != scope.main.lower() or joined)
                                    and set(name_words(column.name)) & {"name", "title"})
            if label_of_other_table and found is not None:
                names.append(table_noun(found.name, plural=False))
            else:
                names.append(self.column_phrase(column, scope))
        if not names:
            names = [self.expression_phrase(e, scope, "rows") for e in group.expressions]
        return _join_words(names)

    def order_phrase(self, select: exp.Select, scope: _Scope, subject: str) -> tuple[str, str]:
        """(``, sorted by price in descending order``, limit phrase)."""
        order = select.args.get("order")
        limit = select.args.get("limit")
        offset = select.args.get("offset")
        aliases = {e.alias.lower(): e.this for e in select.expressions if isinstance(e, exp.Alias)}
        keys: list[str] = []
        for ordered in (order.expressions if order else []):
            target = ordered.this
            if isinstance(target, exp.Column) and not target.table and target.name.lower() in aliases:
                target = aliases[target.name.lower()]
            if isinstance(target, exp.Literal) and not target.is_string and select.expressions:
                position = int(target.this) - 1
                if 0 <= position < len(select.expressions):
                    target = select.expressions[position]
            noun = self.expression_phrase(target, scope, subject)
            descending = bool(ordered.args.get("desc"))
            if isinstance(target, exp.Column) and self.is_text(target, scope):
                keys.append(f"{noun} in reverse alphabetical order" if descending else
                            self.pick(f"{noun}", f"{noun} alphabetically"))
            elif descending:
                keys.append(self.pick(f"{noun} in descending order", f"{noun} from highest to lowest",
                                      f"{noun}, largest first"))
            else:
                keys.append(self.pick(f"{noun}", f"{noun} in ascending order", f"{noun} from lowest to highest"))
        order_text = ""
        if keys:
            order_text = f", {self.pick('sorted by', 'ordered by')} " + " and then by ".join(keys)
        limit_text = ""
        if limit is not None:
            count = _literal_text(limit.expression) if isinstance(limit.expression, exp.Literal | exp.Neg) \
                else limit.expression.sql()
            limit_text = self.pick(f", showing only the first {count}", f", limited to {count} results",
                                   f" (only the first {count})")
        if offset is not None:
            skipped = _literal_text(offset.expression) if isinstance(offset.expression, exp.Literal) \
                else offset.expression.sql()
            limit_text += f", skipping the first {skipped}"
        return order_text, limit_text

    def select_question(self, select: exp.Select) -> str:
        scope = self.scope(select)
        if not scope.aliases and scope.derived:
            derived = self.derived_question(select, scope)
            if derived:
                return derived
        where = select.args.get("where")
        clause = self.conditions(where.this if where else None, scope)
        main_plural = table_noun(scope.main) if scope.main else "rows"
        items = select.expressions
        aggregates = [e for e in items if (e.this if isinstance(e, exp.Alias) else e).find(exp.AggFunc)]
        if select.args.get("group") is not None:
            return self.group_question(select, scope, clause)
        phrases = [self.expression_phrase(e, scope, main_plural) for e in items]
        subject = self.subject(select, scope, " ".join(phrases) + " " + clause)
        clause_text = f" {clause}" if clause else ""
        if aggregates and len(aggregates) == len(items):
            return self.aggregate_question(items, phrases, subject, clause_text, select, scope)
        return self.list_question(select, scope, phrases, subject, clause_text)

    def aggregate_question(self, items: list[exp.Expr], phrases: list[str], subject: str, clause_text: str,
                           select: exp.Select, scope: _Scope) -> str:
        order_text, limit_text = self.order_phrase(select, scope, subject)
        tail = f"{clause_text}{order_text}{limit_text}"
        only = items[0].this if isinstance(items[0], exp.Alias) else items[0]
        if len(items) == 1 and isinstance(only, exp.Count) and isinstance(only.this, exp.Star):
            return self.pick(f"How many {subject} are there{tail}?", f"Count the {subject}{tail}.",
                             f"What is the number of {subject}{tail}?")
        if len(items) == 1 and isinstance(only, exp.Count) and isinstance(only.this, exp.Distinct):
            return self.pick(f"How many different {phrases[0].removeprefix('number of different ')} do {subject} "
                             f"have{tail}?", f"What is the {phrases[0]} among {subject}{tail}?")
        joined = _join_words([f"the {p}" for p in phrases])
        if len(items) == 1:
            return self.pick(f"What is {joined} of {subject}{tail}?", f"Find {joined} of {subject}{tail}.",
                             f"Give {joined} across {subject}{tail}.")
        return self.pick(f"What are {joined} of {subject}{tail}?", f"Show {joined} of {subject}{tail}.")

    def list_question(self, select: exp.Select, scope: _Scope, phrases: list[str], subject: str,
                      clause_text: str) -> str:
        distinct = bool(select.args.get("distinct"))
        order = select.args.get("order")
        limit = select.args.get("limit")
        if (order is not None and limit is not None and len(order.expressions) == 1
                and isinstance(limit.expression, exp.Literal) and limit.expression.this == "1"
                and not select.args.get("offset")):
            ordered = order.expressions[0]
            target = ordered.this
            if isinstance(target, exp.Column):
                noun = self.column_phrase(target, scope)
                descending = bool(ordered.args.get("desc"))
                word = ("latest" if descending else "earliest") if self.is_date(target) else \
                    ("highest" if descending else "lowest")
                singular = table_noun(scope.main, plural=False) if scope.main else "row"
                if subject != (table_noun(scope.main) if scope.main else "rows"):
                    singular = subject
                cols = _join_words([f"the {p}" for p in phrases])
                return self.pick(f"What is {cols} of the {singular}{clause_text} with the {word} {noun}?",
                                 f"Show {cols} of the {singular}{clause_text} that has the {word} {noun}.")
        order_text, limit_text = self.order_phrase(select, scope, subject)
        tail = f"{clause_text}{order_text}{limit_text}"
        if phrases == ["all details"]:
            return self.pick(f"Show all details of {subject}{tail}.", f"List everything about {subject}{tail}.",
                             f"Give all information on {subject}{tail}.")
        cols = _join_words([f"the {p}" for p in phrases])
        if len(phrases) == 1 and not phrases[0].startswith(("number of", "value computed")):
            cols = f"the {_plural(phrases[0])}"
        if distinct:
            plural = _join_words([_plural(p) for p in phrases])
            return self.pick(f"List the distinct {plural} of {subject}{tail}.",
                             f"What different {plural} do {subject} have{tail}?",
                             f"Which {plural} occur among {subject}{tail}?")
        options = [f"List {cols} of {subject}{tail}.", f"Show {cols} of all {subject}{tail}.",
                   f"What are {cols} of {subject}{tail}?", f"Find {cols} of {subject}{tail}."]
        if clause_text and not order_text and not limit_text:
            if clause_text.startswith(" that "):
                options.append(f"Which {subject} {clause_text[6:]}? Give {cols}.")
            else:
                options.append(f"Which {subject} are there{clause_text}? Give {cols}.")
        return self.pick(*options)

    def group_question(self, select: exp.Select, scope: _Scope, clause: str) -> str:
        text = self._group_question(select, scope, clause)
        subject = table_noun(scope.main) if scope.main else ""
        if subject and not ({_lemma(w) for w in name_words(subject)} & _lemmas(text)):
            text = f"{text[:-1]} among {subject}{text[-1]}"
        return text

    def _group_question(self, select: exp.Select, scope: _Scope, clause: str) -> str:
        main_plural = table_noun(scope.main) if scope.main else "rows"
        group = self.group_phrase(select, scope)
        group_node = select.args["group"]
        grouped = {e.sql().lower() for e in group_node.expressions}
        measures = [e for e in select.expressions if (e.this if isinstance(e, exp.Alias) else e).sql().lower()
                    not in grouped and not (isinstance(e, exp.Column) and e.name.lower() in
                                            {c.name.lower() for c in group_node.find_all(exp.Column)})]
        counted = self.counted_table(select, scope)
        if counted is not None:
            main_plural = subject = table_noun(counted)
            phrases = [self.expression_phrase(e, scope, main_plural) for e in measures]
        else:
            phrases = [self.expression_phrase(e, scope, main_plural) for e in measures]
            subject = self.subject(select, scope, " ".join(phrases) + " " + clause + " " + group)
            if subject != main_plural:
                phrases = [p.replace(f"number of {main_plural}", f"number of {subject}") for p in phrases]
        considering = f"Considering only {subject} {clause}, " if clause else ""
        lead = (lambda text: considering + text[0].lower() + text[1:]) if considering else (lambda text: text)
        having = select.args.get("having")
        having_text = self.having_phrase(having.this, scope, subject) if having is not None else ""
        order = select.args.get("order")
        limit = select.args.get("limit")
        group_plural = _plural(group)
        if order is not None and len(order.expressions) == 1 and not having_text:
            ordered = order.expressions[0]
            target = ordered.this
            aliases = {e.alias.lower(): e.this for e in select.expressions if isinstance(e, exp.Alias)}
            if isinstance(target, exp.Column) and not target.table and target.name.lower() in aliases:
                target = aliases[target.name.lower()]
            if target.find(exp.AggFunc) is not None:
                descending = bool(ordered.args.get("desc"))
                measure = self.expression_phrase(target, scope, subject)
                if isinstance(target, exp.Count):
                    ranking = f"the {'most' if descending else 'fewest'} {subject}"
                else:
                    ranking = f"the {'highest' if descending else 'lowest'} {measure}"
                shown = [p for p in phrases if p != measure]
                extra = f" Also show {_join_words([f'the {p}' for p in phrases])}." if phrases else ""
                count = _literal_text(limit.expression) if limit is not None and isinstance(
                    limit.expression, exp.Literal) else None
                if count == "1":
                    return lead(self.pick(f"Which {group} has {ranking}?", f"What {group} has {ranking}?")
                                + (extra if shown else ""))
                if count is not None:
                    return lead(self.pick(f"Which {count} {group_plural} have {ranking}?",
                                          f"List the top {count} {group_plural} with {ranking}.")
                                + (extra if shown else ""))
        order_text, limit_text = self.order_phrase(select, scope, subject)
        tail = f"{order_text}{limit_text}"
        if having_text and not phrases:
            return lead(self.pick(f"Which {group_plural} have {having_text}{tail}?",
                                  f"List the {group_plural} with {having_text}{tail}."))
        if having_text:
            cols = _join_words([f"the {p}" for p in phrases])
            return lead(self.pick(f"For each {group} with {having_text}, what is {cols}{tail}?",
                                  f"Show {cols} for every {group} that has {having_text}{tail}."))
        if not phrases:
            return lead(self.pick(f"List each {group} of {subject}{tail}.", f"Which {group_plural} do {subject} "
                                  f"have{tail}?"))
        if len(phrases) == 1 and phrases[0] == f"number of {subject}":
            return lead(self.pick(f"How many {subject} are there for each {group}{tail}?",
                                  f"Count the {subject} per {group}{tail}.",
                                  f"For each {group}, how many {subject} are there{tail}?"))
        cols = _join_words([f"the {p}" for p in phrases])
        return lead(self.pick(f"What is {cols} for each {group}{tail}?", f"For each {group}, show {cols}{tail}.",
                              f"Show {cols} per {group}{tail}."))

    def counted_table(self, select: exp.Select, scope: _Scope) -> str | None:
        """In a grouped join, the table whose rows the groups gather (not the one owning the GROUP BY columns):
        ``... FROM courses JOIN enrollments GROUP BY c.id, c.title`` counts enrollments."""
        tables = list(dict.fromkeys(scope.aliases.values()))
        if len(tables) < 2:
            return None
        owners = {(scope.table_of(c, self.schema) or "").lower() for c in select.args["group"].find_all(exp.Column)}
        others = [t for t in tables if t.lower() not in owners]
        if not others or len(owners) != 1:
            return None
        return next((t for t in others if scope.main and t.lower() == scope.main.lower()), others[0])

    def having_phrase(self, node: exp.Expr, scope: _Scope, subject: str) -> str:
        if isinstance(node, exp.Paren):
            return self.having_phrase(node.this, scope, subject)
        if isinstance(node, exp.And | exp.Or):
            word = "and" if isinstance(node, exp.And) else "or"
            return (f"{self.having_phrase(node.this, scope, subject)} {word} "
                    f"{self.having_phrase(node.expression, scope, subject)}")
        if isinstance(node, exp.GT | exp.GTE | exp.LT | exp.LTE | exp.EQ | exp.NEQ):
            left, right = node.this, node.expression
            value = self.operand(right, scope)
            words = {"gt": "more than", "gte": "at least", "lt": "fewer than", "lte": "at most", "eq": "exactly",
                     "neq": "other than"}[node.key]
            if isinstance(left, exp.Count) and isinstance(left.this, exp.Star):
                return f"{words} {value} {subject}"
            measure = self.expression_phrase(left, scope, subject)
            words = {"gt": "above", "gte": "of at least", "lt": "below", "lte": "of at most", "eq": "of exactly",
                     "neq": "other than"}[node.key]
            return f"{_article(measure)} {measure} {words} {value}"
        return self.cond(node, scope)

    def derived_question(self, select: exp.Select, scope: _Scope) -> str | None:
        """``SELECT AVG(n) FROM (SELECT COUNT(*) AS n FROM t GROUP BY g)`` and ``SELECT COUNT(*) FROM (... HAVING)``."""
        inner = next(iter(scope.derived.values()))
        inner_scope = self.scope(inner, scope)
        inner_main = table_noun(inner_scope.main) if inner_scope.main else "rows"
        group = self.group_phrase(inner, inner_scope)
        if not group or len(select.expressions) != 1:
            return None
        outer = select.expressions[0]
        outer = outer.this if isinstance(outer, exp.Alias) else outer
        having = inner.args.get("having")
        where = inner.args.get("where")
        clause = self.conditions(where.this if where else None, inner_scope)
        clause_text = f" {clause}" if clause else ""
        if isinstance(outer, exp.Count) and isinstance(outer.this, exp.Star):
            if having is not None:
                condition = self.having_phrase(having.this, inner_scope, inner_main)
                return self.pick(f"How many {_plural(group)} have {condition}{clause_text}?",
                                 f"Count the {_plural(group)} with {condition}{clause_text}.")
            return f"How many different {_plural(group)} do {inner_main}{clause_text} have?"
        if not isinstance(outer, exp.AggFunc) or not isinstance(outer.this, exp.Column):
            return None
        name = outer.this.name.lower()
        measured = next((e.this for e in inner.expressions if isinstance(e, exp.Alias) and e.alias.lower() == name),
                        None)
        if measured is None:
            return None
        measure = self.expression_phrase(measured, inner_scope, inner_main)
        word = self.pick(*_FUNC_SYNONYMS.get(outer.key.upper(), (outer.key.lower(),)))
        if measure.split()[0] in {w for words in _FUNC_SYNONYMS.values() for w in words}:
            word = f"{word} of the"
        return self.pick(f"What is the {word} {measure}{clause_text} per {group}?",
                         f"Across all {_plural(group)}, what is the {word} {measure}{clause_text}?")

    def set_question(self, node: exp.SetOperation) -> str:
        left, right = node.this, node.expression
        if not (isinstance(left, exp.Select) and isinstance(right, exp.Select)):
            return f"List {self.noun_phrase(node)}."
        left_scope, right_scope = self.scope(left), self.scope(right)
        left_items = [self.expression_phrase(e, left_scope, "rows") for e in left.expressions]
        right_items = [self.expression_phrase(e, right_scope, "rows") for e in right.expressions]
        left_np, right_np = self.noun_phrase(left), self.noun_phrase(right)
        same = left_items == right_items
        if same:
            cols = _join_words(left_items)
            left_from = left_np.split(" of ", 1)[1]
            right_from = right_np.split(" of ", 1)[1]
        keep = ", keeping duplicates" if node.key == "union" and not node.args.get("distinct", True) else ""
        if node.key == "union":
            if same:
                return self.pick(f"List the {_plural(cols)} of {left_from} or of {right_from}{keep}.",
                                 f"Which {_plural(cols)} belong to {left_from} or to {right_from}{keep}?")
            return f"List {left_np} together with {right_np}{keep}."
        if node.key == "intersect":
            if same:
                return self.pick(f"Which {_plural(cols)} appear both among {left_from} and among {right_from}?",
                                 f"Find the {_plural(cols)} shared by {left_from} and {right_from}.")
            return f"Which values are both {left_np} and {right_np}?"
        if same:
            return self.pick(f"Which {_plural(cols)} of {left_from} are not among those of {right_from}?",
                             f"List the {_plural(cols)} of {left_from}, excluding those of {right_from}.")
        return f"List {left_np}, except for {right_np}."

    def question(self, tree: exp.Expr) -> str:
        if isinstance(tree, exp.SetOperation):
            text = self.set_question(tree)
        elif isinstance(tree, exp.Select):
            text = self.select_question(tree)
        elif isinstance(tree, exp.Subquery):
            return self.question(tree.this)
        else:
            text = f"List {self.noun_phrase(tree)}."
        text = re.sub(r"\s+", " ", text).strip()
        return text[0].upper() + text[1:]


def render_question(sql: str, schema: Schema, rng: random.Random) -> str:
    """An English question for ``sql`` over ``schema``, phrased by ``rng``; raises :class:`RenderError` when the
    SQL does not parse."""
    tree = parse_sql(sql)
    if tree is None:
        raise RenderError(f"cannot render a question: the SQL does not parse: {sql[:200]!r}")
    with_ = tree.args.get("with_")
    if with_ is not None:
        # CTEs read like derived tables: describe the query with the CTE names as table names.
        tree = tree.copy()
        tree.set("with_", None)
    return _Renderer(schema, rng).question(tree)


# ----- faithfulness -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaithCheck:
    """Whether a question is faithful to its SQL; ``missing`` lists the values/tables/columns it leaves out."""

    ok: bool
    reason: str
    missing: tuple[str, ...] = ()


_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")


def _question_numbers(text: str) -> set[float]:
    numbers: set[float] = set()
    for match in _NUMBER.findall(text):
        cleaned = match.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", match) else match
        try:
            numbers.add(float(cleaned))
        except ValueError:
            continue
    return numbers


def _lemmas(text: str) -> set[str]:
    return {_lemma(w) for w in re.findall(r"[A-Za-z]+", text)}


def _main_parts(tree: exp.Expr, schema: Schema) -> tuple[list[list[str]], list[exp.Column]]:
    """The tables of each top-level SELECT (FROM and JOIN; the question must name at least one of them) and the
    schema columns its aggregates measure (``AVG(salary)``: the question must say what it averages). Plain
    projected columns may stay implicit ("Which artists are from Sweden?" selects ``name, country``)."""
    selects: list[exp.Select] = []
    stack: list[exp.Expr] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.SetOperation):
            stack += [node.this, node.expression]
        elif isinstance(node, exp.Subquery):
            stack.append(node.this)
        elif isinstance(node, exp.Select):
            selects.append(node)
    tables: list[list[str]] = []
    columns: list[exp.Column] = []
    for select in selects:
        from_ = select.args.get("from_")
        if from_ is None or not isinstance(from_.this, exp.Table):
            continue
        main = schema.table(from_.this.name)
        if main is None:
            continue
        readable = [main] + [t for j in select.args.get("joins") or [] if isinstance(j.this, exp.Table)
                             if (t := schema.table(j.this.name)) is not None]
        tables.append([t.name for t in readable])
        for item in select.expressions:
            target = item.this if isinstance(item, exp.Alias) else item
            if isinstance(target, exp.AggFunc):
                columns += [c for c in target.find_all(exp.Column) if any(t.column(c.name) for t in readable)]
    return tables, columns


def _named(words: Sequence[str], lemmas: set[str], stems: Sequence[str]) -> bool:
    """A schema name is named when one of its words appears (any number), or a question word shares its stem
    (``ordered`` names ``order_items``)."""
    for word in words:
        lemma = _lemma(word)
        if lemma in lemmas:
            return True
        stem = lemma[: max(4, len(lemma) - 2)]
        if len(lemma) >= 4 and any(w.startswith(stem) for w in stems):
            return True
    return False


def faithfulness(question: str, sql: str, schema: Schema) -> FaithCheck:
    """Judge ``question`` against ``sql`` (see the module docstring for the rules)."""
    text = question.strip()
    if not text:
        return FaithCheck(False, "empty", ())
    if len(text) > _MAX_QUESTION_CHARS or "\n" in text:
        return FaithCheck(False, "not_a_question", ("one or two sentences under 400 characters",))
    meta = _META.search(text)
    if meta:
        return FaithCheck(False, "meta_text", (meta.group(0),))
    words = re.findall(r"[A-Za-z0-9']+", text)
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", text) if s]
    if len(words) < 3 or len(words) > 80 or len(sentences) > 2 or not re.match(r"^[A-Z0-9'\"]", text) \
            or text[-1] not in ".?":
        return FaithCheck(False, "not_a_question", ("a sentence of 3-80 words starting with a capital and ending "
                                                    "in '?' or '.'",))
    tree = parse_sql(sql)
    if tree is None:
        return FaithCheck(False, "sql_unparsable", ())
    lowered = text.lower()
    numbers = _question_numbers(text)
    missing: list[str] = []
    for use in query_literals(tree):
        if not use.must_mention or use.value is None:
            continue
        if isinstance(use.value, str):
            if use.text and use.text.lower() not in lowered:
                missing.append(use.text)
        elif float(use.value) not in numbers:
            missing.append(use.text)
    if missing:
        return FaithCheck(False, "missing_value", tuple(dict.fromkeys(missing)))
    lemmas = _lemmas(text)
    stems = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
    tables, columns = _main_parts(tree, schema)
    for group in tables:
        if not any(_named(name_words(table), lemmas, stems) for table in group):
            missing.append(" or ".join(group))
    for column in columns:
        significant = [w for w in name_words(column.name) if w not in _STOP_COLUMN_WORDS and len(w) > 1]
        if not significant or set(significant) <= {"name", "title"}:
            continue  # a name, title or id column is named by naming its table
        if not _named(significant, lemmas, stems):
            missing.append(column.name)
    if missing:
        return FaithCheck(False, "missing_schema_item", tuple(dict.fromkeys(missing)))
    vocabulary = {w.lower() for w in re.findall(r"[A-Za-z']+", text)}
    for reason, detail in _structure_issues(tree, schema, vocabulary, lowered):
        return FaithCheck(False, reason, (detail,))
    return FaithCheck(True, "ok", ())


# Words a question uses for each construct. Lenient on purpose: they catch a question about something else
# (SUM asked as "maximum", DESC asked as "earliest", "how many" for a plain list), not every awkward phrasing.
_AGG_WORDS = {
    "count": {"many", "number", "count", "counts", "total", "amount", "most", "fewest", "least", "more", "fewer"},
    "sum": {"total", "totals", "sum", "combined", "overall", "altogether", "all", "together", "whole", "entire",
            "cumulative", "aggregate", "many", "much"},
    "avg": {"average", "averages", "mean", "avg", "typical", "typically"},
}
_MAX_WORDS = {"maximum", "max", "highest", "largest", "biggest", "greatest", "most", "latest", "longest", "top",
              "best", "newest", "recent", "heaviest", "tallest", "priciest", "expensive", "descending", "reverse",
              "last", "peak", "oldest", "youngest"}
_MIN_WORDS = {"minimum", "min", "lowest", "smallest", "least", "fewest", "earliest", "shortest", "cheapest",
              "first", "ascending", "lightest", "bottom", "oldest", "youngest", "worst"}
_GT_WORDS = {"more", "greater", "above", "over", "after", "exceed", "exceeds", "exceeding", "least", "higher",
             "later", "since", "larger", "bigger", "beyond", "minimum", "min", "from", "newer", "older", "longer",
             "heavier", "pricier", "costlier", "upwards", "plus", "onwards", "or"}
_LT_WORDS = {"less", "fewer", "below", "under", "before", "most", "lower", "earlier", "until", "till", "up",
             "smaller", "cheaper", "shorter", "maximum", "max", "within", "younger", "lighter", "prior", "or"}
_NEGATION = {"not", "no", "never", "without", "none", "except", "excluding", "other", "than", "nobody", "nothing",
             "yet", "unsold", "unused", "but", "neither", "nor", "isn't", "aren't", "don't", "doesn't", "didn't",
             "haven't", "hasn't", "wasn't", "weren't", "lack", "lacking", "missing", "zero", "empty", "free"}
_LIKE_WORDS = {"contain", "contains", "containing", "with", "like", "start", "starts", "starting", "begin",
               "begins", "beginning", "end", "ends", "ending", "include", "includes", "including", "named",
               "called", "match", "matches", "matching", "in", "during", "has", "have", "word", "prefix", "pattern"}
_INTERSECT_WORDS = {"both", "also", "and", "common", "shared", "share", "intersect", "too", "well"}
_UNION_WORDS = {"or", "either", "and", "together", "combined", "plus", "well", "also", "union", "along", "any",
                "all", "both"}


def _top_selects(tree: exp.Expr) -> list[exp.Select]:
    out: list[exp.Select] = []
    stack: list[exp.Expr] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, exp.SetOperation):
            stack += [node.this, node.expression]
        elif isinstance(node, exp.Subquery):
            stack.append(node.this)
        elif isinstance(node, exp.Select):
            out.append(node)
    return out


def _structure_issues(tree: exp.Expr, schema: Schema, words: set[str], lowered: str) -> Iterator[tuple[str, str]]:
    """Constructs of the SQL the question contradicts or leaves out: aggregates, grouping, ordering direction,
    comparison direction, negation, set operations; and tables the question names that the SQL does not read."""
    column_words = {_lemma(w) for c in tree.find_all(exp.Column) for w in name_words(c.name)}
    selects = _top_selects(tree)
    used_tables = {t.name.lower() for t in tree.find_all(exp.Table)}
    # A table one foreign key away is fair to name ("courses with no students" over enrollments).
    used_tables |= {fk.ref_table.lower() for fk in schema.foreign_keys if fk.table.lower() in used_tables}
    used_tables |= {fk.table.lower() for fk in schema.foreign_keys if fk.ref_table.lower() in used_tables}
    for select in selects:
        for item in select.expressions:
            target = item.this if isinstance(item, exp.Alias) else item
            for agg in ([target] if isinstance(target, exp.AggFunc) else []):
                key = agg.key.lower()
                if key in _AGG_WORDS and not (_AGG_WORDS[key] & words or (key == "count" and "how many" in lowered)):
                    yield "missing_aggregate", agg.key.upper()
                if key == "max" and not (words & _MAX_WORDS or any(w.endswith("est") for w in words - _MIN_WORDS)):
                    yield "missing_aggregate", "MAX"
                if key == "min" and not (words & _MIN_WORDS or any(w.endswith("est") for w in words - _MAX_WORDS)):
                    yield "missing_aggregate", "MIN"
        group = select.args.get("group")
        if group is not None:
            for column in group.find_all(exp.Column):
                significant = [w for w in name_words(column.name) if w not in _STOP_COLUMN_WORDS]
                is_key = any(column.name.lower() in {k.lower() for k in t.primary_key} for t in schema.tables)
                if not significant or set(significant) <= {"name", "title"} or is_key:
                    continue  # an entity's key or name: grouping "per customer" names it through the table
                if not ({_lemma(w) for w in significant} & {_lemma(w) for w in words}):
                    yield "missing_group", column.name
        order, limit = select.args.get("order"), select.args.get("limit")
        if order is not None and limit is not None and len(order.expressions) == 1:
            descending = bool(order.expressions[0].args.get("desc"))
            says_max, says_min = bool(words & (_MAX_WORDS - _MIN_WORDS)), bool(words & (_MIN_WORDS - _MAX_WORDS))
            if descending and says_min and not says_max:
                yield "wrong_order", "DESC"
            if not descending and says_max and not says_min:
                yield "wrong_order", "ASC"
    if not any(s.find(exp.AggFunc) for s in selects):
        asked = {"how many", "average", "number of", "how much", "total number"}
        extra = [a for a in asked if a in lowered and not {_lemma(w) for w in a.split()} <= column_words]
        if extra:
            yield "extra_aggregate", extra[0]
    for node in tree.walk():
        if isinstance(node, exp.GT | exp.GTE | exp.LT | exp.LTE) and isinstance(node.this, exp.Column) \
                and isinstance(node.expression, exp.Literal | exp.Neg):
            family = _GT_WORDS if isinstance(node, exp.GT | exp.GTE) else _LT_WORDS
            if not words & family:
                yield "wrong_comparison", node.sql(dialect="sqlite")
        elif isinstance(node, exp.Not | exp.NEQ) and not words & _NEGATION and "n't" not in lowered:
            yield "missing_negation", node.sql(dialect="sqlite")[:60]
        elif isinstance(node, exp.Like) and not words & _LIKE_WORDS:
            yield "missing_pattern", node.sql(dialect="sqlite")[:60]
        elif isinstance(node, exp.Intersect) and not words & _INTERSECT_WORDS:
            yield "missing_set_operation", "INTERSECT"
        elif isinstance(node, exp.Except) and not (words & _NEGATION or "n't" in lowered):
            yield "missing_set_operation", "EXCEPT"
        elif isinstance(node, exp.Union) and not words & _UNION_WORDS:
            yield "missing_set_operation", "UNION"
    for table in schema.tables:
        if table.name.lower() in used_tables:
            continue
        head = table_noun(table.name)
        singular = table_noun(table.name, plural=False)
        named = re.search(rf"\b({re.escape(head)}|(?:each|per|every) {re.escape(singular)})\b", lowered)
        if named and not {_lemma(w) for w in name_words(table.name)} <= column_words:
            yield "foreign_table", table.name
