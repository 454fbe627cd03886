"""Run reports: matplotlib PNGs and one self-contained HTML page (images inlined) that answers what a person asks
of a run: time and budget per stage, where the adapter went, the results per category, the timeline of decisions,
sample synthetic rows (accepted and rejected, with the gate's reason), the configuration and versions. The facts
come from agent/report_data.py."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from agent.report_data import ReportData, SampleRow, TimelineEntry, counts_text, gather, number
from agent.state import AdapterInfo, DatasetInfo, EvalSummary
from agent.trace import TraceEvent

PLOTS = ("dev_bpc.png", "dataset_composition.png", "acceptance.png", "loss_curves.png")


def _save(fig: Any, path: Path) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def plot_dev_bpc(baseline: EvalSummary, evaluations: list[EvalSummary], path: Path) -> bytes:
    """Dev BPC per category (and overall) for the base model (round 0) and each adapter."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    rounds = [baseline, *evaluations]
    xs = list(range(len(rounds)))
    for category in sorted(baseline.per_category):
        ys = [r.per_category[category].bpc if category in r.per_category else math.nan for r in rounds]
        ax.plot(xs, ys, marker="o", linewidth=1.2, label=category)
    ax.plot(xs, [r.bpc for r in rounds], color="black", linewidth=2.5, marker="s", label="overall")
    ax.set_xticks(xs, ["base", *[f"round {i}" for i in range(1, len(rounds))]])
    ax.set_ylabel("dev bits per byte (lower is better)")
    ax.set_title("Dev BPC per category over iterations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def plot_composition(datasets: list[DatasetInfo], path: Path) -> bytes:
    """Original vs synthetic examples per category for each dataset version."""
    categories = sorted({c for d in datasets for c in (*d.original_per_category, *d.synthetic_per_category)})
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(3.2 * max(1, len(datasets)), 3.8), sharey=True,
                             squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=False):
        original = [dataset.original_per_category.get(c, 0) for c in categories]
        synthetic = [dataset.synthetic_per_category.get(c, 0) for c in categories]
        ax.bar(categories, original, label="original", color="#4c72b0")
        ax.bar(categories, synthetic, bottom=original, label="synthetic", color="#dd8452")
        ax.set_title(f"dataset {dataset.version[:10]}", fontsize=9)
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    axes[0][0].set_ylabel("training examples")
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def plot_acceptance(generations: list[dict[str, Any]], path: Path) -> bytes:
    """Accepted rows and rejections per gate reason, summed over all generation rounds."""
    totals: dict[str, int] = {}
    accepted = 0
    for gen in generations:
        accepted += sum(gen.get("accepted_per_category", {}).values())
        for reason, count in gen.get("rejected_per_reason", {}).items():
            totals[reason] = totals.get(reason, 0) + count
    labels = ["accepted", *sorted(totals)]
    values = [accepted, *[totals[r] for r in sorted(totals)]]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.bar(labels, values, color=["#55a868", *["#c44e52"] * len(totals)])
    ax.set_ylabel("generated rows")
    ax.set_title("Quality gates: accepted rows and rejections by reason")
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    return _save(fig, path)


