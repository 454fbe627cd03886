"""Experiment harness: train one adapter on originals (+ synthetic rows) under a batch plan, score it, log it.

A run is a :class:`RunSpec` (JSON). The split is the agent's own (``stratified_split`` with the agent's default
dev/test fractions and the run's ``split_seed``), so "dev+test" here is what the agent could measure itself; the
task's held-back validation file (what FLock's validators score) is scored only when ``validation`` is set, for
final candidates. Every run appends one JSON line to ``experiments/results/runs.jsonl``: the spec, BPC overall
and per category on each scored split, per-row losses, train tokens, wall time and the machine's load.

    PYTHONPATH=$PWD python -m experiments.harness specs.json [--threads 1]

``specs.json`` holds one spec or a list; specs whose name is already in the log are skipped (a queue that can be
restarted).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from tools.data import FlockRecord, SplitFractions, load_jsonl, stratified_split
from tools.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = Path(__file__).resolve().parent
RESULTS = EXPERIMENTS / "results" / "runs.jsonl"
#: Validation scores of every run, kept out of the run log and out of sight while choosing (they are read only to
#: confirm the final candidates, so the choice is not tuned on the benchmark's own score).
SEALED = EXPERIMENTS / "results" / "validation_sealed.jsonl"
SCRATCH = Path(os.environ.get("I15_SCRATCH", "/tmp/i15-research"))
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
TEMPLATE = "qwen1.5"
CONTEXT_LENGTH = 1024
TASK_DIRS = {"text2sql": ROOT / "tools" / "demo_tasks" / "text2sql",
             "function_calling": ROOT / "tools" / "demo_tasks" / "function_calling"}
#: The agent's default split (agent/config.py EvalSettings): 12% dev, 12% test.
DEV_FRACTION = TEST_FRACTION = 0.12


# ----- data ------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _plugin(task: str) -> Any:
    from tools.tasks import detect_plugin

    records = load_jsonl(TASK_DIRS[task] / "training_set.jsonl").records
    return detect_plugin(records).fit(records)


def category_of(task: str, record: FlockRecord) -> str:
    return str(_plugin(task).categorize(record).primary)


@lru_cache(maxsize=8)
def task_splits(task: str, seed: int) -> dict[str, list[FlockRecord]]:
    """train/dev/test as the agent splits the training file for ``seed``, and the held-back validation file."""
    records = load_jsonl(TASK_DIRS[task] / "training_set.jsonl").records
    fractions = SplitFractions(train=1 - DEV_FRACTION - TEST_FRACTION, dev=DEV_FRACTION, test=TEST_FRACTION)
    splits = stratified_split(records, category=lambda r: category_of(task, r), key=lambda r: r.record_id,
                              fractions=fractions, seed=seed)
    validation = load_jsonl(TASK_DIRS[task] / "validation_set.jsonl").records
    return {"train": splits.train, "dev": splits.dev, "test": splits.test, "validation": validation}


def load_rows(path: str | Path) -> list[FlockRecord]:
    """Synthetic rows from a JSONL file (relative paths are under experiments/)."""
    full = Path(path) if Path(path).is_absolute() else EXPERIMENTS / path
    return load_jsonl(full).records


# ----- the run ---------------------------------------------------------------------------------------------------
@dataclass
class RunSpec:
    """One training run. Passes: ``orig_passes``/``syn_passes`` (None: as many passes over the whole mix as the
    token budget needs, like the benchmark's ``epochs_for``). ``schedule``: ``mixed`` (pass k shuffles together
    every row with more than k passes, so rows with fewer passes come early), ``spread`` (one stage per original
    pass, the synthetic rows' passes dealt evenly over those stages) or ``syn_first`` (all synthetic passes, then
    all original passes, under one learning-rate schedule)."""

    name: str
    task: Literal["text2sql", "function_calling"] = "text2sql"
    split_seed: int = 0
    train_seed: int = 0
    synthetic: str | None = None
    synthetic_n: int | None = None
    budget_tokens: int | None = None
    orig_passes: int | None = None
    syn_passes: int | None = None
    syn_weight: float = 1.0
    schedule: Literal["mixed", "spread", "syn_first"] = "mixed"
    learning_rate: float = 4e-4
    lora_r: int = 16
    refit: bool = False
    """Train on every original row (train + dev + test), as a final refit before submitting would; dev and test
    scores are then not held out, only validation is."""
    pack: int = 1
    """Pack up to this many single-turn rows of one schema into a multi-turn row (experiments.layout); originals
    with originals, synthetic with synthetic."""
    extra_eval: dict[str, str] = field(default_factory=dict)
    """Name -> JSONL of more rows to score (e.g. held-out synthetic rows), per-row losses kept."""
    validation: bool = False
    """Report the validation score in the run log (for final candidates). Every run scores validation anyway and
    writes it to the sealed file."""
    exec_test: bool = False
    note: str = ""


def _passes(spec: RunSpec, orig_tokens: int, syn_tokens: int) -> tuple[int, int]:
    if spec.orig_passes is not None and (spec.syn_passes is not None or syn_tokens == 0):
        return spec.orig_passes, spec.syn_passes or 0
    if spec.budget_tokens is None:
        raise ValueError(f"{spec.name}: give budget_tokens or both orig_passes and syn_passes")
    auto = max(1, math.ceil(spec.budget_tokens / (orig_tokens + syn_tokens)))
    return (spec.orig_passes or auto), (spec.syn_passes if spec.syn_passes is not None else auto)


def run(spec: RunSpec, scorer: Scorer | None = None) -> dict[str, Any]:
    from experiments.trainer import Stage, tokenize, train_plan
    from tools.models import load_tokenizer, resolve_model

    wall = time.time()
    load_start = os.getloadavg()[0]
    splits = task_splits(spec.task, spec.split_seed)
    originals = splits["train"] + (splits["dev"] + splits["test"] if spec.refit else [])
    synthetic = load_rows(spec.synthetic)[: spec.synthetic_n] if spec.synthetic else []
    if spec.pack > 1:
        from experiments.layout import pack

        originals = pack(originals, spec.pack, spec.train_seed)
        synthetic = pack(synthetic, spec.pack, spec.train_seed)
    tokenizer = load_tokenizer(MODEL)
    examples = tokenize([*originals, *synthetic], tokenizer, TEMPLATE, CONTEXT_LENGTH)
    n_orig = len(originals)
    orig_tokens = sum(len(e) for e in examples[:n_orig])
    syn_tokens = sum(len(e) for e in examples[n_orig:])
    orig_passes, syn_passes = _passes(spec, orig_tokens, syn_tokens)
    if spec.schedule == "mixed":
        stages = [Stage([orig_passes] * n_orig + [syn_passes] * len(synthetic))]
    elif spec.schedule == "spread":
        stages = spread_stages(n_orig, len(synthetic), orig_passes, syn_passes)
    else:
        stages = [Stage([0] * n_orig + [syn_passes] * len(synthetic)),
                  Stage([orig_passes] * n_orig + [0] * len(synthetic))]
    weights = [1.0] * n_orig + [spec.syn_weight] * len(synthetic)
    config = TrainConfig(learning_rate=spec.learning_rate, lora_r=spec.lora_r, lora_alpha=2 * spec.lora_r,
                         seed=spec.train_seed)
    out = SCRATCH / "adapters" / spec.name
    shutil.rmtree(out, ignore_errors=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trained = train_plan(str(resolve_model(MODEL).path), MODEL, examples, weights, stages, out, config, pad,
                         spec.budget_tokens)
    scorer = scorer or Scorer()
    sets: dict[str, list[FlockRecord]] = {"dev": splits["dev"], "test": splits["test"],
                                          "validation": splits["validation"]}
    for name, path in spec.extra_eval.items():
        sets[name] = load_rows(path)
    scores = {name: scorer.score(spec.task, rows, out) for name, rows in sets.items()}
    scores["devtest"] = combine(scores["dev"], scores["test"])
    if spec.exec_test:
        scores["test"]["exec"] = scorer.task_metric(spec.task, splits["test"], out)
    orig_seen = trained.passes_done[:n_orig]
    syn_seen = trained.passes_done[n_orig:]
    sealed = scores["validation"] if spec.validation else scores.pop("validation")
    SEALED.parent.mkdir(parents=True, exist_ok=True)
    with SEALED.open("a") as log:
        log.write(json.dumps({"name": spec.name, "validation": sealed}) + "\n")
    return {
        "spec": asdict(spec), "scores": scores,
        "train": {"steps": trained.steps, "real_tokens": trained.real_tokens, "target_tokens": trained.target_tokens,
                  "seconds": trained.seconds, "tokens_per_s": trained.tokens_per_s,
                  "originals": n_orig, "synthetic_rows": len(synthetic),
                  "orig_tokens_per_pass": orig_tokens, "syn_tokens_per_pass": syn_tokens,
                  "planned_passes": [orig_passes, syn_passes],
                  "orig_passes_done": round(statistics.fmean(orig_seen), 3),
                  "syn_passes_done": round(statistics.fmean(syn_seen), 3) if syn_seen else 0.0,
                  "final_loss": round(statistics.fmean(trained.loss_curve[-10:]), 4)},
        "wall_seconds": round(time.time() - wall, 1),
        "load1_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def spread_stages(n_orig: int, n_syn: int, orig_passes: int, syn_passes: int) -> list[Any]:
    """One stage per original pass; synthetic row j's passes go to stages j, j+1, ... (mod the stage count)."""
    from experiments.trainer import Stage

    stages = max(1, orig_passes)
    counts = [[0] * n_syn for _ in range(stages)]
    for j in range(n_syn):
        for k in range(syn_passes):
            counts[(j + k) % stages][j] += 1
    return [Stage([1 if orig_passes else 0] * n_orig + counts[s]) for s in range(stages)]


