"""The diversity and balance report."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from tools.data import FlockRecord
from tools.diversity import (
    SentenceEmbedder,
    build_report,
    distinct_n,
    mean_pairwise_distance,
    render_report,
    report_json,
)
from tools.generate import CategoryProgress, GeneratedRow, GenerationResult, Provenance
from tools.quality import GateResult
from tools.tasks.chat import ChatPlugin


def chat(user: str, assistant: str) -> FlockRecord:
    return FlockRecord.model_validate({"conversations": [{"role": "user", "content": user},
                                                         {"role": "assistant", "content": assistant}]})


def test_distinct_n() -> None:
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n([], 1) == 0.0


def test_mean_pairwise_distance() -> None:
    same = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert mean_pairwise_distance(same) == pytest.approx(0.0)
    orthogonal = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert mean_pairwise_distance(orthogonal) == pytest.approx(1.0)
    assert mean_pairwise_distance(same[:1]) == 0.0


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    try:
        return SentenceEmbedder.packaged()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_packaged_embedder_separates_topics(embedder: SentenceEmbedder) -> None:
    vectors = embedder.embed(["How do I bake bread?", "What is a good bread recipe?", "Explain black holes."])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_report_counts_gates_categories_and_diversity(embedder: SentenceEmbedder) -> None:
    seeds = [chat("How do I bake bread?", "Mix flour, water, yeast and salt, knead, rise, then bake."),
             chat("What is a prime number?", "A whole number above 1 divisible only by 1 and itself.")]
    accepted_record = chat("Why is the sea salty?", "Rivers carry dissolved minerals into the sea over ages.")
    passed = [GateResult(gate="format", passed=True), GateResult(gate="dedup", passed=True)]
    accepted = GeneratedRow(record=accepted_record, category="short", accepted=True,
                            provenance=Provenance(strategy="s", writer="llm", gates=passed))
    duplicate = GeneratedRow(record=seeds[0], category="short", accepted=False, reason="duplicate",
                             provenance=Provenance(strategy="s", writer="llm", gates=[
                                 GateResult(gate="format", passed=True),
                                 GateResult(gate="dedup", passed=False, reason="duplicate")]))
    failed = GeneratedRow(record=None, category="short", accepted=False, reason="writer_failed",
                          provenance=Provenance(strategy="s", writer="llm"))
    result = GenerationResult(
        accepted=[accepted], rejected=[duplicate, failed],
        per_category={"short": CategoryProgress(target=1, accepted=1, attempts=3,
                                                rejected={"duplicate": 1, "writer_failed": 1})},
        prompt_tokens=100, completion_tokens=40, seconds=1.5, stop_reason="targets_met", batches=1)
    report = build_report(result, seeds, ChatPlugin().fit(seeds), "demo", {"short": 1}, embedder)
    assert report.categories_before == {"short": 2, "medium": 0, "long": 0}
    assert report.categories_after["short"] == 3
    assert report.acceptance["short"]["rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert report.rejection_reasons == {"duplicate": 1, "writer_failed": 1}
    assert report.gates["format"].run == 2 and report.gates["format"].pass_rate == 1.0
    assert report.gates["dedup"].reasons == {"duplicate": 1}
    assert report.writers == {"llm": 3}
    assert report.text["generated"].count == 1 and 0 < report.text["seed"].distinct_2 <= 1
    assert report.embedding is not None and 0 < report.embedding.novelty < 1
    data = report_json(report)
    assert data["gates"]["dedup"]["pass_rate"] == 0.5
    console = Console(file=io.StringIO(), width=160)
    render_report(report, console)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "Quality gates" in printed and "duplicate x1" in printed and "novelty" in printed
