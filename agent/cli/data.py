"""``synthgen profile``: validate a FLock JSONL file and show what is in it."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agent.cli.common import SkipBadLines, console, fail
from tools.data import DataValidationError, FlockRecord, load_jsonl
from tools.demo_tasks import DEMO_TASKS
from tools.tasks import detect_plugin, get_plugin


def profile(
    file: Annotated[Path | None, typer.Argument(metavar="FILE", help="FLock JSONL file (default: demo training "
                                                                     "set)")] = None,
    tokenizer: Annotated[str | None, typer.Option(metavar="MODEL", help="Tokenizer for token counts: Hub id, folder "
                                                                        "or GGUF")] = None,
    task_type: Annotated[str | None, typer.Option(metavar="text2sql|function_calling|chat", help="Task type "
                                                  "(default: detect)")] = None,
    skip_bad_lines: SkipBadLines = False,
) -> None:
    """Validate a FLock JSONL file and print counts per category, token lengths and problems."""
    path = file or DEMO_TASKS["demo"] / "training_set.jsonl"
    try:
        report = load_jsonl(path, strict=not skip_bad_lines)
    except DataValidationError as exc:
        raise fail(str(exc)) from None
    plugin = get_plugin(task_type).fit(report.records) if task_type else detect_plugin(report.records)

    console.print(f"[bold]{path}[/]: {len(report.records)} records, task type [cyan]{plugin.name}[/], "
                  f"sha256 {report.sha256[:12]}")
    table = Table(title="Examples per primary category")
    table.add_column("category")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    table.add_column("description")
    descriptions = plugin.categories()
    counts = plugin.primary_counts(report.records)
    for name, count in counts.items():
        table.add_row(name, str(count), f"{count / max(1, len(report.records)):.1%}", descriptions.get(name, ""))
    console.print(table)

    lengths = _token_lengths(report.records, tokenizer)
    if lengths:
        unit, values = lengths
        stats = Table(title=f"Length per record ({unit})")
        for column in ("min", "median", "mean", "p95", "max"):
            stats.add_column(column, justify="right")
        ordered = sorted(values)
        stats.add_row(str(ordered[0]), f"{statistics.median(ordered):.0f}", f"{statistics.fmean(ordered):.1f}",
                      str(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]), str(ordered[-1]))
        console.print(stats)

    if report.issues:
        problems = Table(title=f"{report.skipped} lines skipped")
        problems.add_column("line", justify="right")
        problems.add_column("field")
        problems.add_column("problem")
        for issue in report.issues:
            problems.add_row(str(issue.line), issue.field, issue.message)
        console.print(problems)
    else:
        console.print("[green]no validation problems[/]")


def _token_lengths(records: list[FlockRecord], tokenizer_spec: str | None) -> tuple[str, list[int]] | None:
    """Token counts with the named tokenizer; whitespace words when none is named."""
    if tokenizer_spec is None:
        return "words", [sum(len(t.content.split()) for t in r.conversations) + len((r.system or "").split())
                         for r in records]
    from tools.models import load_tokenizer

    tok = load_tokenizer(tokenizer_spec)
    texts = [(r.system or "") + "\n" + "\n".join(t.content for t in r.conversations) for r in records]
    return f"tokens, {tokenizer_spec}", [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
