"""Generation assembled once from plain settings (tools.generation_setup): a run without a generator model
completes every draft with the deterministic writers, keeps its dedup index for the next iteration, and a second
run of the same request resumes from the journal with the same rows."""

from __future__ import annotations

from pathlib import Path

from tools.backends import BackendSpec
from tools.data import load_jsonl
from tools.datastore import DataStore
from tools.generation_setup import assemble_generation
from tools.quality import DedupIndex
from tools.tasks import detect_plugin

DEMO = Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "text2sql"


def test_writers_only_generation_keeps_its_index_and_resumes(tmp_path: Path) -> None:
    seeds = load_jsonl(DEMO / "training_set.jsonl").records[:60]
    held_out = load_jsonl(DEMO / "validation_set.jsonl").records[:20]
    plugin = detect_plugin(seeds)
    index_path = tmp_path / "dedup_index.npz"

    def job():  # type: ignore[no-untyped-def]
        return assemble_generation(plugin, {"join": 3, "filter": 2}, seeds, backend=BackendSpec(), seed=1,
                                   batch_size=8, existing=seeds, held_out=held_out,
                                   store=DataStore(tmp_path / "store"), dedup_index_path=index_path,
                                   writers_only=True)

    first = job()
    result = first.run()
    assert first.backend.model_name == "none"
    assert {c: p.accepted for c, p in result.per_category.items()} == {"filter": 2, "join": 3}
    assert all(row.provenance.writer != "llm" and row.provenance.model == "none" for row in result.accepted)
    assert len(DedupIndex.load(index_path)) == len(seeds) + len(result.accepted)
    again = job().run()
    assert again.resumed_batches == result.batches
    assert again.records() == result.records()
