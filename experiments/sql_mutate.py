"""Text-to-SQL rows made by editing real training examples: the gold SQL changes within its schema, and the
question changes to match, deterministically, so the row keeps the task's own voice.

Every operator edits the seed's SQL as text (the seed's spacing, aliases and casing stay as they are) and makes
the matching edit in the seed's question; an operator that cannot find an unambiguous place to edit gives up
(returns None) rather than guess. Operators that keep the category make variations; the others move a seed
toward a target category:

| operator | SQL edit | question edit | category |
|---|---|---|---|
| swap_literal | a compared value -> another value the training SQL uses for that column | the value's words | kept |
| flip_order | DESC <-> ASC | most expensive <-> cheapest, highest <-> lowest, ... | kept |
| swap_aggregate | AVG / MAX / MIN / SUM -> another | average / highest / lowest / total | kept |
| flip_comparison | > <-> <, >= <-> <= | more than <-> less than, before <-> after, ... | kept |
| to_count | the select list -> COUNT(*) | Which / What X ... -> How many X ... | -> aggregation (join kept) |
| count_to_list | COUNT(*) -> the table's name column | How many X ... -> Which X ... | aggregation -> filter / join |
| add_group | + GROUP BY a column the task groups by | + for each <column> | aggregation -> group_by |
| union_values | q UNION q with a second value | V -> V or V2 | filter -> set_operation |
| to_nested_avg | a compared number -> (SELECT AVG(col) FROM t) | the number -> the average | -> nested |
| order_alphabetically | + ORDER BY name | + alphabetically | filter -> order_limit |

Values come from the task's own data: the literals its training SQL compares each column with (per schema).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.tokens import Tokenizer, TokenType
from tools.sql.literals import literal_pool, parse_sql, query_literals, resolve_column
from tools.sql.schema import Schema, SchemaError, parse_schema
from tools.strategies.base import Candidate, Draft, GenerationStrategy, Rejection
from tools.strategies.text2sql import question_of

from tools.data import FlockRecord, Turn
from tools.tasks.base import TaskPlugin
from tools.tasks.text2sql import CATEGORY_PRIORITY, clean_sql, parse_prompt


@dataclass(frozen=True)
class Seed:
    record: FlockRecord
    schema_text: str
    schema: Schema
    question: str
    sql: str
    category: str


@dataclass(frozen=True)
class Edit:
    question: str
    sql: str
    operator: str


@dataclass
class SchemaFacts:
    """What the task's training SQL shows about one schema: values per column, columns it groups by."""

    values: dict[str, list[Any]]
    group_columns: dict[str, list[str]]


Operator = Callable[[Seed, SchemaFacts, random.Random], Edit | None]

# ----- small text helpers ----------------------------------------------------------------------------------------
_WORD = r"(?<![\w-]){}(?![\w-])"


def _find_once(text: str, phrase: str) -> re.Match[str] | None:
    """The only case-insensitive, whole-word occurrence of ``phrase`` in ``text`` (None if absent or repeated)."""
    matches = list(re.finditer(_WORD.format(re.escape(phrase)), text, re.IGNORECASE))
    return matches[0] if len(matches) == 1 else None


def _same_case(template: str, word: str) -> str:
    """``word`` capitalized like ``template`` (an acronym such as GPA says nothing about the new word)."""
    if template.isupper() and len(template) > 1:
        return word
    return word[:1].upper() + word[1:] if template[:1].isupper() else word


def _replace_span(text: str, match: re.Match[str], new: str) -> str:
    return text[:match.start()] + _same_case(match.group(0), new) + text[match.end():]


def _sql_literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _words(column: str) -> str:
    return column.replace("_", " ")


def _tokens(sql: str) -> list[Any]:
    return list(Tokenizer().tokenize(sql))


def _span(sql: str, token: Any) -> tuple[int, int]:
    """Where a token is in ``sql``; a string's span includes its quotes."""
    start, end = token.start, token.end + 1
    if token.token_type == TokenType.STRING:
        if sql[start] != "'":
            start -= 1
        if end < len(sql) and sql[end - 1] != "'" and sql[end] == "'":
            end += 1
    return start, end


def _top_select(tree: exp.Expr) -> exp.Select | None:
    return tree if isinstance(tree, exp.Select) else None


def _single_table(select: exp.Select) -> exp.Table | None:
    tables = list(select.find_all(exp.Table))
    return tables[0] if len(tables) == 1 and not select.args.get("joins") else None


