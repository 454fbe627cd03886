"""Tables from the run log: BPC per run and category, and paired differences against a baseline run.

    PYTHONPATH=$PWD python -m experiments.report                 # every run, dev+test BPC per category
    PYTHONPATH=$PWD python -m experiments.report --vs p0-e-T68k-s0 r1-c100-T68k-s0 r1-t100-T68k-s0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from experiments.harness import RESULTS, SEALED


def load(path: Path = RESULTS) -> dict[str, dict[str, Any]]:
    runs = {}
    for line in path.read_text().splitlines():
        if line.strip():
            run = json.loads(line)
            runs[run["spec"]["name"]] = run
    return runs


def sealed(path: Path = SEALED) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return {r["name"]: r["validation"] for r in map(json.loads, path.read_text().splitlines()) if r}


def table(runs: dict[str, dict[str, Any]], names: list[str], split: str = "devtest",
          baseline: str | None = None) -> str:
    categories = sorted({c for n in names for c in runs[n]["scores"][split]["per_category"]})
    head = ["run", f"{split} BPC", *categories, "train tokens", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    base = runs[baseline]["scores"][split] if baseline else None
    for name in names:
        score = runs[name]["scores"][split]

        def cell(value: float, reference: float | None, name: str = name) -> str:
            if reference is None or name == baseline:
                return f"{value:.4f}"
            return f"{value:.4f} ({(value - reference) / reference:+.1%})"

        cells = [cell(score["bpc"], base["bpc"] if base else None)]
        cells += [cell(score["per_category"].get(c, float("nan")),
                       base["per_category"].get(c) if base else None) for c in categories]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {runs[name]['train']['real_tokens']:,} | {runs[name]['wall_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--vs", help="baseline run: differences relative to it")
    parser.add_argument("--split", default="devtest")
    args = parser.parse_args(argv)
    runs = load()
    names = args.names or list(runs)
    if args.vs and args.vs not in names:
        names = [args.vs, *names]
    print(table(runs, names, args.split, args.vs))


if __name__ == "__main__":
    main()
