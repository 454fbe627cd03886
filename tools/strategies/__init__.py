"""Generation strategies and the registry that picks one for a task plugin.

Strategy modules are imported on first use, so asking for the chat strategy does not import the SQL toolkit.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from tools.data import FlockRecord
from tools.strategies.base import Candidate, Draft, GenerationStrategy, Rejection
from tools.tasks.base import TaskPlugin

#: Task plugin name -> "module:Class" of its generation strategy.
STRATEGIES: dict[str, str] = {
    "text2sql": "tools.strategies.text2sql:Text2SQLStrategy",
    "function_calling": "tools.strategies.function_calling:FunctionCallingStrategy",
    "chat": "tools.strategies.chat:ChatStrategy",
}


def strategy_class(plugin_name: str) -> type[GenerationStrategy]:
    """The strategy class registered for a task plugin name."""
    try:
        target = STRATEGIES[plugin_name]
    except KeyError:
        raise ValueError(f"no generation strategy for task type {plugin_name!r}; known: {', '.join(STRATEGIES)}") \
            from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, GenerationStrategy)):
        raise TypeError(f"{target} is not a GenerationStrategy")
    return cls


def make_strategy(plugin: TaskPlugin, seeds: Sequence[FlockRecord]) -> GenerationStrategy:
    """The registered strategy for ``plugin``, anchored on ``seeds``."""
    return strategy_class(plugin.name)(plugin, seeds)


__all__ = ["STRATEGIES", "Candidate", "Draft", "GenerationStrategy", "Rejection", "make_strategy",
           "strategy_class"]
