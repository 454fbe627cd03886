"""Pools of synthetic rows for the experiments: a strategy's rows, through the project's quality gates.

Any :class:`tools.strategies.base.GenerationStrategy` works (the package's SQL-first strategy, or the prototypes
in this folder); rows the strategy wants a model for are finished without one (``model_text=None``: the
grammar writer), which is what the agent gets from SmolLM2 for most rows anyway (PITFALLS.md). Gates: format,
privacy, validity, category, dedup against the training split and earlier rows, decontamination against dev and
test, exactly as the agent runs them.

    PYTHONPATH=$PWD python -m experiments.pools sql_first --task text2sql --split-seed 0 --per-category 150
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.strategies.base import Candidate, GenerationStrategy

from experiments.harness import EXPERIMENTS, _plugin, task_splits
from tools.data import FlockRecord

StrategyFactory = Callable[[Any, Sequence[FlockRecord], int], GenerationStrategy]


def _sql_first(plugin: Any, seeds: Sequence[FlockRecord], seed: int) -> GenerationStrategy:
    from tools.strategies.text2sql import Text2SQLStrategy

    return Text2SQLStrategy(plugin, seeds, database_seed=seed)


def _fc_default(plugin: Any, seeds: Sequence[FlockRecord], seed: int) -> GenerationStrategy:
    from tools.strategies.function_calling import FunctionCallingStrategy

    return FunctionCallingStrategy(plugin, seeds)


def _voice(plugin: Any, seeds: Sequence[FlockRecord], seed: int) -> GenerationStrategy:
    from experiments.sql_voice import VoiceSQLStrategy

    return VoiceSQLStrategy(plugin, seeds, database_seed=seed)


def _transfer(plugin: Any, seeds: Sequence[FlockRecord], seed: int) -> GenerationStrategy:
    from experiments.sql_transfer import SQLTransferStrategy

    return SQLTransferStrategy(plugin, seeds, database_seed=seed)


def _mutate_sql(plugin: Any, seeds: Sequence[FlockRecord], seed: int) -> GenerationStrategy:
    from experiments.sql_mutate import SQLMutationStrategy

    return SQLMutationStrategy(plugin, seeds)


def _mutate_fc(plugin: Any, seeds: Sequence[FlockRecord], seed: int) -> GenerationStrategy:
    from experiments.fc_mutate import FCMutationStrategy

    return FCMutationStrategy(plugin, seeds)


STRATEGIES: dict[str, StrategyFactory] = {
    "sql_first": _sql_first, "fc_default": _fc_default, "voice": _voice, "transfer": _transfer,
    "mutate_sql": _mutate_sql, "mutate_fc": _mutate_fc,
}


def build_pool(strategy: GenerationStrategy, targets: dict[str, int], train: Sequence[FlockRecord],
               held_out: Sequence[FlockRecord], seed: int, *, max_tries: int = 20,
               near_duplicate: float | None = None) -> tuple[list[Candidate], Counter[str]]:
    """Up to ``targets[c]`` gated rows per category, drafts interleaved over categories. ``near_duplicate``
    sets the MinHash similarity above which a row counts as a near-duplicate (mutations of real rows are near
    copies by design: they need a higher threshold than the gate's default)."""
    from tools.quality import DedupIndex, default_gates

    index = DedupIndex(threshold=near_duplicate) if near_duplicate is not None else None
    gates = default_gates(strategy.plugin, existing=train, held_out=held_out, dedup_index=index)
    rng = random.Random(seed)
    accepted: list[Candidate] = []
    rejected: Counter[str] = Counter()
    have: Counter[str] = Counter()
    tries: Counter[str] = Counter()
    while True:
        open_ = [c for c, n in targets.items() if have[c] < n and tries[c] < n * max_tries]
        if not open_:
            break
        for category in open_:
            tries[category] += 1
            draft = strategy.draft(category, rng)
            if not hasattr(draft, "messages"):
                rejected[f"{category}:{draft.reason}"] += 1
                continue
            done = strategy.complete(draft, None)
            if not isinstance(done, Candidate):
                rejected[f"{category}:{done.reason}"] += 1
                continue
            verdict = gates.run(done.record, category)
            if not verdict.passed:
                failure = verdict.failure
                rejected[f"{category}:{failure.reason if failure else 'gate'}"] += 1
                continue
            gates.observe(verdict.record)
            accepted.append(Candidate(verdict.record, done.category, done.provenance))
            have[category] += 1
    return accepted, rejected


def write_pool(rows: Sequence[Candidate], path: Path) -> None:
    """Rows in FLock JSONL, and their provenance beside them (``.prov.jsonl``), in a seeded shuffled order so
    that the first n rows are a uniform sample over the categories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out, path.with_suffix(".prov.jsonl").open("w") as prov:
        for row in rows:
            out.write(row.record.to_json_line() + "\n")
            prov.write(json.dumps({"category": row.category, **row.provenance}, default=str) + "\n")


def interleave(rows: Sequence[Candidate], seed: int) -> list[Candidate]:
    """Round-robin over categories (each shuffled), so any prefix is as uniform over categories as it can be."""
    rng = random.Random(seed)
    by: dict[str, list[Candidate]] = {}
    for row in rows:
        by.setdefault(row.category, []).append(row)
    for group in by.values():
        rng.shuffle(group)
    order: list[Candidate] = []
    while any(by.values()):
        for category in sorted(by):
            if by[category]:
                order.append(by[category].pop())
    return order


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("strategy", choices=sorted(STRATEGIES))
    parser.add_argument("--task", default="text2sql")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--per-category", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--near-duplicate", type=float,
                        help="MinHash near-duplicate threshold (default: the gate's)")
    args = parser.parse_args(argv)
    splits = task_splits(args.task, args.split_seed)
    plugin = _plugin(args.task)
    strategy = STRATEGIES[args.strategy](plugin, splits["train"], args.seed)
    targets = dict.fromkeys(plugin.categories(), args.per_category)
    rows, rejected = build_pool(strategy, targets, splits["train"], splits["dev"] + splits["test"], args.seed,
                                  near_duplicate=args.near_duplicate)
    out = args.out or EXPERIMENTS / "data" / f"{args.task}-{args.strategy}-split{args.split_seed}.jsonl"
    write_pool(interleave(rows, args.seed), out)
    print(json.dumps({"out": str(out), "accepted": dict(Counter(r.category for r in rows)),
                      "rejected": dict(rejected.most_common())}, indent=1))


if __name__ == "__main__":
    main()
