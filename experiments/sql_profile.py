"""How far synthetic text-to-SQL rows are from the task's own: surface statistics of questions and SQL.

Per row: question length and opening, phrases the grammar writer uses and people rarely do, SQL length, selected
columns, conditions, aliases, literal values and whether the training SQL ever compares that column with that
value, and the query's *skeleton* (literals replaced by ``?``). Per set: means and shares, and how many of a
reference set's skeletons the set covers.

    PYTHONPATH=$PWD python -m experiments.sql_profile experiments/data/text2sql-sql_first-split0.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from tools.sql.literals import literal_pool, parse_sql, query_literals, resolve_column
from tools.sql.schema import parse_schema
from tools.strategies.text2sql import question_of

from tools.data import FlockRecord
from tools.tasks.text2sql import clean_sql, parse_prompt

#: Phrases of the grammar writer (tools.sql.render) that the demo's hand-written questions rarely use.
RENDERER_PHRASES = ("whose", "showing only", "where the", "marked as", "is greater than", "is less than",
                    "considering only", "ordered by", "sorted by", "largest first", "smallest first", "the mean",
                    "belong to", "appear both", "at least the", "(only the first")
_LITERAL = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


def skeleton(sql: str) -> str:
    """The query with string and number literals replaced by ``?`` and whitespace collapsed."""
    return re.sub(r"\s+", " ", _LITERAL.sub("?", sql)).strip()


@dataclass(frozen=True)
class RowProfile:
    question_words: int
    opening: str
    renderer_phrases: int
    sql_chars: int
    select_columns: int
    conditions: int
    multi_table: bool
    aliased: bool
    literals: int
    literals_in_pool: int
    skeleton: str


def profile_row(record: FlockRecord, pools: dict[str, dict[str, list[Any]]]) -> RowProfile:
    question = question_of(record)
    sql = clean_sql(record.assistant_texts()[-1])
    schema_text = parse_prompt(record.first_user_text()).schema
    tree = parse_sql(sql)
    words = question.split()
    select_columns = conditions = literals = in_pool = 0
    multi = aliased = False
    if tree is not None:
        top = tree if isinstance(tree, exp.Select) else tree.find(exp.Select)
        if top is not None:
            select_columns = len(top.expressions)
            tables = [t for t in top.find_all(exp.Table) if t.parent_select is top]
            multi = len(tables) > 1
            aliased = multi and all(t.alias for t in tables)
        conditions = len(list(tree.find_all(exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.In,
                                            exp.Between)))
        schema = parse_schema(schema_text)
        pool = pools.get(schema_text, {})
        for use in query_literals(tree):
            if use.column is None or not use.must_mention:
                continue
            literals += 1
            resolved = resolve_column(use.column, schema)
            if resolved is not None and use.value in pool.get(f"{resolved[0]}.{resolved[1]}", []):
                in_pool += 1
    lowered = question.lower()
    return RowProfile(
        question_words=len(words), opening=" ".join(words[:2]) if words else "",
        renderer_phrases=sum(lowered.count(p) for p in RENDERER_PHRASES), sql_chars=len(sql),
        select_columns=select_columns, conditions=conditions, multi_table=multi, aliased=aliased,
        literals=literals, literals_in_pool=in_pool, skeleton=skeleton(sql))


def training_pools(train: Sequence[FlockRecord]) -> dict[str, dict[str, list[Any]]]:
    """schema text -> ``table.column`` -> values the training SQL compares that column with (literal_pool)."""
    by_schema: dict[str, list[str]] = {}
    for record in train:
        by_schema.setdefault(parse_prompt(record.first_user_text()).schema, []).append(
            clean_sql(record.assistant_texts()[-1]))
    return {text: literal_pool(parse_schema(text), sqls) for text, sqls in by_schema.items()}


def profile_set(rows: Sequence[FlockRecord], train: Sequence[FlockRecord],
                reference: Sequence[FlockRecord] | None = None) -> dict[str, Any]:
    pools = training_pools(train)
    profiles = [profile_row(r, pools) for r in rows]
    n = len(profiles)
    literals = sum(p.literals for p in profiles)
    openings = Counter(p.opening for p in profiles).most_common(6)
    summary: dict[str, Any] = {
        "rows": n,
        "question_words_mean": round(statistics.fmean(p.question_words for p in profiles), 1),
        "renderer_phrases_per_row": round(statistics.fmean(p.renderer_phrases for p in profiles), 2),
        "sql_chars_mean": round(statistics.fmean(p.sql_chars for p in profiles), 1),
        "select_columns_mean": round(statistics.fmean(p.select_columns for p in profiles), 2),
        "conditions_mean": round(statistics.fmean(p.conditions for p in profiles), 2),
        "aliased_share_of_multi_table": round(sum(p.aliased for p in profiles)
                                              / max(1, sum(p.multi_table for p in profiles)), 2),
        "literals_per_row": round(literals / n, 2),
        "literal_in_training_pool_share": round(sum(p.literals_in_pool for p in profiles) / max(1, literals), 2),
        "top_openings": [f"{o} ({c / n:.0%})" for o, c in openings],
        "distinct_skeletons": len({p.skeleton for p in profiles}),
    }
    train_skeletons = {profile_row(r, pools).skeleton for r in train}
    summary["skeletons_seen_in_train_share"] = round(sum(p.skeleton in train_skeletons for p in profiles) / n, 2)
    if reference is not None:
        mine = {p.skeleton for p in profiles}
        ref = [profile_row(r, pools).skeleton for r in reference]
        summary["reference_skeletons_covered"] = round(sum(s in mine for s in ref) / len(ref), 2)
        summary["reference_skeletons_covered_by_train"] = round(sum(s in train_skeletons for s in ref) / len(ref), 2)
    return summary


def main(argv: list[str] | None = None) -> None:
    from experiments.harness import load_rows, task_splits

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="JSONL files of synthetic rows")
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args(argv)
    splits = task_splits("text2sql", args.split_seed)
    reference = splits["dev"] + splits["test"]
    table = {"train (real)": profile_set(splits["train"], splits["train"], reference),
             "dev+test (real)": profile_set(reference, splits["train"], reference)}
    for path in args.files:
        table[path] = profile_set(load_rows(path), splits["train"], reference)
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
