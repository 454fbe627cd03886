"""Base model against adapter: everything measured for each, and the per-category, per-metric table of deltas."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel

from tools.evaluate import FlockScore, TaskMetricsReport

OVERALL = "overall"
LOWER_IS_BETTER = frozenset({"bpc", "eval_loss"})


class ComparisonRow(BaseModel):
    category: str
    metric: str
    base: float
    adapter: float
    delta: float
    improved: bool


class Comparison(BaseModel):
    """Base vs adapter, per category and metric; ``delta`` = adapter - base."""

    rows: list[ComparisonRow]

    def to_markdown(self) -> str:
        lines = ["| category | metric | base | adapter | delta |", "|---|---|---:|---:|---:|"]
        for r in self.rows:
            mark = " (better)" if r.improved else ""
            lines.append(f"| {r.category} | {r.metric} | {r.base:.4f} | {r.adapter:.4f} | {r.delta:+.4f}{mark} |")
        return "\n".join(lines)

    def to_rich_table(self) -> Any:
        from rich.table import Table

        table = Table(title="Base vs adapter")
        for column in ("category", "metric", "base", "adapter", "delta"):
            table.add_column(column, justify="left" if column in ("category", "metric") else "right")
        for r in self.rows:
            style = "green" if r.improved else ("red" if r.delta != 0 else "")
            table.add_row(r.category, r.metric, f"{r.base:.4f}", f"{r.adapter:.4f}",
                          f"[{style}]{r.delta:+.4f}[/]" if style else f"{r.delta:+.4f}")
        return table


class EvalReport(BaseModel):
    """Everything measured for one model: FLock's score and/or generation metrics."""

    flock: FlockScore | None = None
    tasks: TaskMetricsReport | None = None

    def values(self) -> dict[str, dict[str, float]]:
        """category -> metric -> value, with ``overall`` first."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        if self.flock is not None:
            out[OVERALL]["bpc"] = self.flock.bpc
            for category, score in self.flock.per_category.items():
                out[category]["bpc"] = score.bpc
        if self.tasks is not None:
            out[OVERALL].update(self.tasks.overall)
            for category, metrics in self.tasks.per_category.items():
                out[category].update(metrics)
        return dict(out)


def compare_reports(base: EvalReport, adapter: EvalReport) -> Comparison:
    """Per-category, per-metric table of base vs adapter with deltas (only what both reports measured)."""
    base_values, adapter_values = base.values(), adapter.values()
    categories = [OVERALL, *sorted(c for c in base_values if c != OVERALL)]
    rows = []
    for category in categories:
        if category not in adapter_values:
            continue
        for metric, before in base_values[category].items():
            if metric not in adapter_values[category]:
                continue
            after = adapter_values[category][metric]
            delta = after - before
            improved = delta < 0 if metric in LOWER_IS_BETTER else delta > 0
            rows.append(ComparisonRow(category=category, metric=metric, base=before, adapter=after, delta=delta,
                                      improved=improved))
    return Comparison(rows=rows)
