"""Text-to-SQL rows from scratch in the task's own voice: a real query's template, carried to other tables.

The grammar sampler (tools.sql.sampler) writes queries of a category in shapes of its own: more columns, more
conditions and longer, grammar-written questions than the task's (experiments/RESULTS.md, Q1). This strategy
instead takes a real training query as the template and re-targets it: every table of the query is mapped to a
table of some domain (the same or another), every column to a column of the mapped table with the same role
(label, category, number, year, date, flag, key, foreign key; join columns follow a foreign key of the target
schema), every compared value to a value of the mapped column (the training SQL's own values first, then the
synthesized database's). The SQL is rewritten token by token, so the task's spacing, casing, keyword choices and
alias scheme stay (aliases are re-derived from the new table names as the task derives them); the query must run
on the target domain's database and return rows.

The question is the seed's question with the same substitutions (table nouns, column words, values); when the
result fails :func:`tools.sql.render.faithfulness`, the grammar writer's question is used instead, and the
provenance records which writer wrote it.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.tokens import Tokenizer, TokenType
from tools.sql.database import name_words
from tools.sql.literals import literal_pool, literal_rows, parse_sql, query_literals, resolve_column
from tools.sql.render import faithfulness, render_question, table_noun
from tools.sql.sampler import QuerySampler
from tools.sql.sandbox import run_query, sandbox_database
from tools.sql.schema import Schema
from tools.strategies.base import Candidate, Draft, GenerationStrategy, Rejection

from experiments.sql_mutate import Edit, Seed, _find_once, _same_case, _sql_literal, apply_edit, load_seeds
from tools.data import FlockRecord
from tools.tasks.base import TaskPlugin
from tools.tasks.text2sql import CATEGORY_PRIORITY

_COMPATIBLE_ROLES = {"label": ("label",), "category": ("category",), "number": ("number",), "year": ("year",),
                     "date": ("date",), "flag": ("flag",), "key": ("key",), "fk": ("fk",), "text": ("text", "label")}


@dataclass
class Domain:
    schema_text: str
    schema: Schema
    sampler: QuerySampler
    values: dict[str, list[Any]]

    def role(self, table: str, column: str) -> str | None:
        info = self.sampler.columns.get(table.lower(), {}).get(column.lower())
        return info.role if info else None

    def db_values(self, table: str, column: str) -> tuple[Any, ...]:
        info = self.sampler.columns.get(table.lower(), {}).get(column.lower())
        return info.values if info else ()


@dataclass(frozen=True)
class Template:
    """What a seed query uses: its tables in order of appearance, the columns it reads per table, the join
    equalities between tables, and its literals (with the column each is compared with)."""

    tables: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    joins: tuple[tuple[str, str, str, str], ...]
    repeated: bool


def _alias_for(table: str, taken: set[str]) -> str:
    words = name_words(table)
    options = ["".join(w[0] for w in words), table[:2].lower(), table[:3].lower(), table[:4].lower()]
    for option in options:
        if option and option not in taken:
            return option
    return f"t{len(taken) + 1}"


def template_of(seed: Seed) -> Template | None:
    tree = parse_sql(seed.sql)
    if tree is None:
        return None
    names = [t.name for t in tree.find_all(exp.Table)]
    tables = tuple(dict.fromkeys(n.lower() for n in names))
    columns: dict[str, list[str]] = defaultdict(list)
    for column in tree.find_all(exp.Column):
        resolved = resolve_column(column, seed.schema)
        if resolved is None:
            # a column alias used later (ORDER BY plays) has nothing to map; anything else unresolved gives up
            if column.table == "" and column.name and not seed.schema.table(column.name):
                continue
            return None
        table, name = resolved[0].lower(), resolved[1]
        if name not in columns[table]:
            columns[table].append(name)
    joins = []
    for eq in tree.find_all(exp.EQ):
        left, right = eq.this, eq.expression
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            a, b = resolve_column(left, seed.schema), resolve_column(right, seed.schema)
            if a and b:
                joins.append((a[0].lower(), a[1], b[0].lower(), b[1]))
    return Template(tables, {t: tuple(c) for t, c in columns.items()}, tuple(joins), len(names) > len(tables))


def _fk_between(schema: Schema, a: tuple[str, str], b: tuple[str, str]) -> bool:
    for fk in schema.foreign_keys:
        pair = {(fk.table.lower(), fk.column.lower()), (fk.ref_table.lower(), fk.ref_column.lower())}
        if pair == {(a[0].lower(), a[1].lower()), (b[0].lower(), b[1].lower())}:
            return True
    return False


def map_template(template: Template, source: Domain, target: Domain, rng: random.Random
                 ) -> dict[tuple[str, str], tuple[str, str]] | None:
    """(table, column) in the source -> (table, column) in the target, or None when no mapping fits."""
    target_tables = [t.name.lower() for t in target.schema.tables]
    orders = list(itertools.permutations(target_tables, len(template.tables)))
    rng.shuffle(orders)
    for order in orders[:60]:
        table_map = dict(zip(template.tables, order, strict=True))
        mapping: dict[tuple[str, str], tuple[str, str]] = {}
        ok = True
        for table in template.tables:
            for table_name, column in [(table, c) for c in template.columns.get(table, ())]:
                role = source.role(table_name, column)
                new_table = table_map[table_name]
                used = {c for (t, c) in mapping.values() if t == new_table}
                options = [c.name for c in target.schema.table(new_table).columns  # type: ignore[union-attr]
                           if target.role(new_table, c.name) in _COMPATIBLE_ROLES.get(role or "", ())
                           and c.name not in used]
                # prefer the same column name (name -> name, id -> id): the task's own habits
                same = [c for c in options if c.lower() == column.lower()]
                if not options:
                    ok = False
                    break
                mapping[(table_name, column)] = (new_table, same[0] if same else rng.choice(options))
            if not ok:
                break
        if not ok:
            continue
        joins_hold = all(_fk_between(target.schema, mapping.get((a, ac), ("", "")), mapping.get((b, bc), ("", "")))
                         for a, ac, b, bc in template.joins if _fk_between(source.schema, (a, ac), (b, bc)))
        if joins_hold and mapping and any(src != dst for src, dst in mapping.items()):
            return mapping
    return None


def rewrite_sql(seed: Seed, template: Template, mapping: dict[tuple[str, str], tuple[str, str]],
                values: dict[int, Any]) -> str | None:
    """The seed's SQL with tables, aliases, columns and literals replaced, token by token."""
    tree = parse_sql(seed.sql)
    if tree is None:
        return None
    table_map = {src[0]: dst[0] for src, dst in mapping.items()}
    for table in template.tables:
        if table not in table_map:
            return None
    aliases: dict[str, str] = {}
    taken: set[str] = set()
    for node in tree.find_all(exp.Table):
        if node.alias and node.alias.lower() not in aliases:
            new = node.alias if template.repeated else _alias_for(table_map[node.name.lower()], taken)
            aliases[node.alias.lower()] = new
            taken.add(new)
    alias_table = {node.alias.lower(): node.name.lower() for node in tree.find_all(exp.Table) if node.alias}
    tokens = list(Tokenizer().tokenize(seed.sql))
    pieces: list[str] = []
    position = 0
    for i, token in enumerate(tokens):
        start, end = token.start, token.end + 1
        text = seed.sql[start:end]
        new = text
        if token.token_type == TokenType.VAR:
            lower = text.lower()
            before_dot = i + 1 < len(tokens) and tokens[i + 1].token_type == TokenType.DOT
            after_dot = i > 0 and tokens[i - 1].token_type == TokenType.DOT
            if after_dot:
                qualifier = tokens[i - 2].text.lower() if i >= 2 else ""
                table = alias_table.get(qualifier, qualifier)
                new = mapping.get((table, _column_case(template, table, text)), (None, text))[1]
            elif (before_dot and lower in aliases) or lower in aliases:
                new = aliases[lower]
            elif lower in table_map:
                new = table_map[lower]
            else:
                owners = [t for t in template.tables if _column_case(template, t, text) is not None
                          and (t, _column_case(template, t, text)) in mapping]
                if owners:
                    new = mapping[(owners[0], _column_case(template, owners[0], text) or text)][1]
        elif token.token_type in (TokenType.STRING, TokenType.NUMBER) and start in values:
            new = _sql_literal(values[start])
        pieces.append(seed.sql[position:start] + new)
        position = end
    pieces.append(seed.sql[position:])
    return "".join(pieces)


