"""Task folders the simulator serves: ``task.json`` + the training and validation JSONL files it names.

``task.json`` holds the section-5 task object without the server-made fields; its ``data`` names the files by
the keys FLock's ``/tasks/list`` shows (``training_set_key``, ``validation_set_key``, optionally
``final_validation_set_key``), resolved inside the folder. Every problem is reported with the file and field.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.demo_tasks import DEMO_TASKS

TASK_FILE = "task.json"
#: Storage object kinds, and the task.json key naming each one's file.
OBJECT_KINDS: dict[str, str] = {
    "training_set": "training_set_key",
    "validation_set": "validation_set_key",
    "final_validation_set": "final_validation_set_key",
}
DEMO_TASK_DIR = DEMO_TASKS["demo"]


class TaskFolderError(ValueError):
    """A task folder cannot be served; the message names the file and field."""


class TaskFolder(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    directory: Path
    task_json: dict[str, Any]
    files: dict[str, Path]


def load_task_folder(directory: str | Path, *, default_id: int | None = None) -> TaskFolder:
    """Read and check a task folder. ``default_id`` is used when ``task.json`` has no ``id``."""
    folder = Path(directory).resolve()
    task_file = folder / TASK_FILE
    if not folder.is_dir():
        raise TaskFolderError(f"{folder}: not a folder (a task folder holds {TASK_FILE} and its JSONL files)")
    if not task_file.is_file():
        raise TaskFolderError(f"{task_file}: missing")
    try:
        raw = json.loads(task_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise TaskFolderError(f"{task_file}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise TaskFolderError(f"{task_file}:{exc.lineno}:{exc.colno}: bad JSON: {exc.msg}") from None

    def bad(field: str, message: str) -> TaskFolderError:
        return TaskFolderError(f"{task_file}: field {field}: {message}")

    if not isinstance(raw, dict):
        raise TaskFolderError(f"{task_file}: expected a JSON object, got {type(raw).__name__}")
    task_id = raw.get("id", default_id)
    if isinstance(task_id, str) and task_id.isdigit():
        task_id = int(task_id)
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 1:
        raise bad("id", f"must be a positive integer (or pass a default id), got {task_id!r}")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise bad("data", "missing or not an object")
    for name in ("context_length", "max_params"):
        value = data.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(f"data.{name}", f"must be a positive integer, got {value!r}")
    supported = data.get("supported_base_models")
    if supported is not None and (not isinstance(supported, list) or not all(isinstance(s, str) for s in supported)):
        raise bad("data.supported_base_models", "must be a list of model ids")
    for name in ("initialized_at", "submission_phase_ends_at", "final_validation_ends_at"):
        if raw.get(name) is not None:
            try:
                datetime.fromisoformat(str(raw[name]))
            except ValueError:
                raise bad(name, f"not an ISO-8601 time: {raw[name]!r}") from None
    files: dict[str, Path] = {}
    for kind, key in OBJECT_KINDS.items():
        value = data.get(key)
        if value is None:
            if kind != "final_validation_set":
                raise bad(f"data.{key}", "missing: name the JSONL file in this folder")
            continue
        if not isinstance(value, str) or not value:
            raise bad(f"data.{key}", f"must be a file name, got {value!r}")
        files[kind] = _resolve_inside(folder, value, f"data.{key}", task_file)
    return TaskFolder(id=task_id, directory=folder, task_json=raw, files=files)


def _resolve_inside(folder: Path, key: str, field: str, task_file: Path) -> Path:
    """The key's file inside the folder; a FLock-style key like ``7/training_set.jsonl`` falls back to its name."""
    for candidate in (folder / key, folder / Path(key).name):
        path = candidate.resolve()
        if path.is_relative_to(folder) and path.is_file():
            return path
    raise TaskFolderError(f"{task_file}: field {field}: {key!r} is not a file inside {folder}")


def load_task_folders(directories: list[Path]) -> list[TaskFolder]:
    """Several folders; tasks without an ``id`` get the next free one, and duplicate ids are refused."""
    folders: list[TaskFolder] = []
    used: set[int] = set()
    for directory in directories:
        folder = load_task_folder(directory, default_id=max(used, default=0) + 1)
        if folder.id in used:
            raise TaskFolderError(f"{folder.directory / TASK_FILE}: field id: task {folder.id} is already served "
                                  "by another folder")
        used.add(folder.id)
        folders.append(folder)
    return folders