def _label_column(schema: Schema, table: str) -> str | None:
    found = schema.table(table)
    if found is None:
        return None
    names = [c.name for c in found.columns]
    return next((n for n in ("name", "title") if n in names), None)


# ----- operators that keep the category --------------------------------------------------------------------------
def swap_literal(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    tree = parse_sql(seed.sql)
    if tree is None:
        return None
    options: list[tuple[Any, Any, list[Any]]] = []
    for use in query_literals(tree):
        if not use.must_mention or use.value is None or use.operator == "between":
            continue
        if use.column is not None:
            resolved = resolve_column(use.column, seed.schema)
            pool = facts.values.get(f"{resolved[0]}.{resolved[1]}", []) if resolved else []
        elif use.operator == "limit" and isinstance(use.value, int):
            pool = [3, 5, 10]
        else:
            continue
        alternatives = [v for v in pool if v != use.value and type(v) is type(use.value)
                        and _find_once(seed.question, str(v)) is None]
        if isinstance(use.value, int) and not isinstance(use.value, bool) and not alternatives:
            alternatives = [v for v in _nearby_numbers(use.value) if _find_once(seed.question, str(v)) is None]
        if alternatives:
            options.append((use, use.value, alternatives))
    rng.shuffle(options)
    for use, value, alternatives in options:
        spoken = use.text
        match = _find_once(seed.question, spoken)
        if match is None:
            continue
        new_value = rng.choice(alternatives)
        new_sql = _replace_literal(seed.sql, value, use.operator, new_value)
        if new_sql is None:
            continue
        new_text = str(new_value).replace("%", "").strip() if use.operator == "like" else str(new_value)
        return Edit(_replace_span(seed.question, match, new_text), new_sql, "swap_literal")
    return None


def _nearby_numbers(value: int) -> list[int]:
    if 1900 <= value <= 2100:
        return [value + d for d in (-3, -2, -1, 1, 2, 3)]
    if value <= 10:
        return [v for v in (2, 3, 4, 5, 10) if v != value]
    magnitude = 10 ** (len(str(abs(value))) - 1)
    return sorted({max(1, value - magnitude), value + magnitude, value * 2}) if magnitude > 1 else [value + 5]


def _replace_literal(sql: str, value: Any, operator: str, new_value: Any) -> str | None:
    """``sql`` with the one literal token spelling ``value`` replaced (None when it occurs more than once)."""
    hits = []
    for token in _tokens(sql):
        if token.token_type == TokenType.STRING and isinstance(value, str):
            text = token.text
            if text == value or (operator == "like" and text.replace("%", "").strip() == value):
                hits.append((token, text))
        elif token.token_type == TokenType.NUMBER and not isinstance(value, str) and float(token.text) == value:
            hits.append((token, token.text))
    if len(hits) != 1:
        return None
    token, text = hits[0]
    start, end = _span(sql, token)
    if operator == "like" and isinstance(new_value, str):
        new_value = text.replace(text.replace("%", "").strip(), new_value.replace("%", "").strip())
    return sql[:start] + _format_literal(new_value) + sql[end:]


_ORDER_PAIRS = [("most expensive", "cheapest"), ("highest", "lowest"), ("largest", "smallest"),
                ("most recent", "oldest"), ("latest", "earliest"), ("newest", "oldest"), ("longest", "shortest"),
                ("biggest", "smallest"), ("most", "fewest"), ("top", "bottom"), ("best", "worst")]


def flip_order(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    if seed.sql.upper().count("ORDER BY") != 1:
        return None
    hits = [(m, b if m.group(0).lower() == a else a) for a, b in _ORDER_PAIRS for phrase in (a, b)
            if (m := _find_once(seed.question, phrase)) is not None]
    if len(hits) != 1:
        return None
    match, partner = hits[0]
    order_at = seed.sql.upper().index("ORDER BY")
    head, tail = seed.sql[:order_at], seed.sql[order_at:]
    if re.search(r"\bDESC\b", tail):
        tail = re.sub(r"\s+DESC\b", "", tail, count=1)
    elif re.search(r"\bASC\b", tail):
        tail = re.sub(r"\bASC\b", "DESC", tail, count=1)
    else:
        tail = re.sub(r"^(ORDER BY [^,]+?)(\s+LIMIT\b|$)", r"\1 DESC\2", tail, count=1)
        if "DESC" not in tail:
            return None
    return Edit(_replace_span(seed.question, match, partner), head + tail, "flip_order")


_AGGREGATE_WORDS = {"AVG": "average", "MAX": "highest", "MIN": "lowest", "SUM": "total"}


def swap_aggregate(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    found = [(f, m) for f in _AGGREGATE_WORDS for m in re.finditer(rf"\b{f}\(", seed.sql)]
    if len(found) != 1 or seed.sql.upper().count("SELECT") != 1:
        return None
    func, sql_match = found[0]
    words = {"AVG": ["average", "mean"], "MAX": ["highest", "maximum", "largest"],
             "MIN": ["lowest", "minimum", "smallest"], "SUM": ["total"]}[func]
    hits = [m for w in words if (m := _find_once(seed.question, w)) is not None
            and not re.search(r"\bin\s+$", seed.question[:m.start()]) and m.end() < len(seed.question) - 1]
    if len(hits) != 1:
        return None
    target = rng.choice([f for f in _AGGREGATE_WORDS if f != func])
    new_sql = seed.sql[:sql_match.start()] + target + seed.sql[sql_match.start() + len(func):]
    return Edit(_replace_span(seed.question, hits[0], _AGGREGATE_WORDS[target]), new_sql, "swap_aggregate")


_COMPARISON_PAIRS = [("more than", "less than", ">", "<"), ("greater than", "less than", ">", "<"),
                     ("over", "under", ">", "<"), ("above", "below", ">", "<"), ("after", "before", ">", "<"),
                     ("higher than", "lower than", ">", "<"), ("at least", "at most", ">=", "<="),
                     ("or more", "or fewer", ">=", "<=")]


def flip_comparison(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    operators = [t for t in _tokens(seed.sql) if t.token_type in (TokenType.GT, TokenType.LT, TokenType.GTE,
                                                                     TokenType.LTE)]
    if len(operators) != 1:
        return None
    symbol = operators[0].text
    hits = []
    for up, down, up_op, down_op in _COMPARISON_PAIRS:
        for phrase, partner, op, new_op in ((up, down, up_op, down_op), (down, up, down_op, up_op)):
            match = _find_once(seed.question, phrase)
            if match is not None and op == symbol:
                hits.append((match, partner, new_op))
    if len(hits) != 1:
        return None
    match, partner, new_op = hits[0]
    start, end = _span(seed.sql, operators[0])
    return Edit(_replace_span(seed.question, match, partner), seed.sql[:start] + new_op + seed.sql[end:],
                "flip_comparison")


# ----- operators toward another category ---------------------------------------------------------------------------
_WHICH = re.compile(r"^(?:Which|What)\s+(?P<rest>[a-z][\w ,'-]*?)\s*\?$")
_LIST = re.compile(r"^(?:List|Show|Find)\s+(?:the|all)\s+(?P<rest>[a-z][\w ,'-]*?)\s*[.?]$")


def to_count(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    tree = parse_sql(seed.sql)
    select = _top_select(tree) if tree is not None else None
    if select is None or select.find(exp.AggFunc) or select.args.get("order") or select.args.get("limit") \
            or len(select.expressions) > 2 or any(isinstance(e, exp.Star) for e in select.expressions):
        return None
    match = _WHICH.match(seed.question) or _LIST.match(seed.question)
    if match is None or re.match(r"^\w+ of ", match.group("rest")):
        return None
    start = seed.sql.upper().index("SELECT") + len("SELECT")
    end = seed.sql.upper().index(" FROM ")
    distinct = seed.sql[start:end].strip().upper().startswith("DISTINCT")
    columns = seed.sql[start:end].strip()
    projection = f"COUNT(DISTINCT {columns[len('DISTINCT'):].strip()})" if distinct else "COUNT(*)"
    if distinct and "," in columns:
        return None
    return Edit(f"How many {match.group('rest')}?", seed.sql[:start] + " " + projection + seed.sql[end:], "to_count")


_HOW_MANY = re.compile(r"^How many\s+(?P<rest>[a-z][\w ,'-]*?)\s*\?$")


def count_to_list(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    match = _HOW_MANY.match(seed.question)
    if match is None or not re.match(r"^SELECT COUNT\(\*\) FROM ", seed.sql):
        return None
    tree = parse_sql(seed.sql)
    select = _top_select(tree) if tree is not None else None
    if select is None or select.args.get("group"):
        return None
    first = select.find(exp.Table)
    if first is None:
        return None
    label = _label_column(seed.schema, first.name)
    if label is None:
        return None
    qualified = f"{first.alias}.{label}" if first.alias else label
    return Edit(f"Which {match.group('rest')}?", seed.sql.replace("COUNT(*)", qualified, 1), "count_to_list")


def add_group(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    tree = parse_sql(seed.sql)
    select = _top_select(tree) if tree is not None else None
    if select is None or select.args.get("group") or select.args.get("order") or len(select.expressions) != 1 \
            or not isinstance(select.expressions[0], exp.AggFunc):
        return None
    table = _single_table(select)
    if table is None or table.alias:
        return None
    columns = [c for c in facts.group_columns.get(table.name, []) if c not in seed.sql]
    if not columns or not seed.question.endswith(("?", ".")):
        return None
    column = rng.choice(columns)
    start = seed.sql.upper().index("SELECT") + len("SELECT")
    sql = seed.sql[:start] + f" {column}," + seed.sql[start:] + f" GROUP BY {column}"
    question = seed.question[:-1] + f" for each {_words(column)}" + seed.question[-1]
    return Edit(question, sql, "add_group")


def union_values(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    tree = parse_sql(seed.sql)
    select = _top_select(tree) if tree is not None else None
    if select is None or select.args.get("order") or select.args.get("limit") or _single_table(select) is None \
            or select.find(exp.AggFunc):
        return None
    uses = [u for u in query_literals(tree) if u.must_mention]
    if len(uses) != 1 or uses[0].operator != "eq" or not isinstance(uses[0].value, str) or uses[0].column is None:
        return None
    use = uses[0]
    resolved = resolve_column(use.column, seed.schema)
    pool = facts.values.get(f"{resolved[0]}.{resolved[1]}", []) if resolved else []
    alternatives = [v for v in pool if isinstance(v, str) and v != use.value and v not in seed.question]
    match = _find_once(seed.question, use.text)
    if not alternatives or match is None:
        return None
    other = rng.choice(alternatives)
    second = _replace_literal(seed.sql, use.value, "eq", other)
    if second is None:
        return None
    question = seed.question[:match.start()] + f"{match.group(0)} or {other}" + seed.question[match.end():]
    return Edit(question, f"{seed.sql} UNION {second}", "union_values")


def to_nested_avg(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    tree = parse_sql(seed.sql)
    select = _top_select(tree) if tree is not None else None
    if select is None or select.find(exp.AggFunc) or select.args.get("group"):
        return None
    table = _single_table(select)
    uses = [u for u in query_literals(tree) if u.must_mention]
    if table is None or len(uses) != 1 or uses[0].operator not in ("gt", "lt", "gte", "lte") \
            or uses[0].column is None or isinstance(uses[0].value, str):
        return None
    use = uses[0]
    match = _find_once(seed.question, use.text)
    comparison = (r"\b(?:above|over|under|below|more than|less than|at least|at most|greater than|higher than|"
                  r"lower than|before|after)\s+$")
    if match is None or not re.search(comparison, seed.question[:match.start()]):
        return None
    new_sql = _replace_literal(seed.sql, use.value, use.operator,
                               _Raw(f"(SELECT AVG({use.column.name}) FROM {table.name})"))
    if match is None or new_sql is None:
        return None
    return Edit(seed.question[:match.start()] + "the average" + seed.question[match.end():], new_sql,
                "to_nested_avg")


class _Raw(str):
    """SQL text put in place of a literal as it is (not quoted)."""


def order_alphabetically(seed: Seed, facts: SchemaFacts, rng: random.Random) -> Edit | None:
    tree = parse_sql(seed.sql)
    select = _top_select(tree) if tree is not None else None
    if select is None or select.args.get("order") or select.find(exp.AggFunc) or select.args.get("joins"):
        return None
    first = select.expressions[0] if select.expressions else None
    if not isinstance(first, exp.Column) or first.name not in ("name", "title") or not seed.question.endswith("."):
        return None
    if not re.match(r"^(List|Show|Find|Give)\b", seed.question):
        return None
    return Edit(seed.question[:-1] + " alphabetically.", f"{seed.sql} ORDER BY {first.sql()}", "order_alphabetically")


KEEP_OPERATORS: dict[str, Operator] = {"swap_literal": swap_literal, "flip_order": flip_order,
                                       "swap_aggregate": swap_aggregate, "flip_comparison": flip_comparison}
MOVE_OPERATORS: dict[str, Operator] = {"to_count": to_count, "count_to_list": count_to_list, "add_group": add_group,
                                       "union_values": union_values, "to_nested_avg": to_nested_avg,
                                       "order_alphabetically": order_alphabetically}
OPERATORS: dict[str, Operator] = {**KEEP_OPERATORS, **MOVE_OPERATORS}


def _format_literal(value: Any) -> str:
    return value if isinstance(value, _Raw) else _sql_literal(value)


# ----- the strategy --------------------------------------------------------------------------------------------------
def schema_facts(seeds: Sequence[Seed]) -> dict[str, SchemaFacts]:
    by_schema: dict[str, list[Seed]] = defaultdict(list)
    for seed in seeds:
        by_schema[seed.schema_text].append(seed)
    facts: dict[str, SchemaFacts] = {}
    for text, group in by_schema.items():
        schema = group[0].schema
        values = literal_pool(schema, [s.sql for s in group])
        grouped: dict[str, list[str]] = defaultdict(list)
        for s in group:
            tree = parse_sql(s.sql)
            for g in tree.find_all(exp.Group) if tree is not None else []:
                select = g.parent_select
                if select is None or select.args.get("joins"):
                    continue
                for column in g.find_all(exp.Column):
                    resolved = resolve_column(column, schema)
                    name = resolved[1] if resolved else ""
                    if resolved and name not in grouped[resolved[0]] and name not in ("id", "name", "title") \
                            and not name.endswith("_id"):
                        grouped[resolved[0]].append(name)
        facts[text] = SchemaFacts(values=values, group_columns=dict(grouped))
    return facts


def load_seeds(plugin: TaskPlugin, records: Sequence[FlockRecord]) -> list[Seed]:
    seeds = []
    for record in records:
        answers = record.assistant_texts()
        question = question_of(record)
        schema_text = parse_prompt(record.first_user_text()).schema
        if not answers or not question or not schema_text:
            continue
        try:
            schema = parse_schema(schema_text)
        except SchemaError:
            continue
        seeds.append(Seed(record, schema_text, schema, question, clean_sql(answers[-1]),
                          plugin.categorize(record).primary))
    return seeds


def apply_edit(seed: Seed, edit: Edit) -> FlockRecord:
    """The seed record with its question and SQL replaced (the system text and layout kept)."""
    user = seed.record.first_user_text()
    at = user.rfind(seed.question)
    new_user = user[:at] + edit.question + user[at + len(seed.question):]
    turns = []
    for turn in seed.record.conversations:
        if turn.role == "user" and turn.content == user:
            turns.append(Turn(role="user", content=new_user))
        elif turn.role == "assistant":
            turns.append(Turn(role="assistant", content=edit.sql))
        else:
            turns.append(turn)
    return FlockRecord(system=seed.record.system, conversations=turns, tools=seed.record.tools)


class SQLMutationStrategy(GenerationStrategy):
    """Mutate real examples toward a target category (see the module docstring). ``operators`` limits the
    operators used (e.g. only the category-keeping ones); ``chain`` is the chance of a second, literal edit."""

    name = "sql_mutation"

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord], *, operators: Sequence[str] | None = None,
                 chain: float = 0.5):
        super().__init__(plugin, seeds)
        self.examples = load_seeds(plugin, self.seeds)
        self.facts = schema_facts(self.examples)
        self.operators = {n: OPERATORS[n] for n in (operators or OPERATORS)}
        self.chain = chain

    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        if category not in CATEGORY_PRIORITY:
            return Rejection("unknown_category", f"no text-to-SQL category {category!r}", category)
        order = list(self.examples)
        rng.shuffle(order)
        names = list(self.operators)
        for seed in order[:200]:
            rng.shuffle(names)
            for name in names:
                if name in KEEP_OPERATORS and seed.category != category:
                    continue
                edit = self.operators[name](seed, self.facts[seed.schema_text], rng)
                if edit is None:
                    continue
                if name != "swap_literal" and rng.random() < self.chain:
                    moved = Seed(seed.record, seed.schema_text, seed.schema, edit.question, edit.sql, category)
                    second = swap_literal(moved, self.facts[seed.schema_text], rng)
                    if second is not None:
                        edit = Edit(second.question, second.sql, f"{name}+swap_literal")
                record = apply_edit(seed, edit)
                if self.plugin.categorize(record).primary != category:
                    continue
                return Draft(category=category, messages=None, seed_ids=[seed.record.record_id],
                             state={"record": record.to_json_dict(), "operator": edit.operator,
                                    "seed_question": seed.question, "seed_sql": seed.sql})
        return Rejection("no_mutation", f"no seed could be edited into {category}", category)

    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        record = FlockRecord.model_validate(draft.state["record"])
        return Candidate(record=record, category=draft.category,
                         provenance={"strategy": self.name, "writer": "mutation", "operator": draft.state["operator"],
                                     "seed_ids": list(draft.seed_ids), "seed_question": draft.state["seed_question"],
                                     "seed_sql": draft.state["seed_sql"]})