def plot_losses(adapters: list[AdapterInfo], path: Path) -> bytes:
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for adapter in adapters:
        if adapter.loss_curve:
            ax.plot(range(1, len(adapter.loss_curve) + 1), adapter.loss_curve, label=adapter.adapter_id)
    ax.set_xlabel("logged step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title("Training loss per adapter")
    ax.grid(alpha=0.3)
    if adapters:
        ax.legend(fontsize=8)
    return _save(fig, path)


def _table(headers: list[str], rows: list[list[Any]], table_id: str | None = None, kind: str | None = None) -> str:
    """A table (with an id and a class when given); a :class:`Markup` cell is kept as HTML, anything else is
    escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    where = (f' id="{table_id}"' if table_id else "") + (f' class="{kind}"' if kind else "")
    return f"<table{where}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """HTML built here from escaped parts, put into a page as is."""


def _cell(value: Any) -> str:
    return value if isinstance(value, Markup) else html.escape(number(value))


def _percent(share: float | None) -> str:
    return "—" if share is None else f"{100 * share:.1f}%"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _section(section_id: str, title: str, *parts: str) -> str:
    return f'<section id="{section_id}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def _summary(data: ReportData) -> str:
    task = data.task
    names = {k: html.escape(str(task.get(k, "?"))) for k in ("title", "task_type", "base_model")}
    agent_seconds = sum(s.seconds for s in data.stages)
    resumed = f", resumed {data.resumes} time{'s' if data.resumes != 1 else ''}" if data.resumes else ""
    return (f'<p id="summary">Task <b>{names["title"]}</b> ({names["task_type"]}), base model '
            f'<code>{names["base_model"]}</code>, status <b>{html.escape(data.status)}</b>. Wall clock '
            f"{_duration(data.wall_seconds)}{resumed}; the stages took {_duration(agent_seconds)}.</p>")


def _stages(data: ReportData) -> str:
    total = sum(s.seconds for s in data.stages) or 1.0
    stages = _table(["stage", "runs", "seconds", "share of stage time", "budget spent"],
                    [[s.stage, s.runs, f"{s.seconds:.1f}", f"{100 * s.seconds / total:.0f}%",
                      counts_text({k: _amount(v) for k, v in s.budget_used.items()})] for s in data.stages], "stages")
    budget = _table(["resource", "used", "limit", "share used"],
                    [[b.resource, _amount(b.used), _amount(b.limit),
                      f"{100 * b.used / b.limit:.0f}%" if b.limit else "—"] for b in data.budget], "budget")
    return _section("time-and-budget", "Time and budget per stage", stages,
                    "<h3>Budget used over the run</h3>", budget)


def _amount(value: float) -> str:
    return f"{value:,.1f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"


def _adapter(data: ReportData) -> str:
    place = data.adapter
    if place.best_adapter is None:
        return _section("adapter", "Where the adapter went", "<p>No adapter was trained.</p>")
    parts = [f"<p>Best adapter <code>{html.escape(place.best_adapter)}</code>, trained in "
             f"<code>{html.escape(place.local_path or '?')}</code>.</p>"]
    for publication in place.publications:
        submission = publication.submission
        name = html.escape(f"{submission.repo_id}@{submission.revision[:12]}")
        if publication.hub_url:
            where = (f'the Hugging Face Hub: <a class="hub-link" href="{html.escape(publication.hub_url)}">'
                     f"{name}</a>")
        else:
            where = (f"the FLock simulator's local adapter store as <code>{name}</code>, folder "
                     f'<code class="local-path">{html.escape(publication.local_path or "?")}</code>')
        scores = (f" Validation BPC {number(submission.validation_bpc)} (base model "
                  f"{number(submission.base_validation_bpc)})." if submission.validation_bpc is not None else "")
        parts.append(f"<p>Adapter <code>{html.escape(submission.adapter_id)}</code> was published to {where} and "
                     f"submitted to task {html.escape(str(submission.task_id))}.{scores}</p>")
    if not place.publications:
        parts.append("<p>It was not submitted.</p>")
    return _section("adapter", "Where the adapter went", *parts)


def _results(data: ReportData) -> str:
    metric = data.metric_name
    headers = ["category", "dev examples", "dev BPC base", "dev BPC best", "test examples", "test BPC base",
               "test BPC best", f"{metric or 'task metric'} base", f"{metric or 'task metric'} best"]
    rows = [[r.category, r.dev_examples, r.dev_base_bpc, r.dev_best_bpc, r.test_examples, r.test_base_bpc,
             r.test_best_bpc, _percent(r.metric_base), _percent(r.metric_best)] for r in data.results]
    note = (f"<p>The task metric is measured on the {data.metric_split} split (BPC: lower is better; the metric: "
            "higher is better).</p>" if metric else "<p>The task metric was not computed in this run "
            "(eval.task_metric is off); BPC only, lower is better.</p>")
    return _section("results", "Results per category", note, _table(headers, rows, "per-category"))


def _samples(data: ReportData) -> str:
    if not data.journals_found:
        return _section("samples", "Synthetic rows per category",
                        "<p>This run folder holds no generation journals (no rows were generated here).</p>")
    parts = []
    for group in data.samples:
        rejected = (f"; rejected {counts_text(group.rejected_by_reason)}" if group.rejected_by_reason
                    else "; none rejected")
        parts.append(f'<div class="category" data-category="{html.escape(group.category)}">'
                     f"<h3>{html.escape(group.category)}</h3><p>accepted {group.accepted}{html.escape(rejected)}</p>")
        for kind, rows in (("accepted", group.accepted_samples), ("rejected", group.rejected_samples)):
            if rows:
                parts.append(_table(["iteration", "writer", "verdict", "row"],
                                    [[r.iteration, r.writer or "—", _verdict(r), _row_text(r)] for r in rows],
                                    kind=f"{kind}-rows"))
        parts.append("</div>")
    return _section("samples", "Synthetic rows per category", *parts)


def _verdict(row: SampleRow) -> Markup:
    if row.accepted:
        return Markup('<span class="accepted">accepted</span>')
    detail = f": {html.escape(row.detail)}" if row.detail else ""
    return Markup(f'<span class="rejected">rejected by <b class="reason">{html.escape(row.reason)}</b>{detail}'
                  "</span>")


def _row_text(row: SampleRow) -> Markup:
    if not row.turns:
        return Markup(f"<i>no record</i>; the model wrote: <pre>{html.escape(row.model_output or '')}</pre>")
    return Markup("".join(f'<div class="turn"><b>{html.escape(role)}</b><pre>{html.escape(text)}</pre></div>'
                          for role, text in row.turns))


def _timeline(data: ReportData) -> str:
    rows = [[f"+{_duration(e.seconds)}", e.iteration, e.action, counts_text(e.targets) or "—", e.source,
             e.guardrail, _rationale(e), Markup("<br/>".join(html.escape(line) for line in e.outcome))]
            for e in data.timeline]
    return _section("decisions", "Timeline of decisions",
                    _table(["at", "iteration", "action", "targets", "source", "guardrail", "rationale",
                            "what followed"], rows, "timeline"))


def _rationale(entry: TimelineEntry) -> Markup:
    if entry.placeholder:
        shown = html.escape(repr(entry.rationale))
        return Markup(f'<span class="placeholder-rationale">placeholder rationale ({shown}): the planner gave no '
                      "reason</span>")
    return Markup(html.escape(entry.rationale))


def _settings(data: ReportData) -> str:
    return _section("config", "Configuration and versions",
                    _table(["setting", "value"], [list(row) for row in data.config], "config"),
                    "<h3>Versions</h3>", _table(["package", "version"], [list(v) for v in data.versions.items()],
                                                "versions"))


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;"
         "vertical-align:top;text-align:left}pre{white-space:pre-wrap;margin:0;font-size:12px}img{max-width:100%}"
         ".rejected{color:#a02020}.accepted{color:#207020}.placeholder-rationale{color:#a05000;font-style:italic}"
         ".turn{margin-bottom:4px}#timeline td:first-child{white-space:nowrap}")


def write_report(state: dict[str, Any], events: list[TraceEvent], out_dir: Path, run_dir: Path | None = None) -> Path:
    """Write the PNGs and report.html into ``out_dir``; returns the HTML path. ``run_dir`` is the run's folder
    (default: the folder above ``out_dir``, where a run keeps its report)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = gather(state, events, run_dir or out_dir.parent)
    baseline = EvalSummary.model_validate(state["baseline"])
    evaluations = [EvalSummary.model_validate(e) for e in state.get("evaluations", [])]
    datasets = [DatasetInfo.model_validate(d) for d in state.get("datasets", [])]
    adapters = [AdapterInfo.model_validate(a) for a in state.get("adapters", [])]
    generations = [e.data.get("result", {}) for e in events
                   if e.type == "tool_result" and e.data.get("tool") == "generate"]
    images = {
        "dev_bpc.png": plot_dev_bpc(baseline, evaluations, out_dir / "dev_bpc.png"),
        "dataset_composition.png": plot_composition(datasets, out_dir / "dataset_composition.png"),
        "acceptance.png": plot_acceptance(generations, out_dir / "acceptance.png"),
        "loss_curves.png": plot_losses(adapters, out_dir / "loss_curves.png"),
    }
    figures = "".join(f'<figure><img alt="{name}" src="data:image/png;base64,'
                      f'{base64.b64encode(image).decode("ascii")}"/></figure>' for name, image in images.items())
    sections = [f"<h1>SynthGen run {html.escape(data.run_id)}</h1>", _summary(data), _stages(data), _adapter(data),
                _results(data), _timeline(data), _samples(data), _section("plots", "Plots", figures),
                _settings(data)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>SynthGen run {html.escape(data.run_id)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
