"""The package's import layers, read from the source's syntax trees (every import, lazy ones inside functions too):
nothing in tools/ imports agent/, and no import loop runs between folders.

A folder is a unit: tools/flock, tools/flock/simulator, agent/cli, agent/pipeline... A module at a package's top level
(tools/data.py, agent/graph.py) is a unit of its own, since those modules are the peers that subfolders build on.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "tools", "memory", "prompts")


@cache
def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, each import resolved to the longest module name that exists."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    resolved = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def _unit(name: str, path: Path) -> str:
    folder = path.parent.relative_to(ROOT).parts
    return name if len(folder) == 1 and path.name != "__init__.py" else ".".join(folder)


@cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(edges.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_nothing_in_tools_imports_agent() -> None:
    wrong = sorted((m, t) for m, targets in _graph().items() if m.startswith("tools")
                   for t in targets if t.split(".")[0] == "agent")
    assert wrong == []


def test_no_import_loop_between_folders() -> None:
    modules = _modules()
    units: dict[str, set[str]] = defaultdict(set)
    via: dict[tuple[str, str], str] = {}
    for name, targets in _graph().items():
        for target in targets:
            source, dest = _unit(name, modules[name]), _unit(target, modules[target])
            if source != dest:
                units[source].add(dest)
                via.setdefault((source, dest), f"{name} -> {target}")
    loops = [[via[(a, b)] for a in cycle for b in cycle if (a, b) in via] for cycle in _cycles(units)]
    assert loops == []


def test_the_checker_sees_a_loop() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
