"""Publishing adapters where validators can fetch them (the FLock submit step that uses it: tools/flock/submit.py).

Two publishers share one :class:`Publisher` protocol:

- :class:`HubPublisher`: the Hugging Face Hub (``create_repo`` + ``upload_folder``), as FLock's reference node
  does (FLOCK_API.md section 7): repo ``{user}/task-{id}-{model id with / as -}``, revision = the commit id.
- :class:`LocalPublisher`: a folder-backed store with content-hash revisions, read offline by the FLock
  simulator's validator. A revision is immutable once written and appears atomically.

Only adapter files are published (``adapter_config.json``, ``adapter_model.safetensors``, ``README.md``, the model
card of tools/hub_cards.py); a pickled ``adapter_model.bin`` is refused, since validators would have to unpickle it.
Both publishers also publish a dataset folder (:class:`DatasetPublisher`: a run's synthetic data with its card).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: The files a published adapter consists of; the first two are required.
ADAPTER_FILES: tuple[str, ...] = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md")
HF_TOKEN_ENV = "HF_TOKEN"
HF_USERNAME_ENV = "HF_USERNAME"

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$")
_REVISION = re.compile(r"^[0-9a-f]{40}$")


class PublishError(ValueError):
    """An adapter folder cannot be published, or a published adapter cannot be fetched."""


class PublishedModel(BaseModel):
    """Where an adapter was published: ``hg_repo_id`` and ``revision`` are what a submission names."""

    model_config = ConfigDict(frozen=True)

    repo_id: str
    revision: str
    files: list[str]


@runtime_checkable
class Publisher(Protocol):
    def publish(self, adapter_dir: str | os.PathLike[str], repo_id: str) -> PublishedModel:
        """Publish the adapter files of ``adapter_dir`` as a new revision of ``repo_id``."""
        ...

    def fetch(self, repo_id: str, revision: str, dest: str | os.PathLike[str]) -> Path:
        """Copy ``repo_id@revision``'s files into ``dest`` and return it."""
        ...


@runtime_checkable
class DatasetPublisher(Protocol):
    def publish_dataset(self, folder: str | os.PathLike[str], repo_id: str) -> PublishedModel:
        """Publish every file under ``folder`` (a dataset repository's files) as a new revision of ``repo_id``."""
        ...


def dataset_files(folder: str | os.PathLike[str]) -> list[str]:
    """The files of a dataset folder, as relative POSIX paths; a folder without a card is refused."""
    root = Path(folder)
    if not (root / "README.md").is_file():
        raise PublishError(f"{root / 'README.md'}: missing; a dataset is published with its card")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def repo_name(user: str, task_id: int | str, base_model_id: str) -> str:
    """``{user}/task-{id}-{model id with / as -}``, the repo name FLock's reference node uses."""
    repo_id = f"{user}/task-{task_id}-{base_model_id.replace('/', '-')}"
    check_repo_id(repo_id)
    return repo_id


def dataset_repo_name(user: str, task_id: int | str, run_id: str) -> str:
    """``{user}/task-{id}-synthgen-{run id}``: where a run's synthetic data is published as a dataset."""
    return check_repo_id(f"{user}/task-{task_id}-synthgen-{run_id}")


def check_repo_id(repo_id: str) -> str:
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise PublishError(f"repo id {repo_id!r} is not of the form 'owner/name' (letters, digits, . _ -)")
    return repo_id


def looks_like_hub_id(value: str) -> bool:
    """``org/name`` that is not an existing local path (adapters must name the Hub id validators download)."""
    return bool(_REPO_ID.match(value)) and not Path(value).exists()