def _column_case(template: Template, table: str, name: str) -> str | None:
    return next((c for c in template.columns.get(table, ()) if c.lower() == name.lower()), None)


def literal_choices(seed: Seed, mapping: dict[tuple[str, str], tuple[str, str]], target: Domain,
                    rng: random.Random) -> dict[int, Any] | None:
    """Token start -> new value for every literal compared with a column (None when one has no value)."""
    tree = parse_sql(seed.sql)
    if tree is None:
        return None
    chosen: dict[int, Any] = {}
    tokens = [t for t in Tokenizer().tokenize(seed.sql) if t.token_type in (TokenType.STRING, TokenType.NUMBER)]
    for use in query_literals(tree):
        if use.column is None or use.value is None or not use.must_mention:
            continue
        resolved = resolve_column(use.column, seed.schema)
        if resolved is None:
            return None
        new = mapping.get((resolved[0].lower(), resolved[1]))
        if new is None:
            return None
        pool = [v for v in target.values.get(f"{new[0]}.{new[1]}", []) if type(v) is type(use.value)]
        db = [v for v in target.db_values(*new) if type(v) is type(use.value)]
        taken = set(chosen.values())
        pool = [v for v in pool if v not in taken and v != use.value]
        db = [v for v in db if v not in taken and v != use.value]
        options = pool if pool and rng.random() < 0.7 else db or pool
        if not options:
            return None
        value = rng.choice(options)
        if isinstance(value, float) and not isinstance(use.value, float):
            return None
        if use.operator == "like" and isinstance(value, str):
            value = f"%{value}%"
        spelled = [t for t in tokens if t.text.replace("%", "") == str(use.value).replace("%", "")
                   and t.start not in chosen]
        if not spelled:
            return None
        chosen[spelled[0].start] = value
    return chosen


