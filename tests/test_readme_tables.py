"""The README's benchmark tables are the ones benchmarks/readme_tables.py renders from benchmarks/results/*.json:
a re-measured figure cannot leave a stale table behind."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tables() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "benchmarks" / "readme_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tables: dict[str, str] = module.rendered()
    return tables


TABLES = _tables()


def test_every_benchmark_with_a_table_has_results() -> None:
    assert set(TABLES) == {"train_throughput", "eval_throughput", "generation_throughput"}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_readme_holds_the_table_its_results_render(name: str) -> None:
    assert TABLES[name] in (ROOT / "README.md").read_text(), (
        f"README.md does not hold the {name} table of benchmarks/results/{name}.json; "
        "paste the output of `python benchmarks/readme_tables.py`")
