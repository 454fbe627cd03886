"""What the stages keep in the run folder: results keyed by their inputs' content, and the dataset versions.

A stage called again with the same inputs (the node that called it is re-run after a crash) finds its stored
result and returns it, so finished work is never redone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from agent.pipeline.environment import PipelineError
from tools.datastore import DatasetVersion, DataStore, ShardRef
from tools.fileio import atomic_write_text

M = TypeVar("M", bound=BaseModel)


def content_digest(value: Any, length: int = 10) -> str:
    """A short hash of a JSON-compatible value: equal content, equal name."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def write_result(path: Path, result: BaseModel) -> None:
    atomic_write_text(path, result.model_dump_json(indent=2))


def read_result(path: Path, model: type[M]) -> M | None:
    """The result stored at ``path``, or None when the stage has not finished yet."""
    return model.model_validate_json(path.read_text(encoding="utf-8")) if path.is_file() else None


class DatasetVersions:
    """The run's dataset versions (original training split plus accepted synthetic shards) in its
    content-addressed store, named ``iter<N>-<content hash>``."""

    def __init__(self, data_dir: Path):
        self.store = DataStore(data_dir / "store")

    def save(self, iteration: int, shards: list[ShardRef]) -> str:
        """Equal data gives an equal name, so saving again is a no-op."""
        name = f"iter{iteration}-{content_digest([s.sha256 for s in shards])}"
        if name not in self.store.versions():
            self.store.save_version(name, shards, meta={"iteration": iteration})
        return name

    def latest(self) -> str:
        return sorted(self.store.versions(), key=lambda n: int(n.split("-")[0][4:]))[-1]

    def load(self, name: str) -> DatasetVersion:
        return self.store.load_version(name)


def adapter_folder(adapters_dir: Path, adapter_id: str) -> Path:
    """The folder of a trained adapter; a PipelineError when there is none."""
    folder = adapters_dir / adapter_id
    if not (folder / "adapter_config.json").is_file():
        raise PipelineError(f"adapter {adapter_id} not found at {folder}")
    return folder
