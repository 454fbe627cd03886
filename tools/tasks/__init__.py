"""Task-type plugins: the registry, auto-detection and lookup by name.

Each task type is one package here (``text2sql``, ``function_calling``, ``chat``) whose plugin implements
:class:`tools.tasks.base.TaskPlugin`; this registry is the one place that maps task-type names to plugins.
"""

from __future__ import annotations

from collections.abc import Sequence

from tools.data import FlockRecord
from tools.tasks.base import Categorization, GenerationStrategy, TaskPlugin
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


def as_plugin(task: TaskPlugin | str) -> TaskPlugin:
    """A plugin as it is, or a task-type name looked up in the registry."""
    return task if isinstance(task, TaskPlugin) else get_plugin(task)


def detect_plugin(records: Sequence[FlockRecord]) -> TaskPlugin:
    """The plugin most confident about these records, fitted to them. Chat is the fallback for any dialogue."""
    if not records:
        raise ValueError("cannot detect the task type of an empty dataset")
    scored = sorted(((cls().detect(records), name) for name, cls in PLUGINS.items()), reverse=True)
    best_score, best_name = scored[0]
    plugin = PLUGINS[best_name]() if best_score >= 0.5 else ChatPlugin()
    return plugin.fit(records)


def strategy_class(task_type: str, strategy: str | None = None) -> type[GenerationStrategy]:
    """The generation strategy of a task type: its default, or the one named ``strategy``."""
    if task_type not in PLUGINS:
        raise ValueError(f"no generation strategy for task type {task_type!r}; known: {', '.join(PLUGINS)}")
    return PLUGINS[task_type].strategy_class(strategy)


__all__ = ["PLUGINS", "Categorization", "TaskPlugin", "as_plugin", "detect_plugin", "get_plugin", "strategy_class"]
