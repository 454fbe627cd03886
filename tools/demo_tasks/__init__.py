"""The bundled demo FLock tasks (task.json and its JSONL files), by the name a run knows each one by."""

from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: ``synthgen run --task NAME`` -> the task folder.
DEMO_TASK_DIRS: dict[str, Path] = {"demo": _HERE / "text2sql", "demo-fc": _HERE / "function_calling"}
