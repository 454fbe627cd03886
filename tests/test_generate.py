"""The generation engine: targets, budgets, provenance, determinism and resume, with a real (tiny) model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tools.backends import BackendSpec, LocalBackend, SamplingSettings
from tools.data import FlockRecord, load_jsonl
from tools.datastore import DataStore
from tools.generate import (
    BatchProgress,
    Budget,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    _Tally,
    generate,
    plan_batch,
)
from tools.quality import default_gates
from tools.tasks.base import Draft, Rejection
from tools.tasks.function_calling import FunctionCallingPlugin
from tools.tasks.function_calling.strategy import FunctionCallingStrategy

DEMO = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "function_calling" / "training_set.jsonl"
TARGETS = {"single_call": 2, "multi_call": 1, "no_call": 2}


@pytest.fixture(scope="module")
def seeds() -> list[FlockRecord]:
    return load_jsonl(DEMO).records


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> LocalBackend:
    return LocalBackend.from_pretrained(str(tiny_model_dir), batch_size=8, precision="float32")


def make_request(seeds: list[FlockRecord], tiny_model_dir: Path, **changes) -> GenerationRequest:
    fields = {
        "task": "function_calling", "targets": TARGETS, "seed_pool": seeds[:120],
        "backend": BackendSpec(model=str(tiny_model_dir), batch_size=8, precision="float32"),
        "sampling": SamplingSettings(temperature=0.8, max_new_tokens=4), "seed": 3, "iteration": 1,
        "batch_size": 2,
    }
    fields.update(changes)
    return GenerationRequest(**fields)


def run(request: GenerationRequest, seeds: list[FlockRecord], backend: LocalBackend, store: DataStore | None = None,
        progress=None) -> GenerationResult:
    """A fresh strategy and fresh gates each time, as a new process would build them."""
    plugin = FunctionCallingPlugin()
    gates = default_gates(plugin, existing=seeds[:120], held_out=seeds[120:])
    return generate(request, FunctionCallingStrategy(plugin, request.seed_pool), backend, gates, store, progress)


def rows_json(result: GenerationResult, *, timing: bool = False) -> list[str]:
    out = []
    for row in [*result.accepted, *result.rejected]:
        data = row.model_dump(mode="json")
        if not timing:
            data["provenance"].pop("timing")
            for gate in data["provenance"]["gates"]:
                gate.pop("seconds")
        out.append(json.dumps(data, sort_keys=True))
    return out


@pytest.fixture(scope="module")
def reference(seeds, backend, tiny_model_dir) -> GenerationResult:
    return run(make_request(seeds, tiny_model_dir), seeds, backend)


def test_targets_are_met_with_full_provenance(seeds, tiny_model_dir, reference) -> None:
    request = make_request(seeds, tiny_model_dir)
    result = reference
    assert result.stop_reason == "targets_met"
    assert {c: p.accepted for c, p in result.per_category.items()} == TARGETS
    plugin = FunctionCallingPlugin()
    for row in result.accepted:
        assert row.record is not None
        assert plugin.categorize(row.record).primary == row.category
        p = row.provenance
        assert p.strategy == "function_calling_seeded" and p.model == str(tiny_model_dir)
        assert p.prompt_id.startswith("function_calling_") and len(p.prompt_hash) == 16
        assert p.seed_ids and p.iteration == 1 and p.record_id == row.record.record_id
        assert p.writer in ("llm", "fallback", "mixed")
        assert [g.gate for g in p.gates] == ["format", "privacy", "validity", "category", "dedup",
                                             "decontamination"]
        assert all(g.passed for g in p.gates)
        assert {"draft", "model", "complete", "gates"} <= set(p.timing)
        assert p.model_output is not None
    assert all(row.reason and not row.accepted for row in result.rejected)
    assert result.completion_tokens > 0 and result.prompt_tokens > result.completion_tokens
    attempts = [r.provenance.attempt for r in [*result.accepted, *result.rejected]]
    assert len(set(attempts)) == len(attempts)
    assert all(a // request.batch_size == r.provenance.batch for a, r in
               zip(attempts, [*result.accepted, *result.rejected], strict=True))


def test_the_same_request_gives_the_same_rows(seeds, backend, tiny_model_dir, reference) -> None:
    request = make_request(seeds, tiny_model_dir)
    assert rows_json(run(request, seeds, backend)) == rows_json(reference)
    assert make_request(seeds, tiny_model_dir, seed=4).journal_key() != request.journal_key()


def test_an_interrupted_generation_resumes_to_identical_rows(seeds, backend, tiny_model_dir, tmp_path,
                                                             reference) -> None:
    request = make_request(seeds, tiny_model_dir)
    assert reference.batches >= 3

    class Crash(Exception):
        pass

    def crash_after_two(progress: BatchProgress) -> None:
        if progress.batch == 1:
            raise Crash

    store = DataStore(tmp_path / "interrupted")
    with pytest.raises(Crash):
        run(request, seeds, backend, store, crash_after_two)
    assert store.journal(request.journal_key()).count() == 2
    resumed = run(request, seeds, backend, store)
    assert resumed.resumed_batches == 2
    assert rows_json(resumed) == rows_json(reference)
    assert [r.record.to_json_line() for r in resumed.accepted if r.record] == \
        [r.record.to_json_line() for r in reference.accepted if r.record]
    again = run(request, seeds, backend, store)  # a finished journal replays without generating
    assert again.resumed_batches == again.batches and rows_json(again) == rows_json(reference)


def test_budgets_stop_generation_and_say_which(seeds, backend, tiny_model_dir) -> None:
    # A tiny random model never writes a usable plain-chat answer, and no_tools has no fallback writer.
    hopeless = run(make_request(seeds, tiny_model_dir, targets={"no_tools": 2}, budget=Budget(max_attempts=6)),
                   seeds, backend)
    assert hopeless.stop_reason == "max_attempts"
    assert sum(p.attempts for p in hopeless.per_category.values()) == 6  # 3 batches of 2
    assert {r.reason for r in hopeless.rejected} == {"writer_failed"}
    tokens = run(make_request(seeds, tiny_model_dir, targets={"no_tools": 2},
                              budget=Budget(max_generated_tokens=1)), seeds, backend)
    assert tokens.stop_reason == "max_generated_tokens" and tokens.batches == 1
    timed = run(make_request(seeds, tiny_model_dir, targets={"no_tools": 2}, budget=Budget(max_seconds=0.001)),
                seeds, backend)
    assert timed.stop_reason == "max_seconds" and timed.batches <= 1


def test_requests_are_validated(seeds, tiny_model_dir, backend) -> None:
    with pytest.raises(ValueError, match="targets must be >= 0"):
        make_request(seeds, tiny_model_dir, targets={"single_call": -1})
    with pytest.raises(ValueError, match="no positive target"):
        make_request(seeds, tiny_model_dir, targets={"single_call": 0})
    assert make_request(seeds, tiny_model_dir).budget.max_attempts == 20 * sum(TARGETS.values())
    with pytest.raises(GenerationError, match="unknown categories for task 'function_calling': join"):
        run(make_request(seeds, tiny_model_dir, targets={"join": 2}), seeds, backend)


def test_a_strategy_failing_on_every_attempt_stops_with_a_clear_error(seeds, backend, tiny_model_dir) -> None:
    class Broken(FunctionCallingStrategy):
        def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
            raise KeyError("schema")

    plugin = FunctionCallingPlugin()
    with pytest.raises(GenerationError, match="failed on every attempt of batch 0.*KeyError"):
        generate(make_request(seeds, tiny_model_dir), Broken(plugin, seeds), backend, default_gates(plugin))


def test_plan_batch_spreads_attempts_by_deficit_and_acceptance() -> None:
    tally = _Tally({"a": 4, "b": 2, "c": 0})
    assert plan_batch(tally, batch_size=10) == ["a", "b", "a", "b", "a", "a"]
    tally.per_category["a"].attempts, tally.per_category["a"].accepted = 9, 2  # a accepts ~30%
    slots = plan_batch(tally, batch_size=8)
    assert len(slots) == 8 and slots.count("a") > slots.count("b") >= 1
    assert plan_batch(tally, batch_size=3) == ["a", "b", "a"]