def read_adapter_config(adapter_dir: str | os.PathLike[str], *, require_hub_id: bool) -> dict[str, Any]:
    """Check an adapter folder and return its ``adapter_config.json``.

    FLock's validator reads ``base_model_name_or_path`` to load the base model (FLOCK_API.md 9.2), so it must be
    present, and for the Hub a Hub id rather than a local path.
    """
    folder = Path(adapter_dir)
    config_path = folder / ADAPTER_CONFIG
    if not folder.is_dir():
        raise PublishError(f"{folder}: not a folder")
    if not config_path.is_file():
        raise PublishError(f"{config_path}: missing; not a LoRA adapter folder (save it with peft's save_pretrained)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise PublishError(f"{config_path}: expected a JSON object")
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise PublishError(f"{config_path}: field base_model_name_or_path is missing or empty")
    if require_hub_id and not looks_like_hub_id(base):
        raise PublishError(f"{config_path}: field base_model_name_or_path is {base!r}, not a Hugging Face Hub id "
                           "('org/name'); validators load the base model from it")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        pickled = " (adapter_model.bin is refused: save with safe_serialization)" \
            if (folder / "adapter_model.bin").exists() else ""
        raise PublishError(f"{folder / ADAPTER_WEIGHTS}: missing{pickled}")
    return config


def adapter_files(adapter_dir: str | os.PathLike[str]) -> list[str]:
    folder = Path(adapter_dir)
    return [name for name in ADAPTER_FILES if (folder / name).is_file()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----- local store ---------------------------------------------------------------------------------------------
class LocalPublisher:
    """A folder-backed adapter store: ``root/<owner>/<name>/<revision>/`` plus ``refs/main``.

    The revision is a 40-hex digest of the files' names and contents, so publishing the same adapter twice gives
    the same revision (and a submission ledger sees one submission). A revision folder is built in a temporary
    folder, made read-only and renamed into place, so readers never see a partial revision.
    """

    MANIFEST = "manifest.json"

    def __init__(self, root: str | os.PathLike[str], *, require_hub_id: bool = False):
        self.root = Path(root)
        self.require_hub_id = require_hub_id

    def __repr__(self) -> str:
        return f"LocalPublisher(root={str(self.root)!r})"

    def _repo_dir(self, repo_id: str) -> Path:
        return self.root / check_repo_id(repo_id)

    def publish(self, adapter_dir: str | os.PathLike[str], repo_id: str) -> PublishedModel:
        read_adapter_config(adapter_dir, require_hub_id=self.require_hub_id)
        return self._store(Path(adapter_dir), adapter_files(adapter_dir), self._repo_dir(repo_id), repo_id)

    def publish_dataset(self, folder: str | os.PathLike[str], repo_id: str) -> PublishedModel:
        """A dataset folder as a revision of ``root/datasets/<owner>/<name>/`` (read it with :meth:`fetch_dataset`)."""
        return self._store(Path(folder), dataset_files(folder), self._dataset_dir(repo_id), repo_id)

    def fetch_dataset(self, repo_id: str, revision: str, dest: str | os.PathLike[str]) -> Path:
        return self._fetch(self._dataset_dir(repo_id), repo_id, revision, dest)

    def _dataset_dir(self, repo_id: str) -> Path:
        return self.root / "datasets" / check_repo_id(repo_id)

    def _store(self, source: Path, names: list[str], repo_dir: Path, repo_id: str) -> PublishedModel:
        repo_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=repo_dir))
        try:
            manifest = {}
            for name in names:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source / name, staging / name)
                manifest[name] = _sha256(staging / name)
            revision = _revision_of(manifest)
            (staging / self.MANIFEST).write_text(json.dumps({"revision": revision, "files": manifest}, indent=1))
            for item in sorted(staging.rglob("*"), reverse=True):  # files before the folders holding them
                if item.is_file():
                    with item.open("rb") as handle:
                        os.fsync(handle.fileno())
                    item.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            target = repo_dir / revision
            try:
                staging.rename(target)
            except OSError:
                if not (target / self.MANIFEST).is_file():  # not the same content already published
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        self._write_ref(repo_dir, revision)
        return PublishedModel(repo_id=repo_id, revision=revision, files=names)

    def _write_ref(self, repo_dir: Path, revision: str) -> None:
        refs = repo_dir / "refs"
        refs.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".main.", dir=refs)
        with os.fdopen(fd, "w") as handle:
            handle.write(revision + "\n")
        os.replace(tmp, refs / "main")

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """A 40-hex revision for ``revision`` ("main" = the latest published)."""
        return self._resolve(self._repo_dir(repo_id), repo_id, revision)

    def _resolve(self, repo_dir: Path, repo_id: str, revision: str) -> str:
        if revision == "main":
            ref = repo_dir / "refs" / "main"
            if not ref.is_file():
                raise PublishError(f"{repo_id}: no such repo in the local store {self.root}")
            revision = ref.read_text().strip()
        if not _REVISION.match(revision):
            raise PublishError(f"{repo_id}: revision {revision!r} is not a 40-hex commit id")
        if not (repo_dir / revision / self.MANIFEST).is_file():
            raise PublishError(f"{repo_id}@{revision}: not in the local store {self.root}")
        return revision

    def revisions(self, repo_id: str) -> list[str]:
        repo_dir = self._repo_dir(repo_id)
        if not repo_dir.is_dir():
            return []
        return sorted(p.name for p in repo_dir.iterdir() if _REVISION.match(p.name) and (p / self.MANIFEST).is_file())

    def fetch(self, repo_id: str, revision: str, dest: str | os.PathLike[str]) -> Path:
        """Copy a revision's files into ``dest`` (created; must be empty), verifying every file's hash."""
        return self._fetch(self._repo_dir(repo_id), repo_id, revision, dest)

    def _fetch(self, repo_dir: Path, repo_id: str, revision: str, dest: str | os.PathLike[str]) -> Path:
        revision = self._resolve(repo_dir, repo_id, revision)
        source = repo_dir / revision
        manifest = json.loads((source / self.MANIFEST).read_text())["files"]
        target = Path(dest)
        target.mkdir(parents=True, exist_ok=True)
        if any(target.iterdir()):
            raise PublishError(f"{target}: fetch destination is not empty")
        for name, digest in manifest.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, target / name)
            if _sha256(target / name) != digest:
                raise PublishError(f"{repo_id}@{revision}: {name} does not match its recorded hash (store corrupted)")
        return target