# ----- scoring ---------------------------------------------------------------------------------------------------
class Scorer:
    """FLock's BPC of base + adapter (fp32 base, adapter applied unmerged, as tools.evaluate does for a loaded
    model), overall, per category and per row. The base model is loaded once per process."""

    def __init__(self) -> None:
        self._model: Any = None

    def model(self) -> Any:
        if self._model is None:
            from tools.models import load_causal_lm

            self._model = load_causal_lm(MODEL)
            self._model.eval()
        return self._model

    def score(self, task: str, rows: Sequence[FlockRecord], adapter: Path | None) -> dict[str, Any]:
        from peft import PeftModel

        from tools.evaluate import example_losses, target_bytes
        from tools.models import load_tokenizer
        from tools.templates import get_template, tokenize_records

        tokenizer = load_tokenizer(MODEL)
        examples = tokenize_records(rows, tokenizer, get_template(TEMPLATE), CONTEXT_LENGTH)
        base = self.model()
        wrapped = PeftModel.from_pretrained(base, str(adapter), is_trainable=False) if adapter else base
        try:
            losses = example_losses(wrapped, examples, tokenizer.pad_token_id)
        finally:
            if adapter:
                wrapped.unload()
        rows_out = [{"category": category_of(task, r), "loss": loss, "tokens": e.num_targets,
                     "bytes": target_bytes(e, tokenizer)} for r, e, loss in zip(rows, examples, losses, strict=True)]
        return summarize_rows(rows_out)

    def task_metric(self, task: str, rows: Sequence[FlockRecord], adapter: Path) -> dict[str, Any]:
        from peft import PeftModel

        from tools.evaluate import task_metrics
        from tools.models import load_tokenizer

        metric = "sql_execution" if task == "text2sql" else "function_call_accuracy"
        wrapped = PeftModel.from_pretrained(self.model(), str(adapter), is_trainable=False)
        try:
            report = task_metrics(wrapped, load_tokenizer(MODEL), rows, template=TEMPLATE, task_type=task,
                                  categories=[category_of(task, r) for r in rows], metrics=[metric])
        finally:
            wrapped.unload()
        return {"metric": metric, "overall": report.overall.get(metric),
                "per_category": {c: m.get(metric) for c, m in report.per_category.items()},
                "predictions": report.predictions}


