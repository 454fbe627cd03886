"""The versions a run's results depend on, read from package metadata (nothing heavy is imported)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform

#: Distributions whose versions a run's trace, its report and its cards record.
VERSIONED = ("synthgen-agent", "transformers", "peft", "torch", "datasets", "huggingface-hub", "langgraph")


def software_versions() -> dict[str, str]:
    """Python's version and the installed versions of this project and the libraries its results depend on."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found
