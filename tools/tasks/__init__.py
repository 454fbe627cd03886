"""Task-type plugins and auto-detection."""

from __future__ import annotations

from collections.abc import Sequence

from tools.data import FlockRecord
from tools.tasks.base import Categorization, TaskPlugin
from tools.tasks.chat import ChatPlugin
from tools.tasks.function_calling import FunctionCallingPlugin
from tools.tasks.text2sql import Text2SQLPlugin

PLUGINS: dict[str, type[TaskPlugin]] = {
    Text2SQLPlugin.name: Text2SQLPlugin,
    FunctionCallingPlugin.name: FunctionCallingPlugin,
    ChatPlugin.name: ChatPlugin,
}


def get_plugin(name: str) -> TaskPlugin:
    try:
        return PLUGINS[name]()
    except KeyError:
        raise ValueError(f"unknown task type {name!r}; known: {', '.join(PLUGINS)}") from None


def detect_plugin(records: Sequence[FlockRecord]) -> TaskPlugin:
    """The plugin most confident about these records, fitted to them. Chat is the fallback for any dialogue."""
    if not records:
        raise ValueError("cannot detect the task type of an empty dataset")
    scored = sorted(((cls().detect(records), name) for name, cls in PLUGINS.items()), reverse=True)
    best_score, best_name = scored[0]
    plugin = PLUGINS[best_name]() if best_score >= 0.5 else ChatPlugin()
    return plugin.fit(records)


__all__ = ["PLUGINS", "Categorization", "TaskPlugin", "detect_plugin", "get_plugin"]
