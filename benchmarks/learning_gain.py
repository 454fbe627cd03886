"""Learning gain: does the agent's targeted synthetic data beat the baselines at an equal training-token budget?

On the demo text-to-SQL task, for each seed, every condition uses the same train/dev/test split (the agent's own
``prepare_task`` split for that seed) and is scored the same way:

(a) base: the base model, no training.
(b) reference: LoRA on the original training split with FLock's reference training-node recipe (TRL;
    benchmarks/reference_recipe.py).
(c) uniform: our trainer (tools.train) on the original split + synthetic rows spread evenly over the categories:
    as many rows as (d)'s final adapter was trained with, from the same generator and the same quality gates
    (decontaminated against dev and test).
(d) agent: the agent's adaptive loop (agent.runner.Runner) with the deterministic policy planner: it targets the
    categories with the largest dev-BPC gap, retrains a fresh adapter each round, keeps the best on dev.
(e) ours-original (ablation): our trainer on the original split only, to separate what the trainer adds from
    what the synthetic data adds.

Equal budget: T = the real (non-padding) tokens (d)'s final adapter (its best on dev, the one it submits) was
trained on. Every trained condition's final adapter is trained on T real tokens: (b) runs the reference recipe
until T tokens (the linear schedule is sized for the budget), (c) and (e) run our trainer with
``max_train_tokens=T`` (cosine schedule sized for T) and as many epochs as needed. (d)'s earlier rounds also trained
adapters; those tokens are reported but not counted in T.

Scores per condition: validation BPC as the FLock simulator's validator scores it (each adapter is published and
submitted with its own wallet; the base model goes through the same path as an untrained LoRA adapter, whose zero
B matrices leave the base unchanged; (d)'s score is the one the simulator gave the agent's own submission), test-split
BPC per category, and SQL execution accuracy overall and per category on the test split (greedy decoding, the
pipeline's evaluate with ``sql_execution``; (a) and (d) come from the agent's own base-vs-best test report, which is
the same evaluation on the same split).

    python benchmarks/learning_gain.py                 # full mode: seeds 0 and 1 (about an hour per seed)
    python benchmarks/learning_gain.py --quick         # a small budget, one seed
    python benchmarks/learning_gain.py --seeds 1 --threads 1   # one seed per process, to run seeds side by side

Results are written as JSON and markdown under ``--out`` (each finished condition is kept, so an interrupted run
continues where it stopped when started again with the same arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.config import RunConfig, _deep_merge, build_config  # noqa: E402
from agent.pipeline.evaluation import with_task_metric  # noqa: E402
from agent.state import DatasetInfo, EvalSummary, TrainOverrides  # noqa: E402
from agent.toolbox import TestComparison  # noqa: E402

CONDITIONS: dict[str, str] = {
    "a": "(a) base model",
    "b": "(b) reference recipe, original data",
    "c": "(c) ours, original + uniform synthetic",
    "d": "(d) agent, adaptive targeted loop",
    "e": "(e) ours, original data only (ablation)",
}

BUDGET_DEFINITION = (
    "T = real (non-padding) training tokens of (d)'s final adapter (the agent's best adapter on dev, the one it "
    "submits). Each trained condition's final adapter is trained on T real tokens: (b) the reference recipe stops "
    "at the first optimizer step reaching T (its linear schedule sized for T), (c) and (e) use our trainer with "
    "max_train_tokens=T (cosine schedule sized for T) and as many epochs as that takes. (c) has as many synthetic "
    "rows as (d)'s final dataset, spread evenly over the categories, from the same generator and gates. Tokens of "
    "(d)'s earlier rounds are reported separately and not counted in T.")

#: Agent settings per mode (everything else is the run configuration's default).
FULL_SETTINGS: dict[str, Any] = {
    "budget": {"max_iterations": 2, "max_synthetic_examples": 80, "max_wall_seconds": 8 * 3600},
    "train": {"epochs": 1},
}
QUICK_SETTINGS: dict[str, Any] = {
    "budget": {"max_iterations": 1, "max_synthetic_examples": 28, "max_train_tokens": 12_000,
               "max_wall_seconds": 3600},
    "train": {"epochs": 1},
}


# ----- logging ---------------------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class LogReporter:
    """Progress as timestamped lines (the benchmark runs for hours under nohup; a log is what one can follow)."""

    @contextlib.contextmanager
    def step(self, description: str, total: float | None) -> Iterator[Callable[..., None]]:
        started = time.time()
        log(f"  start {description}")
        yield lambda *args, **kwargs: None
        log(f"  done  {description} ({time.time() - started:.0f} s)")


class LoadSampler:
    """Samples the 1-minute load average in the background, to report how busy the shared machine was."""

    def __init__(self, every_s: float = 30.0):
        self.every_s = every_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        values = self.samples or [os.getloadavg()[0]]
        return {"cpu_count": os.cpu_count(), "samples": len(values), "load1_mean": round(statistics.fmean(values), 2),
                "load1_max": round(max(values), 2), "load1_min": round(min(values), 2)}


# ----- configuration ---------------------------------------------------------------------------------------------
def benchmark_config(seed: int, runs_dir: Path, *, quick: bool, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The agent's run configuration for one seed: the demo task, SmolLM2 as student and generator, the policy
    planner, and the mode's budget."""
    settings = _deep_merge(QUICK_SETTINGS if quick else FULL_SETTINGS,
                      {"task": {"kind": "demo"}, "planner": {"kind": "policy"}, "eval": {"task_metric": True},
                       "seed": seed, "runs_dir": str(runs_dir)})
    return build_config(None, _deep_merge(settings, overrides or {}))


