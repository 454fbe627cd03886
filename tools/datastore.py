"""Versioned, content-addressed datasets and the generation journal.

Layout under a store root::

    shards/<sha256>.jsonl              FLock records; the file name is the sha256 of the file's bytes
    shards/<sha256>.provenance.jsonl   one provenance object per record, same order (not content-addressed:
                                       it holds timings, which differ between otherwise identical runs)
    versions/<name>.json               a manifest: the shards that make up the version, in order
    journal/<key>/batch-000000.json    one file per finished generation batch (see tools.generate)

A version is base data plus accepted synthetic shards. Every file is written to a temporary name, fsynced and
renamed, so a crash or a full disk leaves the previous state intact, and writing the same content twice is a
no-op: a killed run that redoes its last step produces the same files and hashes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.data import DataValidationError, FlockRecord, load_jsonl
from tools.fileio import atomic_write_bytes

_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_JOURNAL_KEY = re.compile(r"^[0-9a-f]{8,64}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


class DataStoreError(RuntimeError):
    """The store on disk is inconsistent (a missing or corrupted file) or was asked something impossible."""


def _named(folder: Path, name: str, suffix: str, pattern: re.Pattern[str], problem: str) -> Path:
    """``folder/<name><suffix>`` once ``name`` matches ``pattern`` (so it cannot reach outside the folder);
    otherwise ``problem`` (with ``{!r}`` for the name) as the error."""
    if not pattern.match(name):
        raise DataStoreError(problem.format(name))
    return folder / f"{name}{suffix}"


def records_to_bytes(records: Sequence[FlockRecord]) -> bytes:
    """The canonical JSONL bytes of records (what shards hold and what their hash covers)."""
    return "".join(r.to_json_line() + "\n" for r in records).encode("utf-8")


class ShardRef(BaseModel):
    """One shard of a version."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    count: int
    kind: Literal["base", "synthetic"]


class VersionManifest(BaseModel):
    """A dataset version: an ordered list of shards, plus free-form metadata (iteration, request hash, ...)."""

    name: str
    parent: str | None = None
    shards: list[ShardRef]
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    def content_hash(self) -> str:
        """Hash of the shard list alone: two versions with the same data have the same content hash."""
        joined = "\n".join(f"{s.kind}:{s.sha256}" for s in self.shards)
        return hashlib.sha256(joined.encode()).hexdigest()


