"""What a run says about itself, gathered for the report (agent/report.py renders it).

Sources: the run's final state (its last checkpoint), its trace, and its folder: ``config.json``, the generation
journals under ``data/store/journal/`` (every attempted synthetic row, accepted or rejected, with the gates'
verdicts) and, for local tasks, the simulator's adapter store under ``flock-sim/publisher/``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.config import RunConfig
from agent.pipeline.environment import local_adapter_store
from agent.state import BudgetUsage, DecisionRecord, EvalSummary, SubmissionInfo, placeholder_rationale
from agent.trace import TraceEvent
from memory.runs import RunPaths
from tools.data import FlockRecord
from tools.datastore import DataStore
from tools.generate import GeneratedRow

#: Which budget each stage spends (fields of BudgetUsage), for the per-stage table.
STAGE_BUDGET = {"generate": ("synthetic_examples", "generation_tokens"), "train": ("train_tokens",),
                "evaluate": ("iterations",), "submit": ("submissions",)}
#: Budget limits by the usage field they bound.
BUDGET_LIMITS = {"iterations": "max_iterations", "synthetic_examples": "max_synthetic_examples",
                 "generation_tokens": "max_generation_tokens", "train_tokens": "max_train_tokens",
                 "wall_seconds": "max_wall_seconds", "submissions": "max_submissions"}
#: Samples of synthetic rows shown per category: accepted rows, and rejected ones (one per reason first).
ACCEPTED_SAMPLES, REJECTED_SAMPLES = 2, 3
#: Longer texts in samples keep their start and end (a text-to-SQL prompt starts with the schema and ends with
#: the question).
TEXT_HEAD, TEXT_TAIL = 160, 260

HUB_URL = "https://huggingface.co"


def shorten(text: str) -> str:
    return text if len(text) <= TEXT_HEAD + TEXT_TAIL + 20 else f"{text[:TEXT_HEAD]} … {text[-TEXT_TAIL:]}"


class StageTime(BaseModel):
    stage: str
    runs: int
    seconds: float
    budget_used: dict[str, float] = Field(default_factory=dict, description="usage field -> amount spent")


class BudgetLine(BaseModel):
    resource: str
    used: float
    limit: float


class Publication(BaseModel):
    """Where one submitted adapter was published."""

    submission: SubmissionInfo
    hub_url: str | None = None
    local_path: str | None = None


class AdapterPlace(BaseModel):
    best_adapter: str | None
    local_path: str | None
    publications: list[Publication]


class SampleRow(BaseModel):
    iteration: int
    accepted: bool
    reason: str
    detail: str
    writer: str
    turns: list[tuple[str, str]] = Field(description="(role, shortened text) of each turn of the generated row")
    model_output: str | None = Field(default=None, description="what the model wrote, for a row without a record")


class CategorySamples(BaseModel):
    category: str
    accepted: int
    rejected_by_reason: dict[str, int]
    accepted_samples: list[SampleRow]
    rejected_samples: list[SampleRow]


class CategoryResult(BaseModel):
    category: str
    dev_examples: int | None = None
    test_examples: int | None = None
    dev_base_bpc: float | None = None
    dev_best_bpc: float | None = None
    test_base_bpc: float | None = None
    test_best_bpc: float | None = None
    metric_base: float | None = None
    metric_best: float | None = None


class TimelineEntry(BaseModel):
    seconds: float = Field(description="since the run started")
    iteration: int
    action: str
    targets: dict[str, int]
    source: str
    guardrail: str
    rationale: str
    placeholder: bool
    outcome: list[str]


class ReportData(BaseModel):
    run_id: str
    status: str
    task: dict[str, Any]
    wall_seconds: float = Field(description="first to last trace event, pauses between resumes included")
    resumes: int
    stages: list[StageTime]
    budget: list[BudgetLine]
    config: list[tuple[str, str]] = Field(description="every configuration setting, by dotted name")
    versions: dict[str, str]
    adapter: AdapterPlace
    samples: list[CategorySamples]
    journals_found: bool
    metric_name: str | None
    metric_split: str = Field(description="the split the task metric columns are measured on")
    results: list[CategoryResult]
    timeline: list[TimelineEntry]


def gather(state: dict[str, Any], events: list[TraceEvent], run_dir: Path) -> ReportData:
    raw_config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    config = RunConfig.model_validate(raw_config)
    usage = BudgetUsage.model_validate(state.get("usage") or {})
    start = next((e for e in events if e.type == "run_start"), None)
    samples, journals_found = synthetic_samples(run_dir)
    metric_name, metric_split, results = category_results(state)
    return ReportData(
        run_id=str(state.get("run_id") or run_dir.name),
        status=str(state.get("status") or "unknown"),
        task=state.get("task") or {},
        wall_seconds=round(events[-1].ts - events[0].ts, 1) if events else 0.0,
        resumes=sum(e.type == "run_resume" for e in events),
        stages=stage_times(events, usage),
        budget=[BudgetLine(resource=field, used=getattr(usage, field), limit=getattr(config.budget, limit))
                for field, limit in BUDGET_LIMITS.items()],
        config=flatten(raw_config),
        versions=dict(start.data.get("versions") or {}) if start else {},
        adapter=adapter_place(state, config, run_dir),
        samples=samples, journals_found=journals_found,
        metric_name=metric_name, metric_split=metric_split, results=results,
        timeline=decision_timeline(events),
    )


def stage_times(events: list[TraceEvent], usage: BudgetUsage) -> list[StageTime]:
    """Seconds and runs per graph node (from node_end events), with the budget each spent."""
    seconds: defaultdict[str, float] = defaultdict(float)
    runs: Counter[str] = Counter()
    for event in events:
        if event.type == "node_end" and event.node:
            seconds[event.node] += float(event.data.get("seconds") or 0.0)
            runs[event.node] += 1
    return [StageTime(stage=stage, runs=runs[stage], seconds=round(seconds[stage], 1),
                      budget_used={f: getattr(usage, f) for f in STAGE_BUDGET.get(stage, ())})
            for stage in runs]


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in flatten(item, f"{prefix}{key}.")]
    text = value if isinstance(value, str) else json.dumps(value)
    return [(prefix.rstrip("."), text)]


def adapter_place(state: dict[str, Any], config: RunConfig, run_dir: Path) -> AdapterPlace:
    """The best adapter's folder and, for each submission, the Hub page or the local store's folder it went to."""
    best = state.get("best_adapter")
    adapter = next((a for a in state.get("adapters", []) if a.get("adapter_id") == best), None)
    publications = []
    for raw in state.get("submissions", []):
        submission = SubmissionInfo.model_validate(raw)
        if config.publishes_to_hub:
            publications.append(Publication(submission=submission,
                                            hub_url=f"{HUB_URL}/{submission.repo_id}/tree/{submission.revision}"))
        else:
            folder = local_adapter_store(RunPaths(run_dir)) / submission.repo_id / submission.revision
            publications.append(Publication(submission=submission, local_path=str(folder)))
    return AdapterPlace(best_adapter=best, local_path=adapter.get("path") if adapter else None,
                        publications=publications)


def synthetic_samples(run_dir: Path) -> tuple[list[CategorySamples], bool]:
    """Per category: counts of accepted rows and of rejections by reason, and a few of each (rejections of
    different reasons first), from the generation journals. The flag says whether any journal was found."""
    store = DataStore(run_dir / "data" / "store")
    folders = sorted(store.journal_dir.iterdir()) if store.journal_dir.is_dir() else []
    rows: list[tuple[int, GeneratedRow]] = []
    for folder in folders:
        header = json.loads((folder / "header.json").read_text(encoding="utf-8"))
        for batch in store.journal(folder.name).batches():
            rows.extend((int(header.get("iteration", 0)), GeneratedRow.model_validate(r)) for r in batch["rows"])
    rows.sort(key=lambda item: (item[0], item[1].provenance.batch, item[1].provenance.attempt))
    by_category: dict[str, list[tuple[int, GeneratedRow]]] = {}
    for iteration, row in rows:
        by_category.setdefault(row.category, []).append((iteration, row))
    out = []
    for category in sorted(by_category):
        accepted = [(i, r) for i, r in by_category[category] if r.accepted]
        rejected = [(i, r) for i, r in by_category[category] if not r.accepted]
        first_of_reason = list({r.reason: (i, r) for i, r in reversed(rejected)}.values())[::-1]
        chosen = (first_of_reason + [x for x in rejected if x not in first_of_reason])[:REJECTED_SAMPLES]
        out.append(CategorySamples(
            category=category, accepted=len(accepted),
            rejected_by_reason=dict(Counter(r.reason for _, r in rejected).most_common()),
            accepted_samples=[_sample(i, r) for i, r in accepted[:ACCEPTED_SAMPLES]],
            rejected_samples=[_sample(i, r) for i, r in chosen]))
    return out, bool(folders)


def _sample(iteration: int, row: GeneratedRow) -> SampleRow:
    record: FlockRecord | None = row.record
    turns = [(t.role, shorten(t.content)) for t in record.conversations] if record is not None else []
    output = row.provenance.model_output
    return SampleRow(iteration=iteration, accepted=row.accepted, reason=row.reason, detail=row.detail,
                     writer=row.provenance.writer, turns=turns,
                     model_output=shorten(output) if output and record is None else None)


def category_results(state: dict[str, Any]) -> tuple[str | None, str, list[CategoryResult]]:
    """Per category (and overall): dev BPC of the base model and the best adapter, test BPC of both, and the task
    metric on test (on dev when the run has no test comparison)."""
    baseline = EvalSummary.model_validate(state["baseline"])
    best_id = state.get("best_adapter")
    best = next((EvalSummary.model_validate(e) for e in state.get("evaluations", []) if e["adapter_id"] == best_id),
                None)
    test = state.get("test_report") or {}
    test_base = EvalSummary.model_validate(test["base"]) if test.get("base") else None
    test_best = EvalSummary.model_validate(test["adapter"]) if test.get("adapter") else None
    metric_base, metric_best = (test_base, test_best) if test_base is not None else (baseline, best)
    metric_name, metric_split = metric_base.task_metric_name, metric_base.split

    def overall(summary: EvalSummary | None, attribute: str) -> Any:
        return getattr(summary, attribute) if summary is not None else None

    rows = [CategoryResult(category="overall", dev_base_bpc=baseline.bpc, dev_best_bpc=overall(best, "bpc"),
                           test_base_bpc=overall(test_base, "bpc"), test_best_bpc=overall(test_best, "bpc"),
                           metric_base=metric_base.task_metric, metric_best=overall(metric_best, "task_metric"),
                           dev_examples=sum(c.examples for c in baseline.per_category.values()),
                           test_examples=sum(c.examples for c in test_base.per_category.values())
                           if test_base else None)]
    categories = sorted({*(state.get("task") or {}).get("categories", {}), *baseline.per_category})
    for category in categories:
        def part(summary: EvalSummary | None, attribute: str, category: str = category) -> Any:
            scores = summary.per_category.get(category) if summary is not None else None
            return getattr(scores, attribute) if scores is not None else None

        rows.append(CategoryResult(
            category=category, dev_examples=part(baseline, "examples"), test_examples=part(test_base, "examples"),
            dev_base_bpc=part(baseline, "bpc"), dev_best_bpc=part(best, "bpc"),
            test_base_bpc=part(test_base, "bpc"), test_best_bpc=part(test_best, "bpc"),
            metric_base=part(metric_base, "task_metric"), metric_best=part(metric_best, "task_metric")))
    return metric_name, metric_split, rows


def decision_timeline(events: list[TraceEvent]) -> list[TimelineEntry]:
    """Every decision in order, with what followed it up to the next decision (rows generated, scores, errors)."""
    start = events[0].ts if events else 0.0
    entries: list[TimelineEntry] = []
    for event in events:
        if event.type == "decision":
            record = DecisionRecord.from_trace(event)
            rationale = record.decision.rationale
            entries.append(TimelineEntry(
                seconds=round(event.ts - start, 1), iteration=record.iteration, action=record.decision.action,
                targets=record.decision.targets, source=record.source, guardrail=record.guardrail,
                rationale=rationale,
                # The trace may already say so; older traces do not.
                placeholder=bool(event.data.get("rationale_placeholder")) or placeholder_rationale(rationale),
                outcome=[]))
        elif entries and (line := _outcome(event)):
            entries[-1].outcome.append(line)
    return entries


def _outcome(event: TraceEvent) -> str | None:
    data = event.data
    if event.type == "error":
        return f"error: {data.get('error')}"
    if event.type != "metrics":
        return None
    scope = data.get("scope")
    if scope == "generation":
        accepted = data.get("accepted") or {}
        rejected = data.get("rejected") or {}
        return (f"accepted {sum(accepted.values())} rows ({counts_text(accepted)}), rejected {sum(rejected.values())}"
                f"{f' ({counts_text(rejected)})' if rejected else ''}; stopped: {data.get('stop_reason')}")
    if scope == "adapter_dev":
        return (f"adapter {data.get('adapter_id')}: dev BPC {number(data.get('bpc'))} against "
                f"{number(data.get('reference_bpc'))} ({'a gain' if data.get('gained') else 'no gain'})")
    if scope == "submission":
        return (f"submitted {data.get('repo_id')}@{str(data.get('revision'))[:12]}: validation BPC "
                f"{number(data.get('validation_bpc'))} (base model {number(data.get('base_validation_bpc'))})")
    if scope == "test":
        return f"test BPC: base model {number(data.get('base_bpc'))}, best adapter {number(data.get('adapter_bpc'))}"
    return None


def number(value: Any) -> str:
    """A score as the report shows it: four decimals, or a dash when there is none."""
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def counts_text(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in counts.items())
