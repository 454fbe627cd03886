"""Content-addressed shards, version manifests and the generation journal."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from tools.data import FlockRecord
from tools.datastore import DataStore, DataStoreError, records_to_bytes


def record(question: str, answer: str = "SELECT 1") -> FlockRecord:
    return FlockRecord.model_validate({"conversations": [{"role": "user", "content": question},
                                                         {"role": "assistant", "content": answer}]})


@pytest.fixture
def store(tmp_path: Path) -> DataStore:
    return DataStore(tmp_path / "store")


def test_shard_name_is_the_sha256_of_its_bytes_and_writing_twice_is_a_no_op(store: DataStore) -> None:
    records = [record("a?"), record("b?")]
    ref = store.put_shard(records, kind="base")
    path = store.shard_path(ref.sha256)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    assert path.read_bytes() == records_to_bytes(records)
    mtime = path.stat().st_mtime_ns
    again = store.put_shard(records, kind="base")
    assert again == ref
    assert path.stat().st_mtime_ns == mtime
    assert ref.count == 2


def test_version_round_trip_with_provenance(store: DataStore) -> None:
    base = store.put_shard([record("a?"), record("b?")], kind="base")
    synthetic_records = [record("c?"), record("d?")]
    provenance = [{"strategy": "s", "record_id": r.record_id} for r in synthetic_records]
    synthetic = store.put_shard(synthetic_records, kind="synthetic", provenance=provenance)
    store.save_version("v0", [base])
    manifest = store.save_version("v1", [base, synthetic], parent="v0", meta={"iteration": 1})
    loaded = store.load_version("v1")
    assert [r.first_user_text() for r in loaded.records] == ["a?", "b?", "c?", "d?"]
    assert loaded.provenance == [None, None, *provenance]
    assert loaded.kinds == ["base", "base", "synthetic", "synthetic"]
    assert loaded.synthetic() == synthetic_records
    assert loaded.manifest.content_hash() == manifest.content_hash()
    assert store.versions() == ["v0", "v1"]


def test_saving_the_same_version_again_is_idempotent_but_different_data_is_refused(store: DataStore) -> None:
    a = store.put_shard([record("a?")], kind="base")
    b = store.put_shard([record("b?")], kind="synthetic")
    store.save_version("v1", [a, b])
    store.save_version("v1", [a, b], meta={"note": "rerun after a crash"})
    with pytest.raises(DataStoreError, match="already exists with different data"):
        store.save_version("v1", [a])
    # An earlier pass of the same work (same request) may be superseded.
    store.save_version("v2", [a], meta={"request": "r1"})
    grown = store.save_version("v2", [a, b], meta={"request": "r1"},
                               replace_if=lambda old: old.meta.get("request") == "r1")
    assert store.manifest("v2") == grown and grown.count == 2
    with pytest.raises(DataStoreError, match="already exists with different data"):
        store.save_version("v2", [b], meta={"request": "r2"}, replace_if=lambda old: old.meta.get("request") == "r2")


def test_corrupted_shard_is_detected_and_named(store: DataStore) -> None:
    ref = store.put_shard([record("a?")], kind="base")
    store.save_version("v0", [ref])
    path = store.shard_path(ref.sha256)
    path.write_bytes(path.read_bytes().replace(b"a?", b"b?"))
    with pytest.raises(DataStoreError, match=rf"{ref.sha256}\.jsonl: content hash .* does not match"):
        store.load_version("v0")


def test_missing_version_parent_and_shard_are_clear_errors(store: DataStore, tmp_path: Path) -> None:
    ref = store.put_shard([record("a?")], kind="base")
    with pytest.raises(DataStoreError, match="no version 'nope'.*known: none"):
        store.load_version("nope")
    with pytest.raises(DataStoreError, match="parent version 'v9' does not exist"):
        store.save_version("v1", [ref], parent="v9")
    other = DataStore(tmp_path / "other")
    with pytest.raises(DataStoreError, match="is not in the store"):
        other.save_version("v1", [ref])
    with pytest.raises(DataStoreError, match="bad version name"):
        store.save_version("../escape", [ref])
    with pytest.raises(DataStoreError, match="empty shard"):
        store.put_shard([], kind="base")


def test_failed_write_leaves_the_previous_version_intact(store: DataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    base = store.put_shard([record("a?")], kind="base")
    store.save_version("v0", [base])
    before = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.put_shard([record("new?")], kind="synthetic")
    monkeypatch.undo()
    after = {p: p.read_bytes() for p in store.root.rglob("*") if p.is_file()}
    assert after == before  # no partial shard, no temp file left behind
    assert [r.first_user_text() for r in store.load_version("v0").records] == ["a?"]


def test_journal_is_ordered_bound_to_its_request_and_reports_bad_batches(store: DataStore) -> None:
    journal = store.journal("ab" * 16)
    journal.directory.mkdir(parents=True)
    (journal.directory / ".batch-000000.json.x1.tmp").write_text("torn")  # a writer killed mid-write
    journal.bind({"seed": 1})
    assert not list(journal.directory.glob("*.tmp"))
    journal.bind({"seed": 1})
    journal.write(0, {"rows": [1]})
    journal.write(1, {"rows": [2]})
    with pytest.raises(DataStoreError, match="out of order"):
        journal.write(3, {"rows": []})
    assert [b["rows"] for b in journal.batches()] == [[1], [2]]
    with pytest.raises(DataStoreError, match="different generation request"):
        store.journal("ab" * 16).bind({"seed": 2})
    journal.batch_path(1).write_text("{not json")
    with pytest.raises(DataStoreError, match=r"batch-000001\.json: unreadable journal batch"):
        list(journal.batches())
    with pytest.raises(DataStoreError, match="bad journal key"):
        store.journal("../x")
