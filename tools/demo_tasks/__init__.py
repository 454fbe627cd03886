"""The bundled FLock task folders (``task.json`` + training and validation JSONL), by the name commands use."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

#: ``demo`` is the text-to-SQL task the agent runs by default; ``demo-fc`` the function-calling one.
DEMO_TASKS: dict[str, Path] = {"demo": _HERE / "text2sql", "demo-fc": _HERE / "function_calling"}
