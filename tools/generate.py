"""The generation engine: targeted, batched, gated and resumable synthetic data generation.

:func:`generate` keeps drafting examples for the categories still short of their targets, in deterministic
batches: batch ``k`` holds attempt indices ``[k*B, (k+1)*B)`` and its random generator is seeded from
``(seed, iteration, k)``. Each batch's drafts go to the backend in one batched call; completed candidates pass
through the quality gates in attempt order; accepted rows teach the stateful gates (dedup) before the next
candidate is checked. Every finished batch is journaled atomically, so a killed generation resumes at the next
batch and ends with exactly the rows an uninterrupted run would have produced.

Determinism contract: given the same request, a strategy whose ``draft`` depends only on its arguments, gates
built from the same data, and a backend that is deterministic for a fixed (batch, seed), the accepted and
rejected rows are identical, with or without interruptions. Only the timings in provenance differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tools.backends import Backend, BackendSpec, Generation, SamplingSettings, derive_seed, timed_generate
from tools.data import FlockRecord
from tools.datastore import BatchJournal, DataStore
from tools.quality import GateResult, GateSuite
from tools.tasks.base import Candidate, Draft, GenerationStrategy, Rejection

StopReason = Literal["targets_met", "max_attempts", "max_generated_tokens", "max_seconds"]
MODEL_OUTPUT_CHARS = 1000


class GenerationError(RuntimeError):
    """Generation cannot continue (e.g. a strategy fails on every attempt of a batch)."""


class Budget(BaseModel):
    """Limits on one generation; None means unlimited (max_attempts defaults to 20x the total target).

    Each limit is checked before a batch starts, so a run may pass a limit by the last batch's share.
    """

    model_config = ConfigDict(frozen=True)

    max_attempts: int | None = Field(None, ge=1)
    max_generated_tokens: int | None = Field(None, ge=1)
    max_seconds: float | None = Field(None, gt=0)


class GenerationRequest(BaseModel):
    """What to generate: per-category targets for one task, from a seed pool, with one backend."""

    model_config = ConfigDict(frozen=True)

    task: str
    targets: dict[str, int]
    seed_pool: list[FlockRecord] = Field(min_length=1)
    backend: BackendSpec = BackendSpec()
    sampling: SamplingSettings = SamplingSettings()
    budget: Budget = Budget()
    seed: int = 0
    iteration: int = Field(0, ge=0)
    #: Attempts per batch (B).
    batch_size: int = Field(16, ge=1, le=4096)

    @field_validator("targets")
    @classmethod
    def _targets_valid(cls, targets: dict[str, int]) -> dict[str, int]:
        for name, count in targets.items():
            if count < 0:
                raise ValueError(f"target for {name!r} is {count}; targets must be >= 0")
        if not any(targets.values()):
            raise ValueError("no positive target: nothing to generate")
        return dict(sorted(targets.items()))

    @model_validator(mode="after")
    def _default_attempts(self) -> GenerationRequest:
        if self.budget.max_attempts is None:
            default = 20 * sum(self.targets.values())
            object.__setattr__(self, "budget", self.budget.model_copy(update={"max_attempts": default}))
        return self

    def identity(self) -> dict[str, Any]:
        """Everything that determines the rows (not the budget, which may grow on resume)."""
        return {
            "task": self.task,
            "targets": self.targets,
            "seed_ids": [r.record_id for r in self.seed_pool],  # in order: strategies draw from lists
            "backend": {"kind": self.backend.kind, "model": self.backend.model, "base_url": self.backend.base_url,
                        "batch_size": self.backend.batch_size, "precision": self.backend.precision},
            "sampling": self.sampling.model_dump(),
            "seed": self.seed,
            "iteration": self.iteration,
            "batch_size": self.batch_size,
        }

    def journal_key(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class Provenance(BaseModel):
    """Where a row came from and what the gates said about it."""

    strategy: str = Field(description="the name of the generation strategy")
    writer: str = Field("", description='who wrote the row: "llm", a deterministic writer, or "mixed"')
    prompt_id: str = ""
    prompt_hash: str = ""
    model: str = ""
    seed_ids: list[str] = Field(default_factory=list)
    iteration: int = 0
    batch: int = 0
    attempt: int = 0
    category: str = ""
    record_id: str | None = None
    gates: list[GateResult] = Field(default_factory=list)
    #: What the model wrote for this attempt (cut to MODEL_OUTPUT_CHARS), to see why a writer fell back.
    model_output: str | None = None
    #: Seconds: draft, model (this row's share of the batch call), complete, gates.
    timing: dict[str, float] = Field(default_factory=dict)
    extras: dict[str, Any] = Field(default_factory=dict)


class GeneratedRow(BaseModel):
    """An accepted or rejected attempt. Rejections before a record existed have ``record`` None."""

    record: FlockRecord | None
    category: str
    accepted: bool
    reason: str = "accepted"
    detail: str = ""
    provenance: Provenance


class CategoryProgress(BaseModel):
    target: int
    accepted: int = 0
    attempts: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.attempts if self.attempts else 0.0


class GenerationResult(BaseModel):
    accepted: list[GeneratedRow]
    rejected: list[GeneratedRow]
    per_category: dict[str, CategoryProgress]
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    stop_reason: StopReason
    batches: int
    resumed_batches: int = 0

    def records(self) -> list[FlockRecord]:
        return [row.record for row in self.accepted if row.record is not None]


class BatchProgress(BaseModel):
    """Reported after each batch."""

    batch: int
    attempts: int
    accepted: int
    per_category: dict[str, CategoryProgress]
    completion_tokens: int
    seconds: float


class _Tally:
    """Running totals, rebuilt from the journal on resume."""

    def __init__(self, targets: dict[str, int]):
        self.per_category = {c: CategoryProgress(target=n) for c, n in targets.items()}
        self.accepted: list[GeneratedRow] = []
        self.rejected: list[GeneratedRow] = []
        self.attempts = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seconds = 0.0
        self.batches = 0

    def add_batch(self, payload: dict[str, Any]) -> list[GeneratedRow]:
        rows = [GeneratedRow.model_validate(r) for r in payload["rows"]]
        for row in rows:
            progress = self.per_category.setdefault(row.category, CategoryProgress(target=0))
            progress.attempts += 1
            if row.accepted:
                progress.accepted += 1
                self.accepted.append(row)
            else:
                progress.rejected[row.reason] = progress.rejected.get(row.reason, 0) + 1
                self.rejected.append(row)
        self.attempts += int(payload["attempts"])
        self.prompt_tokens += int(payload["prompt_tokens"])
        self.completion_tokens += int(payload["completion_tokens"])
        self.seconds += float(payload["seconds"])
        self.batches += 1
        return rows

    def deficits(self) -> dict[str, int]:
        return {c: p.target - p.accepted for c, p in self.per_category.items() if p.target > p.accepted}


def plan_batch(tally: _Tally, batch_size: int) -> list[str]:
    """Categories of the next batch's attempts: each short category gets about ``deficit / acceptance rate``
    attempts (smoothed), scaled down to fit the batch, interleaved so no category waits for another."""
    deficits = tally.deficits()
    want: dict[str, int] = {}
    for category, deficit in deficits.items():
        progress = tally.per_category[category]
        rate = max(0.05, (progress.accepted + 1) / (progress.attempts + 1))
        want[category] = math.ceil(deficit / rate)
    room = batch_size
    total = sum(want.values())
    if total > room:
        floor = {c: (1 if room >= len(want) else 0) for c in want}
        spare = room - sum(floor.values())
        shares = {c: spare * w / total for c, w in want.items()}
        alloc = {c: floor[c] + int(shares[c]) for c in want}
        leftover = room - sum(alloc.values())
        for category in sorted(want, key=lambda c: (-(shares[c] - int(shares[c])), c))[:leftover]:
            alloc[category] += 1
        want = alloc
    slots: list[str] = []
    remaining = dict(want)
    while any(remaining.values()):
        for category in sorted(remaining):
            if remaining[category] > 0:
                slots.append(category)
                remaining[category] -= 1
    return slots


def _stop_reason(request: GenerationRequest, tally: _Tally, elapsed: float) -> StopReason | None:
    budget = request.budget
    if not tally.deficits():
        return "targets_met"
    if budget.max_attempts is not None and tally.attempts >= budget.max_attempts:
        return "max_attempts"
    if budget.max_generated_tokens is not None and tally.completion_tokens >= budget.max_generated_tokens:
        return "max_generated_tokens"
    if budget.max_seconds is not None and elapsed >= budget.max_seconds:
        return "max_seconds"
    return None


def generate(
    request: GenerationRequest,
    strategy: GenerationStrategy,
    backend: Backend,
    gates: GateSuite,
    store: DataStore | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
) -> GenerationResult:
    """Generate until every target is met or a budget runs out. With a store, finished batches are journaled
    and a previous interrupted run of the same request is resumed."""
    known = strategy.plugin.categories()
    unknown = sorted(set(request.targets) - set(known))
    if unknown:
        raise GenerationError(f"unknown categories for task {request.task!r}: {', '.join(unknown)}; "
                              f"known: {', '.join(known)}")
    tally = _Tally(request.targets)
    journal: BatchJournal | None = None
    if store is not None:
        journal = store.journal(request.journal_key())
        journal.bind(request.identity())
        for payload in journal.batches():
            for row in tally.add_batch(payload):
                if row.accepted and row.record is not None:
                    gates.observe(row.record)
    resumed = tally.batches
    session_start = time.perf_counter()
    prior_seconds = tally.seconds
    while True:
        stop = _stop_reason(request, tally, prior_seconds + time.perf_counter() - session_start)
        if stop is not None:
            break
        # Budgets are checked between batches and never shape a batch, so a run stopped by its budget and
        # resumed with a larger one makes exactly the batches of an uninterrupted run.
        categories = plan_batch(tally, request.batch_size)
        batch_start = time.perf_counter()
        rows, usage = _run_batch(request, strategy, backend, gates, tally, tally.batches, categories)
        payload = {
            "batch": tally.batches,
            "attempts": len(categories),
            "rows": [row.model_dump(mode="json") for row in rows],
            "prompt_tokens": sum(g.prompt_tokens for g in usage),
            "completion_tokens": sum(g.completion_tokens for g in usage),
            "seconds": round(time.perf_counter() - batch_start, 6),
        }
        if journal is not None:
            journal.write(tally.batches, payload)
        tally.add_batch(payload)
        if progress is not None:
            progress(BatchProgress(batch=tally.batches - 1, attempts=tally.attempts, accepted=len(tally.accepted),
                                   per_category=tally.per_category, completion_tokens=tally.completion_tokens,
                                   seconds=tally.seconds))
    return GenerationResult(
        accepted=tally.accepted, rejected=tally.rejected, per_category=tally.per_category,
        prompt_tokens=tally.prompt_tokens, completion_tokens=tally.completion_tokens,
        seconds=round(tally.seconds, 6), stop_reason=stop, batches=tally.batches, resumed_batches=resumed,
    )


def _run_batch(
    request: GenerationRequest,
    strategy: GenerationStrategy,
    backend: Backend,
    gates: GateSuite,
    tally: _Tally,
    k: int,
    categories: Sequence[str],
) -> tuple[list[GeneratedRow], list[Generation]]:
    """Draft, generate (one batched call), complete and gate one batch; accepted rows update the gates."""
    rng = random.Random(derive_seed(request.seed, request.iteration, k))
    first_attempt = k * request.batch_size

    def base_provenance(j: int, category: str) -> Provenance:
        return Provenance(strategy=strategy.name, model=backend.model_name, iteration=request.iteration, batch=k,
                          attempt=first_attempt + j, category=category)

    drafts: list[Draft | Rejection] = []
    draft_seconds: list[float] = []
    for category in categories:
        start = time.perf_counter()
        try:
            drafted = strategy.draft(category, rng)
        except Exception as exc:
            drafted = Rejection("strategy_error", f"draft: {type(exc).__name__}: {exc}", category)
        drafts.append(drafted)
        draft_seconds.append(time.perf_counter() - start)
    if drafts and all(isinstance(d, Rejection) and d.reason == "strategy_error" for d in drafts):
        first = drafts[0]
        assert isinstance(first, Rejection)
        raise GenerationError(f"strategy {strategy.name!r} failed on every attempt of batch {k} "
                              f"(first: {first.category}: {first.detail}); finished batches are kept")

    wanted = [i for i, d in enumerate(drafts) if isinstance(d, Draft) and d.messages is not None]
    generations: list[Generation] = []
    model_share = 0.0
    if wanted:
        batch_messages = [drafts[i].messages for i in wanted]  # type: ignore[union-attr]
        generations, model_seconds = timed_generate(
            backend, batch_messages, request.sampling,  # type: ignore[arg-type]
            derive_seed(request.seed, request.iteration, k, "model"))
        model_share = model_seconds / len(wanted)
    texts: dict[int, str] = {i: g.text for i, g in zip(wanted, generations, strict=True)}

    accepted_now: Counter[str] = Counter()
    rows: list[GeneratedRow] = []
    for j, (category, drafted) in enumerate(zip(categories, drafts, strict=True)):
        provenance = base_provenance(j, category)
        provenance.timing["draft"] = round(draft_seconds[j], 6)
        if isinstance(drafted, Rejection):
            provenance.extras.update(drafted.provenance)
            rows.append(GeneratedRow(record=None, category=category, accepted=False, reason=drafted.reason,
                                     detail=drafted.detail, provenance=provenance))
            continue
        provenance.prompt_id, provenance.prompt_hash = drafted.prompt_id, drafted.prompt_hash
        provenance.seed_ids = list(drafted.seed_ids)
        if j in texts:
            provenance.timing["model"] = round(model_share, 6)
            provenance.model_output = texts[j][:MODEL_OUTPUT_CHARS]
        start = time.perf_counter()
        try:
            completed = strategy.complete(drafted, texts.get(j))
        except Exception as exc:
            completed = Rejection("strategy_error", f"complete: {type(exc).__name__}: {exc}", category)
        provenance.timing["complete"] = round(time.perf_counter() - start, 6)
        rows.append(_judge(completed, category, provenance, gates, tally, accepted_now))
    return rows, generations


def _judge(completed: Candidate | Rejection, category: str, provenance: Provenance, gates: GateSuite,
           tally: _Tally, accepted_now: Counter[str]) -> GeneratedRow:
    """Gate a completed attempt; surplus candidates (their category already full) are not gated."""
    if isinstance(completed, Rejection):
        provenance.extras.update(completed.provenance)
        provenance.writer = str(completed.provenance.get("writer", ""))
        return GeneratedRow(record=None, category=category, accepted=False, reason=completed.reason,
                            detail=completed.detail, provenance=provenance)
    extras = dict(completed.provenance)
    provenance.writer = str(extras.pop("writer", ""))
    for key in ("strategy", "prompt_id", "prompt_hash", "seed_ids"):
        extras.pop(key, None)
    provenance.extras.update(extras)
    progress = tally.per_category[category]
    if progress.accepted + accepted_now[category] >= progress.target:
        provenance.record_id = completed.record.record_id
        return GeneratedRow(record=completed.record, category=category, accepted=False, reason="surplus",
                            detail="category target already met", provenance=provenance)
    start = time.perf_counter()
    outcome = gates.run(completed.record, category)
    provenance.timing["gates"] = round(time.perf_counter() - start, 6)
    provenance.gates = outcome.results
    provenance.record_id = outcome.record.record_id
    if not outcome.passed:
        failure = outcome.failure
        assert failure is not None
        return GeneratedRow(record=outcome.record, category=category, accepted=False, reason=failure.reason,
                            detail=failure.detail, provenance=provenance)
    gates.observe(outcome.record)
    accepted_now[category] += 1
    return GeneratedRow(record=outcome.record, category=category, accepted=True, provenance=provenance)
