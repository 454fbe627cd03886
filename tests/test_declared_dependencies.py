"""Every third-party package the code imports is declared in pyproject.toml (a dependency or an optional extra), so
a fresh install of the project has what its commands import."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "tools", "memory", "prompts")


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values()
                                                for r in extra)]
    return {_normalized(Requirement(r).name) for r in requirements}


def _imported_top_levels() -> dict[str, str]:
    """Top-level module name -> one file importing it, for every absolute import in the packages."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in (*PACKAGES, "__future__"):
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    declared = _declared()
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, where in _imported_top_levels().items():
        providers = {_normalized(d) for d in distributions.get(module, [module])}
        if not providers & declared:
            undeclared[module] = where
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