def _revision_of(manifest: dict[str, str]) -> str:
    canonical = "".join(f"{name}\0{digest}\n" for name, digest in sorted(manifest.items()))
    return hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()


# ----- Hugging Face Hub ----------------------------------------------------------------------------------------
class HubPublisher:
    """Publish to the Hugging Face Hub. ``HF_TOKEN`` and ``HF_USERNAME`` come from the environment by default."""

    def __init__(self, token: str | None = None, username: str | None = None, *, private: bool = False,
                 endpoint: str | None = None, api: Any = None):
        from huggingface_hub import HfApi

        self._token = token if token is not None else os.environ.get(HF_TOKEN_ENV)
        self._username = username if username is not None else os.environ.get(HF_USERNAME_ENV)
        self.private = private
        self._api = api if api is not None else HfApi(endpoint=endpoint, token=self._token)

    def __repr__(self) -> str:
        return f"HubPublisher(username={self._username!r}, token={'set' if self._token else 'unset'})"

    @property
    def username(self) -> str:
        if not self._username:
            raise PublishError(f"no Hugging Face user name: set {HF_USERNAME_ENV}")
        return self._username

    def repo_name(self, task_id: int | str, base_model_id: str) -> str:
        return repo_name(self.username, task_id, base_model_id)

    def publish(self, adapter_dir: str | os.PathLike[str], repo_id: str) -> PublishedModel:
        read_adapter_config(adapter_dir, require_hub_id=True)
        check_repo_id(repo_id)
        if not self._token:
            raise PublishError(f"no Hugging Face token: set {HF_TOKEN_ENV} (a token with write access)")
        names = adapter_files(adapter_dir)
        self._api.create_repo(repo_id, repo_type="model", exist_ok=True, private=self.private)
        commit = self._api.upload_folder(repo_id=repo_id, folder_path=str(adapter_dir), repo_type="model",
                                         allow_patterns=names, commit_message="Upload LoRA adapter")
        return PublishedModel(repo_id=repo_id, revision=commit.oid, files=names)

    def fetch(self, repo_id: str, revision: str, dest: str | os.PathLike[str]) -> Path:
        folder = self._api.snapshot_download(repo_id, revision=revision, local_dir=str(dest),
                                             allow_patterns=list(ADAPTER_FILES))
        return Path(folder)

    def publish_dataset(self, folder: str | os.PathLike[str], repo_id: str) -> PublishedModel:
        """A dataset repository (Parquet files and the card written by tools/hub_cards.py) as one commit."""
        check_repo_id(repo_id)
        names = dataset_files(folder)
        if not self._token:
            raise PublishError(f"no Hugging Face token: set {HF_TOKEN_ENV} (a token with write access)")
        self._api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=self.private)
        commit = self._api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset",
                                         allow_patterns=names, commit_message="Upload synthetic data with its card")
        return PublishedModel(repo_id=repo_id, revision=commit.oid, files=names)

    def update_model_card(self, repo_id: str, card: str | os.PathLike[str]) -> str:
        """Replace a model repo's README.md with ``card`` as a new commit (the adapter files, and so every revision
        already submitted, stay as they are). Returns the commit id."""
        commit = self._api.upload_file(path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo_id,
                                       repo_type="model", commit_message="Update the model card with its scores")
        return str(commit.oid)


__all__ = [
    "ADAPTER_FILES",
    "DatasetPublisher",
    "HubPublisher",
    "LocalPublisher",
    "PublishError",
    "PublishedModel",
    "Publisher",
    "check_repo_id",
    "dataset_repo_name",
    "read_adapter_config",
    "repo_name",
]
