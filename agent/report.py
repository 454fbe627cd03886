"""Run reports: matplotlib PNGs and one self-contained HTML page (images inlined), built from a run's final
state (its last checkpoint) and its trace."""

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

from agent.state import AdapterInfo, DatasetInfo, DecisionRecord, EvalSummary
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


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _targets(targets: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in targets.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return "—"
    return str(value)


def write_report(state: dict[str, Any], events: list[TraceEvent], out_dir: Path) -> Path:
    """Write the PNGs and report.html into ``out_dir``; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline = EvalSummary.model_validate(state["baseline"])
    evaluations = [EvalSummary.model_validate(e) for e in state.get("evaluations", [])]
    datasets = [DatasetInfo.model_validate(d) for d in state.get("datasets", [])]
    adapters = [AdapterInfo.model_validate(a) for a in state.get("adapters", [])]
    decisions = [DecisionRecord.model_validate(d) for d in state.get("decisions", [])]
    generations = [e.data.get("result", {}) for e in events
                   if e.type == "tool_result" and e.data.get("tool") == "generate"]
    images = {
        "dev_bpc.png": plot_dev_bpc(baseline, evaluations, out_dir / "dev_bpc.png"),
        "dataset_composition.png": plot_composition(datasets, out_dir / "dataset_composition.png"),
        "acceptance.png": plot_acceptance(generations, out_dir / "acceptance.png"),
        "loss_curves.png": plot_losses(adapters, out_dir / "loss_curves.png"),
    }
    sections = [f"<h1>SynthGen run {html.escape(str(state.get('run_id', out_dir.parent.name)))}</h1>"]
    task = state.get("task", {})
    esc = {k: html.escape(str(task.get(k, ""))) for k in ("title", "task_type", "base_model")}
    sections.append(f"<p>Task <b>{esc['title']}</b> ({esc['task_type']}), base model {esc['base_model']}, "
                    f"status {html.escape(str(state.get('status')))}.</p>")
    test = state.get("test_report")
    if test:
        base_test = EvalSummary.model_validate(test["base"])
        adapter_test = EvalSummary.model_validate(test["adapter"]) if test.get("adapter") else None
        rows = [["overall", base_test.bpc, adapter_test.bpc if adapter_test else None, test["deltas"].get("overall")]]
        for category in sorted(base_test.per_category):
            after = adapter_test.per_category.get(category) if adapter_test else None
            rows.append([category, base_test.per_category[category].bpc, after.bpc if after else None,
                         test["deltas"].get(category)])
        if base_test.task_metric_name:
            rows.append([base_test.task_metric_name, base_test.task_metric,
                         adapter_test.task_metric if adapter_test else None,
                         test["deltas"].get(base_test.task_metric_name)])
        sections.append("<h2>Test split: base model vs best adapter (BPC, lower is better)</h2>")
        sections.append(_table(["category", "base", "best adapter", "delta"], rows))
    for submission in state.get("submissions", []):
        where = html.escape(f"{submission['repo_id']}@{submission['revision'][:12]}")
        sections.append(f"<p>Submitted <code>{where}</code>: validation BPC {_fmt(submission.get('validation_bpc'))} "
                        f"(base model {_fmt(submission.get('base_validation_bpc'))}).</p>")
    for name, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        sections.append(f'<figure><img alt="{name}" src="data:image/png;base64,{encoded}"/></figure>')
    sections.append("<h2>Decisions</h2>")
    sections.append(_table(["iteration", "action", "targets", "source", "guardrail", "rationale"],
                           [[d.iteration, d.decision.action, _targets(d.decision.targets), d.source, d.guardrail,
                             d.decision.rationale] for d in decisions]))
    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
             "img{max-width:100%}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>SynthGen report</title><style>{style}</style>" \
           f"</head><body>{''.join(sections)}</body></html>"
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
