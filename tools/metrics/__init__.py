"""Task metrics as local ``evaluate`` modules: one folder per metric, ``<name>/<name>.py``.

Generic metrics (exact match, token F1, BLEU) live in this folder; a metric that belongs to one task type lives
in its plugin's package, ``tools/tasks/<task>/metrics/<name>/<name>.py`` (SQL execution accuracy, SQL exact
match, function-call accuracy). Both are found by name.

``evaluate.load("name")`` looks on the Hub and fails offline, so these modules load from their folder path
(``evaluate.load(path_to_folder)`` copies the script into evaluate's module cache and imports it). Each script
also exposes a plain ``compute(predictions, references, **options) -> dict[str, float]``; :func:`compute_metric`
calls it directly (same numbers, without evaluate's Arrow cache) for the agent's inner loop.

Adding a metric: create ``<name>/<name>.py`` in one of those folders with an ``evaluate.Metric`` subclass whose
``_compute`` calls the module's ``compute`` function, plus an empty ``__init__.py``; copy ``exact_match`` as the
pattern.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

METRICS_DIR = Path(__file__).resolve().parent
_PACKAGE_ROOT = METRICS_DIR.parent.parent
_TASKS_DIR = METRICS_DIR.parent / "tasks"


@cache
def _metric_folders() -> dict[str, Path]:
    """Metric name -> its folder, over this folder and every task plugin's ``metrics/`` folder."""
    folders: dict[str, Path] = {}
    for root in [METRICS_DIR, *sorted(_TASKS_DIR.glob("*/metrics"))]:
        for folder in sorted(root.iterdir()):
            if not (folder.is_dir() and (folder / f"{folder.name}.py").is_file()):
                continue
            if folder.name in folders:
                raise RuntimeError(f"two metric modules named {folder.name!r}: {folders[folder.name]} and {folder}")
            folders[folder.name] = folder
    return folders


def available_metrics() -> list[str]:
    """Names of the metric modules."""
    return sorted(_metric_folders())


def _folder(name: str) -> Path:
    folder = _metric_folders().get(name)
    if folder is None:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(available_metrics())}")
    return folder


def load_metric(name: str, **kwargs: Any) -> Any:
    """The metric as an ``evaluate.EvaluationModule``, loaded offline from its folder."""
    import evaluate

    return evaluate.load(str(_folder(name)), **kwargs)


def compute_metric(name: str, predictions: Sequence[Any], references: Sequence[Any], **options: Any) -> dict[str, Any]:
    """The metric's numbers computed in-process (identical to ``load_metric(name).compute(...)``)."""
    folder = _folder(name)
    module = importlib.import_module(".".join((*folder.relative_to(_PACKAGE_ROOT).parts, name)))
    result: dict[str, Any] = module.compute(predictions, references, **options)
    return result


__all__ = ["METRICS_DIR", "available_metrics", "compute_metric", "load_metric"]
