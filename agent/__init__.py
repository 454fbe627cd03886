"""SynthGen Agent: the LangGraph state machine and everything about running it."""

import contextlib
import importlib.metadata
import os
import platform

# OpenMP threads that spin while waiting make torch many times slower as soon as another busy process shares the
# cores (measured here: greedy decoding 3.9x slower with 2 spinning threads next to one other busy process).
# Sleeping waiters cost little when the machine is ours alone. Set before torch starts its thread pool.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def versions() -> dict[str, str]:
    """Python's version and the installed versions of this project and the libraries a run's results depend on
    (read from package metadata, so nothing heavy is imported)."""
    found = {"python": platform.python_version()}
    for name in ("synthgen-agent", "langgraph", "transformers", "peft", "torch", "datasets"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found