class DatasetVersion(BaseModel):
    """A version loaded back: records in shard order, with each record's provenance (None for base data)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    manifest: VersionManifest
    records: list[FlockRecord]
    provenance: list[dict[str, Any] | None]
    kinds: list[Literal["base", "synthetic"]]

    def synthetic(self) -> list[FlockRecord]:
        return [r for r, k in zip(self.records, self.kinds, strict=True) if k == "synthetic"]


class DataStore:
    """Content-addressed shards, version manifests and generation journals under one root folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        self.version_dir = self.root / "versions"
        self.journal_dir = self.root / "journal"

    # ----- shards ------------------------------------------------------------------------------------------
    def shard_path(self, sha256: str) -> Path:
        return _named(self.shard_dir, sha256, ".jsonl", _SHA, "not a shard hash: {!r}")

    def put_shard(
        self,
        records: Sequence[FlockRecord],
        *,
        kind: Literal["base", "synthetic"],
        provenance: Sequence[dict[str, Any]] | None = None,
    ) -> ShardRef:
        """Store records as a shard (idempotent: the same records give the same file and hash)."""
        if not records:
            raise DataStoreError("refusing to write an empty shard")
        if provenance is not None and len(provenance) != len(records):
            raise DataStoreError(f"{len(provenance)} provenance rows for {len(records)} records")
        data = records_to_bytes(records)
        sha = hashlib.sha256(data).hexdigest()
        path = self.shard_path(sha)
        if not path.exists():
            atomic_write_bytes(path, data)
        prov_path = path.with_suffix(".provenance.jsonl")
        if provenance is not None and not prov_path.exists():
            lines = "".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in provenance)
            atomic_write_bytes(prov_path, lines.encode("utf-8"))
        return ShardRef(sha256=sha, count=len(records), kind=kind)

    def read_shard(self, ref: ShardRef) -> tuple[list[FlockRecord], list[dict[str, Any]] | None]:
        """Records (verified against the shard's hash) and provenance of one shard."""
        path = self.shard_path(ref.sha256)
        if not path.is_file():
            raise DataStoreError(f"{path}: shard file is missing")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != ref.sha256:
            raise DataStoreError(f"{path}: content hash {digest[:12]} does not match its name (file corrupted)")
        try:
            records = load_jsonl(path).records
        except DataValidationError as exc:
            raise DataStoreError(f"shard {ref.sha256[:12]} is not valid FLock JSONL: {exc}") from None
        if len(records) != ref.count:
            raise DataStoreError(f"{path}: holds {len(records)} records, manifest says {ref.count}")
        prov_path = path.with_suffix(".provenance.jsonl")
        if not prov_path.is_file():
            return records, None
        provenance = []
        for line_no, line in enumerate(prov_path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                provenance.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataStoreError(f"{prov_path}:{line_no}: bad JSON ({exc.msg})") from None
        if len(provenance) != len(records):
            raise DataStoreError(f"{prov_path}: {len(provenance)} rows for {len(records)} records")
        return records, provenance

    # ----- versions ----------------------------------------------------------------------------------------
    def version_path(self, name: str) -> Path:
        return _named(self.version_dir, name, ".json", _VERSION_NAME,
                      "bad version name {!r}: use letters, digits, '.', '_' or '-' (max 64)")

    def save_version(
        self,
        name: str,
        shards: Sequence[ShardRef],
        *,
        parent: str | None = None,
        meta: dict[str, Any] | None = None,
        replace_if: Callable[[VersionManifest], bool] | None = None,
    ) -> VersionManifest:
        """Write a version manifest. Saving identical shards again is a no-op; different shards are refused,
        unless ``replace_if(existing)`` says the existing version is an earlier pass of the same work (e.g. a
        generation stopped by its budget and then resumed with a larger one)."""
        for ref in shards:
            if not self.shard_path(ref.sha256).is_file():
                raise DataStoreError(f"version {name!r}: shard {ref.sha256[:12]} is not in the store")
        if parent is not None and not self.version_path(parent).is_file():
            raise DataStoreError(f"version {name!r}: parent version {parent!r} does not exist")
        manifest = VersionManifest(name=name, parent=parent, shards=list(shards), meta=dict(meta or {}))
        path = self.version_path(name)
        if path.is_file():
            existing = self.manifest(name)
            if existing.content_hash() == manifest.content_hash():
                return existing
            if replace_if is None or not replace_if(existing):
                raise DataStoreError(f"version {name!r} already exists with different data ({path})")
        atomic_write_bytes(path, (manifest.model_dump_json(indent=2) + "\n").encode("utf-8"))
        return manifest

    def manifest(self, name: str) -> VersionManifest:
        path = self.version_path(name)
        if not path.is_file():
            known = ", ".join(self.versions()) or "none"
            raise DataStoreError(f"no version {name!r} in {self.version_dir} (known: {known})")
        try:
            return VersionManifest.model_validate_json(path.read_bytes())
        except ValueError as exc:
            raise DataStoreError(f"{path}: malformed manifest: {exc}") from None

    def load_version(self, name: str) -> DatasetVersion:
        """Records and provenance of a version, every shard verified against its hash."""
        manifest = self.manifest(name)
        records: list[FlockRecord] = []
        provenance: list[dict[str, Any] | None] = []
        kinds: list[Literal["base", "synthetic"]] = []
        for ref in manifest.shards:
            shard_records, shard_prov = self.read_shard(ref)
            records.extend(shard_records)
            provenance.extend(shard_prov if shard_prov is not None else [None] * len(shard_records))
            kinds.extend([ref.kind] * len(shard_records))
        return DatasetVersion(manifest=manifest, records=records, provenance=provenance, kinds=kinds)

    def versions(self) -> list[str]:
        return sorted(p.stem for p in self.version_dir.glob("*.json")) if self.version_dir.is_dir() else []

    # ----- generation journals -----------------------------------------------------------------------------
    def journal(self, key: str) -> BatchJournal:
        return BatchJournal(_named(self.journal_dir, key, "", _JOURNAL_KEY,
                                   "bad journal key {!r}: expected a lowercase hex digest"))


class BatchJournal:
    """One file per finished batch, written atomically, so a killed generation resumes at the next batch.

    ``header.json`` records what the journal belongs to; opening it for a different request is refused rather
    than mixing two generations' rows.
    """

    def __init__(self, directory: Path):
        self.directory = directory

    def bind(self, header: dict[str, Any]) -> None:
        """Create the journal for ``header``, or check that an existing one belongs to the same request.

        Temporary files left by a writer that was killed mid-write are removed: one generation owns a journal.
        """
        path = self.directory / "header.json"
        if self.directory.is_dir():
            for stale in self.directory.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        data = (json.dumps(header, sort_keys=True, indent=2) + "\n").encode("utf-8")
        if path.is_file():
            if json.loads(path.read_bytes()) != json.loads(data):
                raise DataStoreError(f"{path}: this journal belongs to a different generation request")
            return
        atomic_write_bytes(path, data)

    def batch_path(self, index: int) -> Path:
        return self.directory / f"batch-{index:06d}.json"

    def write(self, index: int, payload: dict[str, Any]) -> None:
        """Record batch ``index`` (batches must be written in order, each once)."""
        expected = self.count()
        if index != expected:
            raise DataStoreError(f"{self.directory}: batch {index} written out of order (next is {expected})")
        data = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        atomic_write_bytes(self.batch_path(index), data)

    def count(self) -> int:
        """How many consecutive batches (from 0) are recorded."""
        index = 0
        while self.batch_path(index).is_file():
            index += 1
        return index

    def batches(self) -> Iterator[dict[str, Any]]:
        for index in range(self.count()):
            path = self.batch_path(index)
            try:
                yield json.loads(path.read_bytes())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataStoreError(f"{path}: unreadable journal batch ({exc}); delete it to redo the batch") \
                    from None
