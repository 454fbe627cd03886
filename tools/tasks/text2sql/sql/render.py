"""Questions from SQL: a grammar-based writer over the sqlglot syntax tree.

:func:`render_question` writes an English question that names what a query selects (columns, aggregates), the
tables it reads, every literal value verbatim, its conditions (including subqueries and EXISTS), grouping and
HAVING, ordering and LIMIT, and set operations. Phrasings are picked by the caller's ``random.Random`` ("List...",
"Which...", "Show...", "How many...", "What is the average...") so rendered data stays varied. It is the fallback
writer of the text-to-SQL strategy: a small model writes an unfaithful question most of the time. Every question
it writes for sampled queries passes :func:`.faithfulness.faithfulness`.
"""

from __future__ import annotations

import random
import re

from sqlglot import exp

from tools.tasks.text2sql.sql.literals import parse_sql
from tools.tasks.text2sql.sql.phrases import FUNC_SYNONYMS, PhraseWriter, SelectScope, literal_text
from tools.tasks.text2sql.sql.schema import Schema
from tools.tasks.text2sql.sql.words import join_words, lemma_of, lemmas_of, name_words, plural_noun, table_noun


class RenderError(ValueError):
    """The SQL does not parse, so no question can be written for it."""


class QuestionWriter(PhraseWriter):
    """Whole questions: list, aggregate, grouped, derived-table and set-operation questions."""

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
                           select: exp.Select, scope: SelectScope) -> str:
        order_text, limit_text = self.order_phrase(select, scope, subject)
        tail = f"{clause_text}{order_text}{limit_text}"
        only = items[0].this if isinstance(items[0], exp.Alias) else items[0]
        if len(items) == 1 and isinstance(only, exp.Count) and isinstance(only.this, exp.Star):
            return self.pick(f"How many {subject} are there{tail}?", f"Count the {subject}{tail}.",
                             f"What is the number of {subject}{tail}?")
        if len(items) == 1 and isinstance(only, exp.Count) and isinstance(only.this, exp.Distinct):
            return self.pick(f"How many different {phrases[0].removeprefix('number of different ')} do {subject} "
                             f"have{tail}?", f"What is the {phrases[0]} among {subject}{tail}?")
        joined = join_words([f"the {p}" for p in phrases])
        if len(items) == 1:
            return self.pick(f"What is {joined} of {subject}{tail}?", f"Find {joined} of {subject}{tail}.",
                             f"Give {joined} across {subject}{tail}.")
        return self.pick(f"What are {joined} of {subject}{tail}?", f"Show {joined} of {subject}{tail}.")

    def list_question(self, select: exp.Select, scope: SelectScope, phrases: list[str], subject: str,
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
                cols = join_words([f"the {p}" for p in phrases])
                return self.pick(f"What is {cols} of the {singular}{clause_text} with the {word} {noun}?",
                                 f"Show {cols} of the {singular}{clause_text} that has the {word} {noun}.")
        order_text, limit_text = self.order_phrase(select, scope, subject)
        tail = f"{clause_text}{order_text}{limit_text}"
        if phrases == ["all details"]:
            return self.pick(f"Show all details of {subject}{tail}.", f"List everything about {subject}{tail}.",
                             f"Give all information on {subject}{tail}.")
        cols = join_words([f"the {p}" for p in phrases])
        if len(phrases) == 1 and not phrases[0].startswith(("number of", "value computed")):
            cols = f"the {plural_noun(phrases[0])}"
        if distinct:
            plural = join_words([plural_noun(p) for p in phrases])
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

    def group_question(self, select: exp.Select, scope: SelectScope, clause: str) -> str:
        text = self._group_question(select, scope, clause)
        subject = table_noun(scope.main) if scope.main else ""
        if subject and not ({lemma_of(w) for w in name_words(subject)} & lemmas_of(text)):
            text = f"{text[:-1]} among {subject}{text[-1]}"
        return text

    def _group_question(self, select: exp.Select, scope: SelectScope, clause: str) -> str:
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
        group_plural = plural_noun(group)
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
                extra = f" Also show {join_words([f'the {p}' for p in phrases])}." if phrases else ""
                count = literal_text(limit.expression) if limit is not None and isinstance(
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
            cols = join_words([f"the {p}" for p in phrases])
            return lead(self.pick(f"For each {group} with {having_text}, what is {cols}{tail}?",
                                  f"Show {cols} for every {group} that has {having_text}{tail}."))
        if not phrases:
            return lead(self.pick(f"List each {group} of {subject}{tail}.", f"Which {group_plural} do {subject} "
                                  f"have{tail}?"))
        if len(phrases) == 1 and phrases[0] == f"number of {subject}":
            return lead(self.pick(f"How many {subject} are there for each {group}{tail}?",
                                  f"Count the {subject} per {group}{tail}.",
                                  f"For each {group}, how many {subject} are there{tail}?"))
        cols = join_words([f"the {p}" for p in phrases])
        return lead(self.pick(f"What is {cols} for each {group}{tail}?", f"For each {group}, show {cols}{tail}.",
                              f"Show {cols} per {group}{tail}."))

    def counted_table(self, select: exp.Select, scope: SelectScope) -> str | None:
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

    def derived_question(self, select: exp.Select, scope: SelectScope) -> str | None:
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
                return self.pick(f"How many {plural_noun(group)} have {condition}{clause_text}?",
                                 f"Count the {plural_noun(group)} with {condition}{clause_text}.")
            return f"How many different {plural_noun(group)} do {inner_main}{clause_text} have?"
        if not isinstance(outer, exp.AggFunc) or not isinstance(outer.this, exp.Column):
            return None
        name = outer.this.name.lower()
        measured = next((e.this for e in inner.expressions if isinstance(e, exp.Alias) and e.alias.lower() == name),
                        None)
        if measured is None:
            return None
        measure = self.expression_phrase(measured, inner_scope, inner_main)
        word = self.pick(*FUNC_SYNONYMS.get(outer.key.upper(), (outer.key.lower(),)))
        if measure.split()[0] in {w for words in FUNC_SYNONYMS.values() for w in words}:
            word = f"{word} of the"
        return self.pick(f"What is the {word} {measure}{clause_text} per {group}?",
                         f"Across all {plural_noun(group)}, what is the {word} {measure}{clause_text}?")

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
            cols = join_words(left_items)
            left_from = left_np.split(" of ", 1)[1]
            right_from = right_np.split(" of ", 1)[1]
        keep = ", keeping duplicates" if node.key == "union" and not node.args.get("distinct", True) else ""
        if node.key == "union":
            if same:
                return self.pick(f"List the {plural_noun(cols)} of {left_from} or of {right_from}{keep}.",
                                 f"Which {plural_noun(cols)} belong to {left_from} or to {right_from}{keep}?")
            return f"List {left_np} together with {right_np}{keep}."
        if node.key == "intersect":
            if same:
                return self.pick(f"Which {plural_noun(cols)} appear both among {left_from} and among {right_from}?",
                                 f"Find the {plural_noun(cols)} shared by {left_from} and {right_from}.")
            return f"Which values are both {left_np} and {right_np}?"
        if same:
            return self.pick(f"Which {plural_noun(cols)} of {left_from} are not among those of {right_from}?",
                             f"List the {plural_noun(cols)} of {left_from}, excluding those of {right_from}.")
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
    return QuestionWriter(schema, rng).question(tree)
