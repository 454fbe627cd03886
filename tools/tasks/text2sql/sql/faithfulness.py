"""Whether a question is faithful to its SQL: the check every generated question passes.

:func:`faithfulness` judges any question (from a model or from the renderer of :mod:`.render`) against its SQL:
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

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlglot import exp

from tools.tasks.text2sql.sql.literals import parse_sql, query_literals
from tools.tasks.text2sql.sql.schema import Schema
from tools.tasks.text2sql.sql.words import lemma_of, lemmas_of, name_words, table_noun

_STOP_COLUMN_WORDS = {"id", "no", "num", "the", "of", "and", "is", "at", "on", "in"}
_META = re.compile(
    r"\b(the answer|answer is|sql|query|queries|select\b|here is|here's|schema|sqlite|as an ai)\b|```",
    re.IGNORECASE,
)
_MAX_QUESTION_CHARS = 400


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


def _top_selects(tree: exp.Expr) -> list[exp.Select]:
    """The SELECTs at the top of a query: its own, or each side of its set operations."""
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


def _main_parts(tree: exp.Expr, schema: Schema) -> tuple[list[list[str]], list[exp.Column]]:
    """The tables of each top-level SELECT (FROM and JOIN; the question must name at least one of them) and the
    schema columns its aggregates measure (``AVG(salary)``: the question must say what it averages). Plain
    projected columns may stay implicit ("Which artists are from Sweden?" selects ``name, country``)."""
    tables: list[list[str]] = []
    columns: list[exp.Column] = []
    for select in _top_selects(tree):
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
        lemma = lemma_of(word)
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
    lemmas = lemmas_of(text)
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


def _structure_issues(tree: exp.Expr, schema: Schema, words: set[str], lowered: str) -> Iterator[tuple[str, str]]:
    """Constructs of the SQL the question contradicts or leaves out: aggregates, grouping, ordering direction,
    comparison direction, negation, set operations; and tables the question names that the SQL does not read."""
    column_words = {lemma_of(w) for c in tree.find_all(exp.Column) for w in name_words(c.name)}
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
                if not ({lemma_of(w) for w in significant} & {lemma_of(w) for w in words}):
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
        extra = [a for a in asked if a in lowered and not {lemma_of(w) for w in a.split()} <= column_words]
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
        if named and not {lemma_of(w) for w in name_words(table.name)} <= column_words:
            yield "foreign_table", table.name