def transfer_question(seed: Seed, mapping: dict[tuple[str, str], tuple[str, str]],
                      old_values: Sequence[tuple[str, str]]) -> str:
    """The seed's question with table nouns, column words and values replaced."""
    question = seed.question
    replacements: list[tuple[str, str]] = list(old_values)
    for (table, column), (new_table, new_column) in mapping.items():
        if table != new_table:
            replacements += [(table_noun(table), table_noun(new_table)),
                             (table_noun(table, plural=False), table_noun(new_table, plural=False))]
        if column.lower() not in ("id", "name", "title") and column != new_column:
            replacements.append((" ".join(name_words(column)), " ".join(name_words(new_column))))
    # longest first, each place edited once
    placeholders: dict[str, str] = {}
    for k, (old, new) in enumerate(sorted(set(replacements), key=lambda p: -len(p[0]))):
        match = _find_once(question, old)
        if match is None:
            continue
        slot = f"\x00{k}\x00"
        placeholders[slot] = _same_case(match.group(0), new)
        question = question[:match.start()] + slot + question[match.end():]
    for slot, new in placeholders.items():
        question = question.replace(slot, new)
    return question


class SQLTransferStrategy(GenerationStrategy):
    """See the module docstring. ``same_domain`` is the chance of re-targeting within the seed's own schema."""

    name = "sql_transfer"

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord], *, database_seed: int = 0,
                 same_domain: float = 0.3):
        super().__init__(plugin, seeds)
        self.examples = load_seeds(plugin, self.seeds)
        self.same_domain = same_domain
        by_schema: dict[str, list[Seed]] = defaultdict(list)
        for seed in self.examples:
            by_schema[seed.schema_text].append(seed)
        self.domains: dict[str, Domain] = {}
        for text, group in by_schema.items():
            schema = group[0].schema
            sqls = [s.sql for s in group]
            conn = sandbox_database(schema, seed=database_seed, literal_pool=literal_pool(schema, sqls),
                                    literal_rows=literal_rows(schema, sqls))
            self.domains[text] = Domain(text, schema, QuerySampler(schema, conn), literal_pool(schema, sqls))
        self.writers: dict[str, int] = defaultdict(int)

    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        if category not in CATEGORY_PRIORITY:
            return Rejection("unknown_category", f"no text-to-SQL category {category!r}", category)
        pool = [s for s in self.examples if s.category == category]
        rng.shuffle(pool)
        for seed in pool[:40]:
            template = template_of(seed)
            if template is None:
                continue
            source = self.domains[seed.schema_text]
            others = [d for d in self.domains.values() if d is not source]
            target = source if rng.random() < self.same_domain or not others else rng.choice(others)
            mapping = map_template(template, source, target, rng)
            if mapping is None:
                continue
            values = literal_choices(seed, mapping, target, rng)
            if values is None:
                continue
            sql = rewrite_sql(seed, template, mapping, values)
            if sql is None or sql == seed.sql:
                continue
            result = run_query(target.sampler.conn, sql, max_rows=500)
            if not result.ok or not result.rows:
                continue
            old_values = self._old_values(seed, values)
            question = transfer_question(seed, mapping, old_values)
            writer = "transfer"
            if not faithfulness(question, sql, target.schema).ok:
                question = render_question(sql, target.schema, rng)
                writer = "renderer"
                if not faithfulness(question, sql, target.schema).ok:
                    continue
            template_seed = self._in_domain(seed, target)
            record = apply_edit(template_seed, Edit(question, sql, "transfer"))
            if self.plugin.categorize(record).primary != category:
                continue
            return Draft(category=category, messages=None, seed_ids=[seed.record.record_id],
                         state={"record": record.to_json_dict(), "writer": writer, "seed_question": seed.question,
                                "seed_sql": seed.sql, "same_domain": target is source})
        return Rejection("no_transfer", f"no {category} seed could be carried to another table", category)

    @staticmethod
    def _old_values(seed: Seed, values: dict[int, Any]) -> list[tuple[str, str]]:
        pairs = []
        for token in Tokenizer().tokenize(seed.sql):
            if token.start in values:
                old = token.text.replace("%", "").strip()
                pairs.append((old, str(values[token.start]).replace("%", "").strip()))
        return pairs

    def _in_domain(self, seed: Seed, target: Domain) -> Seed:
        """A seed of the target domain to carry the record's layout (its schema block and frame)."""
        if seed.schema_text == target.schema_text:
            return seed
        host = next(s for s in self.examples if s.schema_text == target.schema_text)
        return host

    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        record = FlockRecord.model_validate(draft.state["record"])
        return Candidate(record=record, category=draft.category,
                         provenance={"strategy": self.name, "writer": draft.state["writer"],
                                     "seed_ids": list(draft.seed_ids), "seed_question": draft.state["seed_question"],
                                     "seed_sql": draft.state["seed_sql"], "same_domain": draft.state["same_domain"]})
