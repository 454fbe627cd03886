"""Task metrics as local ``evaluate`` modules: one folder per metric, ``<name>/<name>.py``.

``evaluate.load("name")`` looks on the Hub and fails offline, so these modules load from their folder path
(``evaluate.load(path_to_folder)`` copies the script into evaluate's module cache and imports it). Each script
also exposes a plain ``compute(predictions, references, **options) -> dict[str, float]``; :func:`compute_metric`
calls it directly (same numbers, without evaluate's Arrow cache) for the agent's inner loop.

Adding a metric: create ``tools/metrics/<name>/<name>.py`` with an ``evaluate.Metric`` subclass whose ``_compute``
calls the module's ``compute`` function, plus an empty ``__init__.py``; copy ``exact_match`` as the pattern.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS_DIR = Path(__file__).resolve().parent


def available_metrics() -> list[str]:
    """Names of the metric modules in this folder."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if p.is_dir() and (p / f"{p.name}.py").is_file())


def _check(name: str) -> None:
    if name not in available_metrics():
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(available_metrics())}")


def load_metric(name: str, **kwargs: Any) -> Any:
    """The metric as an ``evaluate.EvaluationModule``, loaded offline from its folder."""
    import evaluate

    _check(name)
    return evaluate.load(str(METRICS_DIR / name), **kwargs)


def compute_metric(name: str, predictions: Sequence[Any], references: Sequence[Any], **options: Any) -> dict[str, Any]:
    """The metric's numbers computed in-process (identical to ``load_metric(name).compute(...)``)."""
    _check(name)
    module = importlib.import_module(f"tools.metrics.{name}.{name}")
    result: dict[str, Any] = module.compute(predictions, references, **options)
    return result


__all__ = ["METRICS_DIR", "available_metrics", "compute_metric", "load_metric"]
