"""The README's benchmark tables, rendered from ``benchmarks/results/*.json`` (the README holds them verbatim;
tests/test_readme_tables.py checks that it does, so a re-measured figure cannot leave a stale table behind).

    python benchmarks/readme_tables.py            # print every table whose results file exists
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

RECIPE_NAMES = {"flock_reference": "FLock reference (full_automation)", "sfttrainer": "TRL SFTTrainer, tuned",
                "ours": "ours (tools.train)"}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _load_line(machine: dict[str, Any]) -> str:
    load = machine.get("load") or {}
    peaks = machine.get("matmul_peak_gflops") or {}
    def yes(key: str) -> str:
        return "yes" if machine.get(key) else "no"

    parts = [f"{machine.get('cpus', machine.get('cores', '?'))} CPUs"
             + (f", torch {machine['torch']}" if "torch" in machine else "")
             + (f", AMX {yes('amx')}, AVX512-BF16 {yes('avx512_bf16')}" if "amx" in machine else "")]
    if "loadavg_end" in machine:
        parts.append(f"load average at the end {machine['loadavg_end'][0]:.1f}")
    if load:
        parts.append(f"load average median {load.get('median')} (min {load.get('min')}, max {load.get('max')})")
    if peaks:
        parts.append("matmul peak " + ", ".join(f"{k} {v} GFLOP/s" for k, v in peaks.items()))
    return "; ".join(parts)


def train_table(data: dict[str, Any]) -> str:
    precision = data.get("precision", {})
    lines = ["| rows | recipe | precision | real tokens/s (median) | ours over it | tokens per CPU-s | peak MiB "
             "| held-out BPC | MFU (peak of its precision) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for rows in ("long", "short"):
        entry = data.get(rows)
        if not entry:
            continue
        ratios = {"flock_reference": entry["ratio_vs_flock_reference"], "sfttrainer": entry["ratio_vs_sfttrainer"]}
        shape = entry["row_tokens"]
        label = f"{rows} ({entry['rows']} rows, {shape['min']}-{shape['max']} tokens)"
        for recipe, figures in entry["recipes"].items():
            ratio = f"{ratios[recipe]:.2f}x" if recipe in ratios else ""
            ran_in = precision.get(recipe, "")
            mfu = figures["mfu_vs_fp32_peak"] if ran_in == "fp32" else figures["mfu_vs_bf16_peak"]
            lines.append(f"| {label} | {RECIPE_NAMES.get(recipe, recipe)} | {ran_in} | "
                         f"{figures['tokens_per_s_median']:.1f} | {ratio} | {figures['tokens_per_cpu_s_median']:.1f} | "
                         f"{figures['peak_memory_mib_max']} | {figures['heldout_bpc']:.4f} | {100 * mfu:.1f}% |")
        lines.append(f"| {label} | base model, no adapter | | | | | | {entry['base_model_heldout_bpc']:.4f} | |")
    return "\n".join(lines)


def eval_table(data: dict[str, Any]) -> str:
    lines = ["| task | BPC: validator loop s | ours s | ratio | max relative difference per example "
             "| task metric: before s | ours s | speedup | same metric |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for task, bpc in data.get("bpc", {}).items():
        metric = data.get("task_metric", {}).get(task, {})
        seconds = bpc["median_seconds"]
        decode = metric.get("median_seconds", {})
        lines.append(
            f"| {task} | {seconds['validator_loop']:.1f} | {seconds['ours']:.1f} | "
            f"{bpc['ratio_vs_validator_loop']:.2f}x | {bpc['equality']['max_relative_example_loss']:.1e} | "
            f"{decode.get('before', float('nan')):.1f} | {decode.get('ours', float('nan')):.1f} | "
            f"{metric.get('speedup', float('nan')):.2f}x | {'yes' if metric.get('same_metric') else 'no'} |")
    return "\n".join(lines)


def generation_table(data: dict[str, Any]) -> str:
    lines = ["| prompt set | precision | one at a time tok/s | batch 8 | batch 32 | batch 32 ratio |",
             "|---|---|---:|---:|---:|---:|"]
    for prompt_set, entry in data.items():
        if not isinstance(entry, dict) or "tokens_per_s_median" not in entry:
            continue
        rates = entry["tokens_per_s_median"]
        for precision, ratios in entry["ratio_same_precision"].items():
            rate = {method: rates.get(f"{method}_{precision}", float("nan"))
                    for method in ("one_at_a_time", "batch_8", "batch_32")}
            lines.append(f"| {prompt_set} ({entry['prompts']} prompts, {entry['max_new_tokens']} new tokens) | "
                         f"{precision} | {rate['one_at_a_time']:.1f} | {rate['batch_8']:.1f} | "
                         f"{rate['batch_32']:.1f} | {ratios.get('32', float('nan'))}x |")
    return "\n".join(lines)


def machine_line(data: dict[str, Any]) -> str:
    machines = [data["machine"]] if "machine" in data else [
        v["machine"] for v in data.values() if isinstance(v, dict) and "machine" in v]
    line = _load_line(machines[0]) if machines else ""
    peaks = data.get("matmul_peak_gflops", {}).get("start")
    if peaks:  # the training benchmark measures them at its start and end, outside its machine record
        line += f"; matmul peak at the start fp32 {peaks['fp32_gflops']} GFLOP/s, bf16 {peaks['bf16_gflops']} GFLOP/s"
    return line


TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "train_throughput": train_table, "eval_throughput": eval_table, "generation_throughput": generation_table}


def rendered() -> dict[str, str]:
    """Each results file's table, for the files that exist."""
    return {name: render(data) for name, render in TABLES.items() if (data := _load(name)) is not None}


def main() -> None:
    for name, table in rendered().items():
        data = _load(name)
        assert data is not None
        print(f"## {name}\n\n{table}\n\nMachine: {machine_line(data)}\n")


if __name__ == "__main__":
    main()