# ----- one seed --------------------------------------------------------------------------------------------------
class SeedBench:
    """All conditions for one seed. A second PipelineToolbox (its own folder and FLock simulator) holds the same
    split as the agent's run and does the uniform generation, our trainer's runs, the test evaluations and the
    submissions; finished conditions are kept as JSON so a restarted benchmark skips them."""

    def __init__(self, config: RunConfig, out: Path):
        self.config = config
        self.out = out
        self.results_dir = out / "results"
        self.results_dir.mkdir(parents=True, exist_ok=True)

    # -- the agent --
    def run_agent(self) -> dict[str, Any]:
        from agent.runner import Runner
        from memory.runs import RunStore

        run_id = f"agent-seed{self.config.seed}"
        store = RunStore(self.config.runs_dir)
        runner = Runner(store, on_step=_log_step)
        started = time.time()
        if (self.config.runs_dir / run_id / "config.json").is_file():
            outcome = runner.resume(run_id)
        else:
            outcome = runner.start(self.config, run_id=run_id)
        state = outcome.state
        if state.get("status") != "finished":
            raise RuntimeError(f"the agent run {run_id} did not finish (status {state.get('status')!r})")
        adapters = {a["adapter_id"]: a for a in state["adapters"]}
        best = adapters[state["best_adapter"]]
        dataset = next(DatasetInfo.model_validate(d) for d in state["datasets"]
                       if d["version"] == best["dataset_version"])
        decisions = [{"iteration": d["iteration"], "action": d["decision"]["action"],
                      "targets": d["decision"]["targets"], "source": d["source"],
                      "rationale": d["decision"]["rationale"]} for d in state["decisions"]]
        baseline = EvalSummary.model_validate(state["baseline"])
        submission = (state.get("submissions") or [{}])[-1]
        test = TestComparison.model_validate(state["test_report"])
        if test.adapter is None or test.adapter.adapter_id != best["adapter_id"]:
            raise RuntimeError(f"the agent run {run_id} has no test evaluation of its best adapter")
        return {
            "run_dir": str(outcome.paths.root),
            "best_adapter": best["adapter_id"], "adapter_path": best["path"],
            "train_tokens": best["train_tokens"],
            "train_tokens_all_rounds": sum(a["train_tokens"] for a in state["adapters"]),
            "synthetic_rows": sum(dataset.synthetic_per_category.values()),
            "synthetic_per_category": dataset.synthetic_per_category,
            "original_per_category": dataset.original_per_category,
            "decisions": decisions,
            "dev": {"base": _eval_dict(baseline),
                    "rounds": [_eval_dict(EvalSummary.model_validate(e)) for e in state["evaluations"]]},
            # The agent's finish step scored base and best adapter on test; its submit step (when the best beat
            # the base on dev) had the simulator score the best adapter and computed the base's validation BPC.
            "test": {"base": _eval_dict(test.base), "best": _eval_dict(test.adapter)},
            "submission": {"adapter_id": submission.get("adapter_id"),
                           "validation_bpc": submission.get("validation_bpc"),
                           "base_validation_bpc": submission.get("base_validation_bpc")},
            "seconds": round(time.time() - started, 1),
        }

    def cached(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = self.results_dir / f"{name}.json"
        if path.is_file():
            log(f"seed {self.config.seed}: {name} already done ({path})")
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return loaded
        log(f"seed {self.config.seed}: {name} ...")
        load_before = os.getloadavg()[0]
        started = time.time()
        result = compute()
        result.setdefault("seconds", round(time.time() - started, 1))
        result["load1_start_end"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        path.write_text(json.dumps(result, indent=2, sort_keys=True), encoding="utf-8")
        log(f"seed {self.config.seed}: {name} done in {result['seconds']:.0f} s")
        return result

    def run(self) -> dict[str, Any]:
        from agent.pipeline import open_pipeline
        from agent.trace import Redactor
        from memory.runs import RunPaths

        agent = self.cached("agent_run", self.run_agent)
        paths = RunPaths(self.out / "bench").make()
        with open_pipeline(self.config, paths, Redactor()) as toolbox:
            toolbox.prepare_task()
            self._check_same_split(Path(agent["run_dir"]) / "task", paths.task_dir)
            bench = _Conditions(self, toolbox, agent)
            conditions = {
                "a": self.cached("a", bench.base),
                "b": self.cached("b", bench.reference),
                "c": self.cached("c", bench.uniform),
                "d": self.cached("d", bench.agent),
                "e": self.cached("e", bench.ours_original),
            }
        return {"seed": self.config.seed, "budget_T": agent["train_tokens"], "agent": agent,
                "conditions": conditions}

    @staticmethod
    def _check_same_split(agent_task: Path, bench_task: Path) -> None:
        for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
            if (agent_task / name).read_bytes() != (bench_task / name).read_bytes():
                raise RuntimeError(f"the benchmark's {name} differs from the agent's ({agent_task / name})")


class _Conditions:
    """The conditions' computations, on the benchmark's toolbox."""

    def __init__(self, seed_bench: SeedBench, toolbox: Any, agent: dict[str, Any]):
        self.config = seed_bench.config
        self.toolbox = toolbox
        self.agent_run = agent
        self.T = int(agent["train_tokens"])
        self.adapters_dir: Path = toolbox.paths.adapters_dir

    @property
    def weights(self) -> str:
        return str(self.config.base_model_weights or self.config.base_model)

    # -- scoring --
    def scores(self, label: str, adapter_id: str, submit_dir: Path) -> dict[str, Any]:
        test = with_task_metric(self.toolbox.evaluate(adapter_id, "test"),
                                self.toolbox.evaluator.task_metric(adapter_id, "test", None))
        return {"validation_bpc": self.submit(label, submit_dir), "test": _eval_dict(test)}

    def submit(self, label: str, adapter_dir: Path) -> float:
        """Publish and submit with a fresh wallet (FLock allows two submissions a day per wallet), let the
        simulator's validator score it, and read the score back."""
        from tools.flock.ledger import SubmissionLedger
        from tools.flock.submit import publish_and_submit
        from tools.publish import repo_name

        env = self.toolbox.env
        server = env.simulator
        task = env.client.get_task(env.task_id)
        with server.client(server.create_api_key("node")) as client:
            receipt = publish_and_submit(client, SubmissionLedger(self.toolbox.paths.root / f"ledger-{label}.sqlite"),
                                         env.publisher, task, adapter_dir, self.config.base_model,
                                         repo_name(f"bench-{label}", task.id, self.config.base_model))
            server.validate_pending()
            for item in client.wallet_submissions(task.id):
                if item.hg_repo_id == receipt.hg_repo_id and item.revision == receipt.revision:
                    if item.submission_phase_score is None:
                        break
                    return float(item.submission_phase_score)
        raise RuntimeError(f"the simulator gave no score to {label}'s submission {receipt.hg_repo_id}@"
                           f"{receipt.revision}")

    # -- training --
    def epochs_for(self, records: list[Any]) -> int:
        """Epochs of ``records`` needed to reach T real tokens (the token cap ends the run)."""
        from tools.models import load_tokenizer
        from tools.templates import tokenize_records

        task = self.toolbox.task
        examples = tokenize_records(records, load_tokenizer(self.weights), task.template, task.context_length)
        per_epoch = sum(len(e) for e in examples if sum(e.target_mask[1:]) > 0)
        return max(1, math.ceil(self.T / per_epoch))

    def ours(self, version: str) -> tuple[str, dict[str, Any]]:
        from tools.datastore import DataStore

        records = DataStore(self.toolbox.paths.data_dir / "store").load_version(version).records
        epochs = self.epochs_for(records)
        info = self.toolbox.train(version, 0, TrainOverrides(epochs=epochs), self.T)
        return info.adapter_id, {"adapter_id": info.adapter_id, "train_tokens": info.train_tokens, "epochs": epochs,
                                 "train_seconds": info.seconds, "records": len(records)}

    # -- the conditions --
    def base(self) -> dict[str, Any]:
        """Test scores from the agent's own finish step (the same evaluation); validation through the simulator
        as an untrained adapter, checked against the base model's validation BPC computed without an adapter."""
        from benchmarks.reference_recipe import untrained_adapter

        folder = untrained_adapter(self.weights, self.config.base_model, self.adapters_dir / "untrained",
                                   seed=self.config.seed)
        direct = self.agent_run["submission"]["base_validation_bpc"]
        if direct is None:  # the agent did not submit: compute it here
            direct = self.base_validation_direct()
        return {"validation_bpc": self.submit("a", folder), "validation_bpc_direct": direct,
                "test": self.agent_run["test"]["base"], "train_tokens": 0, "synthetic_rows": 0}

    def base_validation_direct(self) -> float:
        from tools.evaluate import score_adapter_for_validation

        task = self.toolbox.task
        task_json = json.loads((self.toolbox.env.task_dir / "task.json").read_text(encoding="utf-8"))
        validation = self.toolbox.env.task_dir / Path(task_json["data"]["validation_set_key"]).name
        return score_adapter_for_validation(self.config.base_model, None, validation, task.template,
                                            task.context_length, task.max_params,
                                            base_model=self.config.base_model_weights).bpc

    def reference(self) -> dict[str, Any]:
        from benchmarks.reference_recipe import run_reference
        from tools.models import load_tokenizer
        from tools.templates import tokenize_records
        from tools.train import bf16_supported

        task = self.toolbox.task
        tokenizer = load_tokenizer(self.weights)
        examples = [e for e in tokenize_records(self.toolbox.split("train"), tokenizer, task.template,
                                                task.context_length) if sum(e.target_mask[1:]) > 0]
        adapter_id = f"reference-seed{self.config.seed}"
        trained = run_reference(self.weights, self.config.base_model, examples, tokenizer.pad_token_id,
                                self.adapters_dir / adapter_id, task.context_length, 1, bf16_supported("cpu"),
                                max_train_tokens=self.T, seed=self.config.seed)
        result = self.scores("b", adapter_id, self.adapters_dir / adapter_id)
        return {**result, "adapter_id": adapter_id, "train_tokens": trained["real_tokens"],
                "steps": trained["steps"], "train_seconds": round(trained["train_time_s"], 1), "synthetic_rows": 0,
                "epochs": round(trained["real_tokens"] / sum(len(e) for e in examples), 2)}

    def uniform(self) -> dict[str, Any]:
        rows = int(self.agent_run["synthetic_rows"])
        targets = uniform_targets(rows, sorted(self.toolbox.task.categories))
        version = self.toolbox.prepare_task().dataset.version
        generation: dict[str, Any] = {"targets": targets}
        if targets:
            outcome = self.toolbox.generate(targets, {}, 1, self.config.budget.max_generation_tokens)
            version = outcome.dataset.version
            generation.update(accepted_per_category=outcome.accepted_per_category,
                              rejected_per_reason=outcome.rejected_per_reason, stop_reason=outcome.stop_reason,
                              generation_seconds=round(outcome.seconds, 1), writers=outcome.writers)
        adapter_id, training = self.ours(version)
        result = self.scores("c", adapter_id, self.adapters_dir / adapter_id)
        accepted = sum(generation.get("accepted_per_category", {}).values())
        return {**result, **training, "synthetic_rows": accepted, "generation": generation}

    def agent(self) -> dict[str, Any]:
        """Test scores from the agent's finish step; the validation score of the agent's own submission, or (when
        its best adapter did not beat the base on dev, so it submitted nothing) a submission made here."""
        run = self.agent_run
        submitted = run["submission"]
        if submitted["adapter_id"] == run["best_adapter"] and submitted["validation_bpc"] is not None:
            validation, source = float(submitted["validation_bpc"]), "the agent's own submission"
        else:
            target = self.adapters_dir / f"agent-{run['best_adapter']}"
            if not target.is_dir():
                shutil.copytree(run["adapter_path"], target)
            validation, source = self.submit("d", target), "submitted by the benchmark"
        return {"validation_bpc": validation, "validation_source": source, "test": run["test"]["best"],
                "adapter_id": run["best_adapter"], "train_tokens": self.T,
                "train_tokens_all_rounds": run["train_tokens_all_rounds"], "synthetic_rows": run["synthetic_rows"]}

    def ours_original(self) -> dict[str, Any]:
        adapter_id, training = self.ours(self.toolbox.prepare_task().dataset.version)
        result = self.scores("e", adapter_id, self.adapters_dir / adapter_id)
        return {**result, **training, "synthetic_rows": 0}


def uniform_targets(rows: int, categories: list[str]) -> dict[str, int]:
    """``rows`` spread evenly over the categories (the first ones in order get the remainder)."""
    if rows <= 0 or not categories:
        return {}
    share, extra = divmod(rows, len(categories))
    targets = {c: share + (1 if i < extra else 0) for i, c in enumerate(categories)}
    return {c: n for c, n in targets.items() if n > 0}


def _eval_dict(summary: EvalSummary) -> dict[str, Any]:
    return {"bpc": summary.bpc, "exec": summary.task_metric,
            "per_category_bpc": {c: s.bpc for c, s in summary.per_category.items()},
            "per_category_exec": {c: s.task_metric for c, s in summary.per_category.items()},
            "per_category_examples": {c: s.examples for c, s in summary.per_category.items()}}


def _log_step(node: str, update: dict[str, Any]) -> None:
    pending = update.get("pending")
    if node == "plan" and pending:
        decision = pending["decision"]
        log(f"  agent plan: {decision['action']} {decision['targets'] or ''} ({pending['source']})")
    elif node == "evaluate" and update.get("evaluations"):
        log(f"  agent evaluate: dev BPC {update['evaluations'][-1]['bpc']:.4f}")
    else:
        log(f"  agent {node}")


# ----- summary ---------------------------------------------------------------------------------------------------
def _stats(values: list[float | None]) -> dict[str, Any] | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return None
    return {"mean": statistics.fmean(present), "min": min(present), "max": max(present),
            "std": statistics.stdev(present) if len(present) > 1 else 0.0, "n": len(present), "values": present}


def summarize(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over seeds of every condition's scores, and the issue's targets checked on them."""
    summary: dict[str, Any] = {}
    for key in CONDITIONS:
        runs = [s["conditions"][key] for s in seeds if key in s["conditions"]]
        if not runs:
            continue
        categories = sorted({c for r in runs for c in r["test"]["per_category_bpc"]})
        summary[key] = {
            "validation_bpc": _stats([r["validation_bpc"] for r in runs]),
            "test_bpc": _stats([r["test"]["bpc"] for r in runs]),
            "test_exec": _stats([r["test"]["exec"] for r in runs]),
            "train_tokens": _stats([r["train_tokens"] for r in runs]),
            "synthetic_rows": _stats([r["synthetic_rows"] for r in runs]),
            "per_category_bpc": {c: _stats([r["test"]["per_category_bpc"].get(c) for r in runs]) for c in categories},
            "per_category_exec": {c: _stats([r["test"]["per_category_exec"].get(c) for r in runs])
                                  for c in categories},
        }
    return {"conditions": summary, "targets": check_targets(seeds)}


def check_targets(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets on the seed means: (d) beats (b) on validation BPC by >= 10% relative and beats (c);
    (d)'s execution accuracy is higher than (a)'s and (b)'s."""
    def mean_of(key: str, metric: str) -> float | None:
        values = [_metric(s["conditions"].get(key), metric) for s in seeds]
        present = [v for v in values if v is not None]
        return statistics.fmean(present) if present else None

    def relative(key: str) -> dict[str, Any]:
        per_seed = []
        for s in seeds:
            d, other = _metric(s["conditions"].get("d"), "validation"), _metric(s["conditions"].get(key), "validation")
            per_seed.append(None if d is None or other is None else (other - d) / other)
        d, other = mean_of("d", "validation"), mean_of(key, "validation")
        return {"of_means": None if d is None or other is None else (other - d) / other, "per_seed": per_seed}

    vs_b, vs_c = relative("b"), relative("c")
    exec_a, exec_b, exec_d = mean_of("a", "exec"), mean_of("b", "exec"), mean_of("d", "exec")
    return {
        "d_vs_b_validation_gain": vs_b, "d_vs_c_validation_gain": vs_c,
        "d_beats_b_by_10pct": vs_b["of_means"] is not None and vs_b["of_means"] >= 0.10,
        "d_beats_c": vs_c["of_means"] is not None and vs_c["of_means"] > 0,
        "exec": {"a": exec_a, "b": exec_b, "d": exec_d},
        "d_exec_above_a_and_b": exec_a is not None and exec_b is not None and exec_d is not None
        and exec_d > max(exec_a, exec_b),
    }


def _metric(condition: dict[str, Any] | None, metric: str) -> float | None:
    if condition is None:
        return None
    value = condition["validation_bpc"] if metric == "validation" else condition["test"]["exec"]
    return None if value is None else float(value)


def _fmt(stats: dict[str, Any] | None, digits: int = 4, percent: bool = False) -> str:
    if stats is None:
        return "n/a"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    mean = f"{stats['mean'] * scale:.{digits}f}{unit}"
    if stats["n"] < 2:
        return mean
    return f"{mean} ({stats['min'] * scale:.{digits}f}–{stats['max'] * scale:.{digits}f})"


def render_markdown(summary: dict[str, Any], seeds: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    conditions = summary["conditions"]
    seed_list = ", ".join(str(s["seed"]) for s in seeds)
    lines = [
        f"## Learning gain, demo text-to-SQL task, SmolLM2-135M-Instruct (seeds {seed_list}; {meta['mode']} mode)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Budget: {BUDGET_DEFINITION} T per seed: "
        + ", ".join(f"seed {s['seed']}: {s['budget_T']:,}" for s in seeds) + ".",
        "",
        "Mean over seeds, (min–max) in brackets. Validation BPC: the FLock simulator's validator on the held-back "
        "validation file; test: the agent's test split for each seed; SQL execution accuracy by greedy decoding.",
        "",
        "| condition | validation BPC (simulator) | test BPC | SQL exec. acc. (test) | final-adapter train tokens "
        "| synthetic rows |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in CONDITIONS.items():
        c = conditions.get(key)
        if c is None:
            continue
        lines.append(f"| {label} | {_fmt(c['validation_bpc'])} | {_fmt(c['test_bpc'])} | "
                     f"{_fmt(c['test_exec'], 1, percent=True)} | {_fmt(c['train_tokens'], 0)} | "
                     f"{_fmt(c['synthetic_rows'], 0)} |")
    present = [k for k in CONDITIONS if k in conditions]
    categories = sorted({cat for k in present for cat in conditions[k]["per_category_bpc"]})
    for title, field, digits, percent in (("Test BPC per category", "per_category_bpc", 4, False),
                                          ("SQL execution accuracy per category (test)", "per_category_exec", 0,
                                           True)):
        examples = {cat: [s["conditions"]["a"]["test"]["per_category_examples"].get(cat) for s in seeds
                          if "a" in s["conditions"]] for cat in categories}
        lines += ["", f"{title} (mean over seeds):", "",
                  "| category | test examples per seed | " + " | ".join(f"({k})" for k in present) + " |",
                  "|---|---:|" + "---:|" * len(present)]
        for cat in categories:
            cells = [_fmt(_mean_only(conditions[k][field].get(cat)), digits, percent) for k in present]
            counts = "/".join(str(n) for n in examples[cat])
            lines.append(f"| {cat} | {counts} | " + " | ".join(cells) + " |")
    targets = summary["targets"]
    lines += ["", "Targets (on the seed means):", ""]
    lines.append(_target_line("(d) beats (b) on validation BPC by >= 10% relative",
                              targets["d_vs_b_validation_gain"], targets["d_beats_b_by_10pct"]))
    lines.append(_target_line("(d) beats (c) on validation BPC", targets["d_vs_c_validation_gain"],
                              targets["d_beats_c"]))
    exec_ = targets["exec"]
    lines.append("- (d)'s SQL execution accuracy above (a)'s and (b)'s: "
                 + ", ".join(f"({k}) {_pct(v)}" for k, v in exec_.items())
                 + f" -> {'met' if targets['d_exec_above_a_and_b'] else 'NOT met'}")
    lines += ["", "Agent decisions (policy planner):", ""]
    for s in seeds:
        agent = s["agent"]
        rounds = [f"{d['action']} {_targets_text(d['targets'])}".strip() for d in agent["decisions"]]
        dev = [f"{r['bpc']:.4f}" for r in agent["dev"]["rounds"]]
        lines.append(f"- seed {s['seed']}: {' -> '.join(rounds)}; dev BPC base {agent['dev']['base']['bpc']:.4f}, "
                     f"rounds {', '.join(dev)}; final adapter {agent['best_adapter']} ({agent['synthetic_rows']} "
                     f"synthetic rows: {_targets_text(agent['synthetic_per_category'])})")
    load = meta["load"]
    lines += ["", f"Machine: {load['cpu_count']} CPU cores, 1-minute load average mean {load['load1_mean']} "
                  f"(min {load['load1_min']}, max {load['load1_max']}, {load['samples']} samples); "
                  f"torch threads {load.get('torch_threads', 'default')}; bf16 matmul "
                  f"{' / '.join(str(x) for x in load.get('bf16_matmul_gflops_start_end', []))} GFLOP/s at start / end; "
                  f"wall time {meta['seconds'] / 60:.0f} min (the longest seed when seeds ran side by side)."]
    return "\n".join(lines) + "\n"


def _matmul_probe() -> float:
    """bf16 1024x1024 matmul GFLOP/s with the current threads: how fast the shared machine is right now."""
    import torch

    from benchmarks.train_throughput import matmul_peak_gflops

    return round(matmul_peak_gflops(torch.bfloat16), 1)


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _mean_only(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if stats is None else {**stats, "n": 1}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _targets_text(targets: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in targets.items())


def _target_line(text: str, gain: dict[str, Any], met: bool) -> str:
    per_seed = ", ".join("n/a" if g is None else f"{g:+.1%}" for g in gain["per_seed"])
    of_means = "n/a" if gain["of_means"] is None else f"{gain['of_means']:+.1%}"
    return f"- {text}: {of_means} (per seed: {per_seed}) -> {'met' if met else 'NOT met'}"


# ----- entry point -----------------------------------------------------------------------------------------------
def merge_meta(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """One meta for seeds run by separate processes (side by side or one after another)."""
    if len(metas) == 1:
        return metas[0]
    loads = [m["load"] for m in metas]
    samples = sum(load["samples"] for load in loads)
    return {**metas[0],
            "command": "; ".join(dict.fromkeys(m["command"] for m in metas)),
            "seconds": max(m["seconds"] for m in metas),
            "load": {"cpu_count": loads[0]["cpu_count"], "samples": samples,
                     "load1_mean": round(sum(x["load1_mean"] * x["samples"] for x in loads) / max(samples, 1), 2),
                     "load1_min": min(x["load1_min"] for x in loads), "load1_max": max(x["load1_max"] for x in loads),
                     "torch_threads": " / ".join(str(x.get("torch_threads")) for x in loads),
                     "bf16_matmul_gflops_start_end": [g for x in loads
                                                      for g in x.get("bf16_matmul_gflops_start_end", [])]}}


def write_summary(out: Path, seeds: list[int]) -> str:
    """Combine the seeds' results (each written by the process that ran it) into results.json and results.md."""
    runs = []
    for seed in seeds:
        path = out / f"seed{seed}" / "seed_result.json"
        if not path.is_file():
            raise SystemExit(f"error: {path}: seed {seed} has not finished (run it with --seeds {seed})")
        runs.append(json.loads(path.read_text(encoding="utf-8")))
    results = [r["result"] for r in runs]
    meta = merge_meta([r["meta"] for r in runs])
    summary = summarize(results)
    markdown = render_markdown(summary, results, meta)
    (out / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, "seeds": results}, indent=2,
                                                 sort_keys=True), encoding="utf-8")
    (out / "results.md").write_text(markdown, encoding="utf-8")
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budget, one seed (minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1; quick: 0)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/learning-gain[-quick])")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice). On a shared, "
                        "oversubscribed machine one thread per process measured about twice as fast as two")
    parser.add_argument("--summarize", action="store_true",
                        help="only combine the given seeds' finished results into results.json and results.md")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([0] if args.quick else [0, 1])
    out: Path = args.out or ROOT / "runs" / ("learning-gain-quick" if args.quick else "learning-gain")
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        run_seeds(args, seeds, out, argv)
    markdown = write_summary(out, seeds)
    print()
    print(markdown)
    log(f"results: {out / 'results.json'}, {out / 'results.md'}")


def run_seeds(args: argparse.Namespace, seeds: list[int], out: Path, argv: list[str] | None) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = "python benchmarks/learning_gain.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    from agent import progress

    progress.set_reporter(LogReporter())
    for seed in seeds:
        started = time.time()
        speed = [_matmul_probe()]
        with LoadSampler() as load:
            config = benchmark_config(seed, out / f"seed{seed}" / "runs", quick=args.quick)
            log(f"seed {seed}: agent budget {config.budget.model_dump()}, train {config.train.model_dump()}")
            result = SeedBench(config, out / f"seed{seed}").run()
        speed.append(_matmul_probe())
        meta = {"mode": "quick" if args.quick else "full", "command": command.strip(),
                "load": {**load.summary(), "torch_threads": _torch_threads(), "bf16_matmul_gflops_start_end": speed},
                "seconds": time.time() - started, "budget_definition": BUDGET_DEFINITION,
                "agent_settings": QUICK_SETTINGS if args.quick else FULL_SETTINGS}
        (out / f"seed{seed}" / "seed_result.json").write_text(
            json.dumps({"meta": meta, "result": result}, indent=2, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    main()