def bpc(rows: Sequence[dict[str, Any]]) -> float:
    """FLock's formula: mean of per-row mean losses, times target tokens over target bytes, in bits."""
    if not rows:
        return math.nan
    mean_loss = math.fsum(r["loss"] for r in rows) / len(rows)
    return mean_loss * sum(r["tokens"] for r in rows) / math.log(2) / sum(r["bytes"] for r in rows)


def summarize_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    categories = sorted({r["category"] for r in rows})
    return {"bpc": bpc(rows), "n": len(rows),
            "per_category": {c: bpc([r for r in rows if r["category"] == c]) for c in categories},
            "rows": rows}


def combine(*parts: dict[str, Any]) -> dict[str, Any]:
    return summarize_rows([r for p in parts for r in p["rows"]])


# ----- queue -----------------------------------------------------------------------------------------------------
def done_names(path: Path = RESULTS) -> set[str]:
    if not path.is_file():
        return set()
    return {json.loads(line)["spec"]["name"] for line in path.read_text().splitlines() if line.strip()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", type=Path, help="JSON file: one RunSpec object or a list of them")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    loaded = json.loads(args.specs.read_text())
    specs = [RunSpec(**s) for s in (loaded if isinstance(loaded, list) else [loaded])]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    scorer = Scorer()
    for spec in specs:
        if spec.name in done_names(args.results):
            print(f"skip {spec.name} (already in {args.results})", flush=True)
            continue
        print(f"[{time.strftime('%H:%M:%S')}] run {spec.name}", flush=True)
        result = run(spec, scorer)
        with args.results.open("a") as log:
            log.write(json.dumps(result) + "\n")
        s = result["scores"]
        print(f"[{time.strftime('%H:%M:%S')}] done {spec.name}: dev {s['dev']['bpc']:.4f} test {s['test']['bpc']:.4f} "
              f"devtest {s['devtest']['bpc']:.4f}"
              + (f" validation {s['validation']['bpc']:.4f}" if "validation" in s else "")
              + f" ({result['train']['real_tokens']} tokens, {result['wall_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
