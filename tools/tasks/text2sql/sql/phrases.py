"""Noun phrases and clauses for the parts of a query, the vocabulary of the question writer (:mod:`.render`).

:class:`PhraseWriter` reads a SELECT's tables (:class:`SelectScope`), names its columns and expressions ("the
average price", "number of orders"), its subject ("customers joined with their orders"), and turns WHERE and
HAVING trees into relative clauses ("whose price is above 100"), including subqueries and EXISTS; it also phrases
grouping and ordering. Phrasings are picked by the caller's ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlglot import exp

from tools.tasks.text2sql.sql.literals import like_text, literal_value
from tools.tasks.text2sql.sql.schema import Schema
from tools.tasks.text2sql.sql.values import BOOLEAN_WORDS
from tools.tasks.text2sql.sql.words import (
    article,
    humanize,
    join_words,
    lemma_of,
    name_words,
    plural_noun,
    table_noun,
)

FUNC_SYNONYMS = {"AVG": ("average", "mean"), "SUM": ("total", "combined"), "MAX": ("highest", "maximum"),
                 "MIN": ("lowest", "minimum")}
_DATE_WORDS = {"date", "day", "time", "departure", "arrival", "created", "updated", "dob", "birthday"}


def literal_text(node: exp.Expr) -> str:
    value = literal_value(node)
    if isinstance(node, exp.Neg):
        return "-" + str(node.this.this)
    return str(node.this) if isinstance(node, exp.Literal) else str(value)


@dataclass
class SelectScope:
    """Tables a SELECT reads: alias -> table name, its main table, and derived tables by alias."""

    aliases: dict[str, str]
    main: str | None
    derived: dict[str, exp.Select] = field(default_factory=dict)
    parent: SelectScope | None = None

    def table_of(self, column: exp.Column, schema: Schema) -> str | None:
        qualifier = column.table.lower()
        scope: SelectScope | None = self
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


class PhraseWriter:
    """Phrases for one question over one schema, worded by ``rng``."""

    def __init__(self, schema: Schema, rng: random.Random):
        self.schema = schema
        self.rng = rng

    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    def scope(self, select: exp.Select, parent: SelectScope | None = None) -> SelectScope:
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
        return SelectScope(aliases, main, derived, parent)

    def column_phrase(self, column: exp.Column, scope: SelectScope) -> str:
        words = humanize(column.name)
        table = scope.table_of(column, self.schema)
        if table is None or scope.main is None or table.lower() == (scope.main or "").lower():
            return words
        owner = table_noun(table, plural=False)
        if {lemma_of(w) for w in owner.split()} & {lemma_of(w) for w in words.split()}:
            return words
        return f"{owner} {words}"

    def is_flag(self, column: exp.Column, scope: SelectScope) -> bool:
        """A yes/no column by its declared type or its name (``returned``, ``is_active``, ``vegetarian``)."""
        table = scope.table_of(column, self.schema)
        found = self.schema.table(table) if table else None
        declared = found.column(column.name) if found else None
        if declared is not None and declared.kind == "boolean":
            return True
        name = column.name.lower()
        last = name_words(name)[-1] if name_words(name) else name
        return name.startswith(("is_", "has_", "can_")) or name in BOOLEAN_WORDS or last in BOOLEAN_WORDS

    def is_text(self, column: exp.Column, scope: SelectScope) -> bool:
        table = scope.table_of(column, self.schema)
        found = self.schema.table(table) if table else None
        declared = found.column(column.name) if found else None
        return declared is not None and declared.kind == "text" and not self.is_date(column)

    def is_date(self, column: exp.Column) -> bool:
        return bool(set(name_words(column.name)) & _DATE_WORDS) or column.name.lower().endswith(("_at", "_on"))

    def expression_phrase(self, node: exp.Expr, scope: SelectScope, subject: str) -> str:
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
                    return f"number of different {plural_noun(noun)}"
                return f"number of {subject} with a {self.expression_phrase(arg, scope, subject)}"
            word = self.pick(*FUNC_SYNONYMS.get(func, (func.lower(),)))
            if isinstance(arg, exp.Distinct) and arg.expressions:
                return f"{word} of the distinct {self.expression_phrase(arg.expressions[0], scope, subject)}"
            return f"{word} {self.expression_phrase(arg, scope, subject)}"
        if isinstance(node, exp.Literal | exp.Neg):
            return literal_text(node)
        if isinstance(node, exp.Paren):
            return self.expression_phrase(node.this, scope, subject)
        columns = list(node.find_all(exp.Column))
        if columns:
            return "value computed from the " + join_words([self.column_phrase(c, scope) for c in columns])
        return node.sql(dialect="sqlite")

    def subject(self, select: exp.Select, scope: SelectScope, mentioned: str = "") -> str:
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
            return f"{main} {self.pick('joined with', 'together with', 'linked to')} their {join_words(others)}"
        return main

    def conditions(self, node: exp.Expr | None, scope: SelectScope, *, skip_links: bool = False) -> str:
        """A relative clause for a WHERE/HAVING tree (``whose price is above 100 and ...``), or ''."""
        if node is None:
            return ""
        return self.cond(node, scope, skip_links=skip_links)

    def cond(self, node: exp.Expr, scope: SelectScope, *, skip_links: bool = False) -> str:
        if isinstance(node, exp.Paren):
            inner = self.cond(node.this, scope, skip_links=skip_links)
            return f"either {inner}," if isinstance(node.this, exp.Or) and inner else inner
        if isinstance(node, exp.And):
            parts = [self.cond(p, scope, skip_links=skip_links) for p in (node.this, node.expression)]
            return " and ".join(p for p in parts if p)
        if isinstance(node, exp.Or):
            parts = [self.cond(p, scope, skip_links=skip_links) for p in (node.this, node.expression)]
            return " or ".join(p for p in parts if p)
        negate = isinstance(node, exp.Not)
        target = node.this if negate else node
        if isinstance(target, exp.Exists):
            return self.exists(target, scope, negate=negate)
        if isinstance(target, exp.In):
            return self.in_condition(target, scope, negate=negate)
        if isinstance(target, exp.Is):
            return self.is_condition(target, scope, negate=negate)
        if isinstance(target, exp.Like) or (isinstance(target, exp.ILike) and not negate):
            return self.like(target, scope, negate=negate)
        if negate:
            return f"that do not satisfy this: {self.cond(target, scope)}"
        if isinstance(node, exp.Between):
            subject = self.operand_noun(node.this, scope)
            low, high = self.operand(node.args["low"], scope), self.operand(node.args["high"], scope)
            return f"whose {subject} is between {low} and {high}"
        if isinstance(node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
            return self.comparison(node, scope, skip_links=skip_links)
        if isinstance(node, exp.Column):
            noun = self.column_phrase(node, scope)
            return f"that have {article(noun)} {noun}"
        return f"matching {node.sql(dialect='sqlite')}"

    def operand(self, node: exp.Expr, scope: SelectScope) -> str:
        if isinstance(node, exp.Literal | exp.Neg):
            return literal_text(node)
        if isinstance(node, exp.Subquery):
            return self.scalar_subquery(node.this, scope)
        if isinstance(node, exp.Column):
            return f"the {self.column_phrase(node, scope)}"
        if isinstance(node, exp.AggFunc):
            return f"the {self.expression_phrase(node, scope, 'rows')}"
        return self.expression_phrase(node, scope, "rows")

    def comparison(self, node: exp.Expr, scope: SelectScope, *, skip_links: bool) -> str:
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

    def operand_noun(self, node: exp.Expr, scope: SelectScope) -> str:
        if isinstance(node, exp.Column):
            return self.column_phrase(node, scope)
        return self.expression_phrase(node, scope, "rows")

    def like(self, node: exp.Expr, scope: SelectScope, *, negate: bool) -> str:
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

    def is_condition(self, node: exp.Is, scope: SelectScope, *, negate: bool) -> str:
        subject = self.operand_noun(node.this, scope)
        return f"that have {article(subject) if negate else 'no'} {subject}"

    def in_condition(self, node: exp.In, scope: SelectScope, *, negate: bool) -> str:
        subject = self.operand_noun(node.this, scope)
        query = node.args.get("query")
        if query is not None:
            inner = query.this if isinstance(query, exp.Subquery) else query
            if isinstance(inner, exp.Select):
                return self.in_subquery(node.this, inner, scope, negate=negate)
            return f"whose {subject} is {'not ' if negate else ''}among {self.noun_phrase(inner, scope)}"
        values = [self.operand(v, scope) for v in node.expressions]
        if negate:
            return f"whose {subject} is not {join_words(values, 'or')}"
        return self.pick(f"whose {subject} is {join_words(values, 'or')}",
                         f"whose {subject} is one of {join_words(values)}")

    def in_subquery(self, outer: exp.Expr, inner: exp.Select, scope: SelectScope, *, negate: bool) -> str:
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

    def exists(self, node: exp.Exists, scope: SelectScope, *, negate: bool) -> str:
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

    def scalar_subquery(self, inner: exp.Expr, scope: SelectScope) -> str:
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

    def _links(self, node: exp.Expr, scope: SelectScope) -> Iterator[exp.Column]:
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

    def _correlated(self, node: exp.Expr, scope: SelectScope) -> bool:
        return next(self._links(node, scope), None) is not None

    def noun_phrase(self, node: exp.Expr, parent: SelectScope | None = None) -> str:
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
        return (f"the {distinct}{join_words(items)} of {subject}{' ' + clause if clause else ''}"
                f"{' for each ' + group if group else ''}")

    def group_phrase(self, select: exp.Select, scope: SelectScope) -> str:
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
        return join_words(names)

    def order_phrase(self, select: exp.Select, scope: SelectScope, subject: str) -> tuple[str, str]:
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
            count = literal_text(limit.expression) if isinstance(limit.expression, exp.Literal | exp.Neg) \
                else limit.expression.sql()
            limit_text = self.pick(f", showing only the first {count}", f", limited to {count} results",
                                   f" (only the first {count})")
        if offset is not None:
            skipped = literal_text(offset.expression) if isinstance(offset.expression, exp.Literal) \
                else offset.expression.sql()
            limit_text += f", skipping the first {skipped}"
        return order_text, limit_text

    def having_phrase(self, node: exp.Expr, scope: SelectScope, subject: str) -> str:
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
            return f"{article(measure)} {measure} {words} {value}"
        return self.cond(node, scope)
