"""The agent's toolbox on the real pipeline: FLock (live API or the local simulator), the data layer, the
generation engine, the trainer, the evaluator and the publishers.

Every method is idempotent and keyed by run, iteration and content: results are kept in the run folder, so a
method called again after a crash (the node that called it is re-run on resume) returns the same result without
redoing finished work, and a submission is never sent twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent import progress
from agent.config import RunConfig
from agent.state import AdapterInfo, CategoryScore, DatasetInfo, EvalSummary, SubmissionInfo, TaskInfo, TrainOverrides
from agent.toolbox import GenerateOutcome, PreparedTask, TestComparison
from agent.trace import Redactor
from memory.runs import RunPaths
from tools.data import FlockRecord, SplitFractions, load_jsonl, stratified_split, write_jsonl
from tools.fileio import atomic_write_text
from tools.tasks import TaskPlugin, detect_plugin

DEMO_DIRS = {
    "demo": Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "text2sql",
    "demo-fc": Path(__file__).resolve().parent.parent / "tools" / "demo_tasks" / "function_calling",
}


class PipelineError(RuntimeError):
    """A stage failed in a way the user must fix (bad task, refused model, unreachable endpoint)."""


@dataclass
class TaskEnvironment:
    """Where the task lives: a FedLedger client, a publisher, and (for local tasks) the simulator."""

    client: Any
    publisher: Any
    task_id: int
    simulator: Any | None = None
    task_dir: Path | None = None

    @property
    def local(self) -> bool:
        return self.simulator is not None


#: Fault rules (a JSON list of :class:`tools.flock.simulator.faults.FaultRule` objects) injected into the
#: in-process simulator of a local run, for reliability tests; off unless set, refused with the live API.
SIM_FAULTS_ENV = "SYNTHGEN_SIM_FAULTS"


def simulator_faults() -> list[Any]:
    """The fault rules named by ``$SYNTHGEN_SIM_FAULTS`` (none when unset)."""
    from pydantic import TypeAdapter, ValidationError

    from tools.flock.simulator.faults import FaultRule

    raw = os.environ.get(SIM_FAULTS_ENV, "").strip()
    if not raw:
        return []
    try:
        return TypeAdapter(list[FaultRule]).validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PipelineError(f"${SIM_FAULTS_ENV}: {where}: {first['msg']}") from None


@contextlib.contextmanager
def open_environment(config: RunConfig, paths: RunPaths, redactor: Redactor) -> Iterator[TaskEnvironment]:
    """Start the in-process simulator for local tasks (state kept in the run folder, so a resumed run finds its
    submissions), or connect to the live FedLedger API."""
    from tools.flock.client import FedLedgerClient, RetryPolicy
    from tools.publish import HubPublisher

    settings = config.task
    http: dict[str, Any] = {"timeout": settings.timeout_s,
                            "retry": RetryPolicy(max_attempts=settings.retry_attempts,
                                                 initial_wait_s=settings.retry_wait_s,
                                                 jitter_s=min(1.0, settings.retry_wait_s))}
    faults = simulator_faults()
    if config.task.kind == "flock":
        if faults:
            raise PipelineError(f"${SIM_FAULTS_ENV} injects faults into the local simulator only; unset it to run "
                                "against the live FLock API")
        api_key = os.environ.get(config.task.api_key_env, "")
        redactor.add(api_key)
        redactor.add(os.environ.get("HF_TOKEN"))
        with FedLedgerClient(config.task.api_base_url, api_key, **http) as client:
            yield TaskEnvironment(client=client, publisher=HubPublisher(), task_id=int(config.task.task_id or 0))
        return
    from tools.flock.simulator.server import SimulatorServer
    from tools.publish import LocalPublisher

    task_dir = config.task.task_dir if config.task.kind == "dir" else DEMO_DIRS[config.task.kind]
    assert task_dir is not None
    sim_dir = paths.root / "flock-sim"
    # The simulator's validator loads the base model like FLock's does, from the Hub id, unless weights are given.
    weights: dict[str, str | Path] | None = (
        {config.base_model: config.base_model_weights} if config.base_model_weights else None)
    server = SimulatorServer([task_dir], state_path=sim_dir / "state.sqlite", publisher_root=sim_dir / "publisher",
                             base_model_paths=weights, faults=faults)
    redactor.add(server.node_api_key)
    redactor.add(server.validator_api_key)
    redactor.add(server.admin_token)
    with server, server.client(**http) as client:
        publisher = HubPublisher() if config.publishes_to_hub else LocalPublisher(sim_dir / "publisher")
        yield TaskEnvironment(client=client, publisher=publisher, task_id=server.task_ids[0], simulator=server,
                              task_dir=Path(task_dir))


@contextlib.contextmanager
def open_pipeline(config: RunConfig, paths: RunPaths, redactor: Redactor) -> Iterator[PipelineToolbox]:
    with open_environment(config, paths, redactor) as env:
        toolbox = PipelineToolbox(config, paths, env)
        try:
            yield toolbox
        finally:
            toolbox.close()


def _digest(value: Any, length: int = 10) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _write_model(path: Path, model: BaseModel) -> None:
    atomic_write_text(path, model.model_dump_json(indent=2))


class PipelineToolbox:
    """Implements :class:`agent.toolbox.Toolbox` on the project's stages."""

    def __init__(self, config: RunConfig, paths: RunPaths, env: TaskEnvironment):
        self.config = config
        self.paths = paths
        self.env = env
        self._plugin: TaskPlugin | None = None
        self._splits: dict[str, list[FlockRecord]] = {}
        self._task: TaskInfo | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._backend: Any = None

    @property
    def weights(self) -> str:
        """Where the base model's weights load from: the configured folder/GGUF, else the Hub id itself."""
        return str(self.config.base_model_weights or self.config.base_model)

    def close(self) -> None:
        self._model = None
        self._backend = None

    # ----- task and data ---------------------------------------------------------------------------------------
    @property
    def _prepared_path(self) -> Path:
        return self.paths.task_dir / "prepared.json"

    def prepare_task(self) -> PreparedTask:
        """Fetch the task, check the base model against it, download and validate its training set, profile and
        split it. Done once per run: a second call returns the stored result."""
        if self._prepared_path.is_file():
            return PreparedTask.model_validate_json(self._prepared_path.read_text(encoding="utf-8"))
        from tools.flock.submit import check_base_model
        from tools.models import template_for

        task = self.env.client.get_task(self.env.task_id)
        if self.config.task.kind == "flock" and not task.in_submission_phase:
            raise PipelineError(f"task {task.id} is in status {task.status!r}, not submission_phase: "
                                "FLock would refuse a submission")
        check_base_model(task, self.config.base_model)
        with progress.step("download training set", None):
            downloaded = self.env.client.download_training_set(self.env.task_id,
                                                               self.paths.task_dir / "training_set.jsonl", task=task)
        report = load_jsonl(downloaded.path, strict=False)
        plugin = detect_plugin(report.records)
        fractions = SplitFractions(train=1 - self.config.eval.dev_fraction - self.config.eval.test_fraction,
                                   dev=self.config.eval.dev_fraction, test=self.config.eval.test_fraction)
        splits = stratified_split(report.records, category=lambda r: plugin.categorize(r).primary,
                                  key=lambda r: r.record_id, fractions=fractions, seed=self.config.seed)
        for name, records in (("train", splits.train), ("dev", splits.dev), ("test", splits.test)):
            write_jsonl(records, self.paths.task_dir / f"{name}.jsonl")
        store = self._store()
        base = store.put_shard(splits.train, kind="base")
        version = self._save_version(0, [base])
        info = TaskInfo(
            task_id=task.id, title=task.title, task_type=plugin.name, categories=plugin.categories(),
            context_length=int(task.data.context_length or 4096), max_params=int(task.data.max_params or 0),
            base_model=self.config.base_model, template=template_for(self.config.base_model),
            split_sizes=splits.sizes(), description_excerpt=_plain_text(task.description)[:400],
        )
        dataset = DatasetInfo(version=version, original_per_category=plugin.category_counts(splits.train),
                              synthetic_per_category={})
        prepared = PreparedTask(task=info, dataset=dataset, skipped_lines=report.skipped,
                                training_sha256=downloaded.sha256)
        _write_model(self._prepared_path, prepared)
        return prepared

    def _load_prepared(self) -> None:
        """Rebuild the in-memory view of the prepared task (after a restart the files are the truth)."""
        if self._task is not None:
            return
        if not self._prepared_path.is_file():
            raise PipelineError("the task is not prepared yet (bootstrap did not finish)")
        prepared = PreparedTask.model_validate_json(self._prepared_path.read_text(encoding="utf-8"))
        self._task = prepared.task
        for name in ("train", "dev", "test"):
            self._splits[name] = load_jsonl(self.paths.task_dir / f"{name}.jsonl").records
        from tools.tasks import get_plugin

        self._plugin = get_plugin(prepared.task.task_type).fit(
            load_jsonl(self.paths.task_dir / "training_set.jsonl", strict=False).records)

    @property
    def task(self) -> TaskInfo:
        self._load_prepared()
        assert self._task is not None
        return self._task

    @property
    def plugin(self) -> TaskPlugin:
        self._load_prepared()
        assert self._plugin is not None
        return self._plugin

    def split(self, name: str) -> list[FlockRecord]:
        self._load_prepared()
        return self._splits[name]

    def _store(self) -> Any:
        from tools.datastore import DataStore

        return DataStore(self.paths.data_dir / "store")

    def _save_version(self, iteration: int, shards: list[Any]) -> str:
        """Versions are named by iteration and content hash, so equal data gives an equal name."""
        store = self._store()
        name = f"iter{iteration}-{_digest([s.sha256 for s in shards])}"
        if name not in store.versions():
            store.save_version(name, shards, meta={"iteration": iteration})
        return str(name)

    # ----- models --------------------------------------------------------------------------------------------------
    def _base(self) -> tuple[Any, Any]:
        """The base model and tokenizer, loaded once and shared by evaluation (adapters are applied unmerged and
        removed after each use, leaving the base unchanged)."""
        if self._model is None:
            from tools.models import load_causal_lm, load_tokenizer

            self._tokenizer = load_tokenizer(self.weights)
            self._model = load_causal_lm(self.weights)
            self._model.eval()
        return self._model, self._tokenizer

    # ----- evaluation ----------------------------------------------------------------------------------------------
    def evaluate(self, adapter_id: str | None, split: str, with_task_metric: bool | None = None) -> EvalSummary:
        if split not in ("dev", "test"):
            raise PipelineError(f"split must be dev or test, got {split!r}")
        with_task_metric = self.config.eval.task_metric if with_task_metric is None else with_task_metric
        cache = self.paths.evals_dir / f"{adapter_id or 'base'}-{split}{'-tm' if with_task_metric else ''}.json"
        if cache.is_file():
            return EvalSummary.model_validate_json(cache.read_text(encoding="utf-8"))
        from tools.evaluate import flock_score, task_metrics

        records = self.split(split)
        categories = [self.plugin.categorize(r).primary for r in records]
        model, tokenizer = self._base()
        adapter = self._adapter_dir(adapter_id) if adapter_id else None
        with progress.step(f"score {adapter_id or 'base model'} on {split}", len(records)) as advance:
            score = flock_score(model, records, template=self.task.template, context_length=self.task.context_length,
                                tokenizer=tokenizer, adapter=adapter, categories=categories)
            advance(len(records))
        metric_name: str | None = None
        overall_metric: float | None = None
        per_category_metric: dict[str, float] = {}
        if with_task_metric:
            metric_name = self.plugin.headline_metric
            with progress.step(f"decode {adapter_id or 'base model'} on {split}", len(records)) as advance, \
                    _applied(model, adapter) as scoring_model:
                report = task_metrics(scoring_model, tokenizer, records, template=self.task.template,
                                      task_type=self.task.task_type, categories=categories, metrics=[metric_name],
                                      max_new_tokens=self.config.eval.max_new_tokens)
                advance(len(records))
            overall_metric = report.overall.get(metric_name)
            per_category_metric = {c: m[metric_name] for c, m in report.per_category.items() if metric_name in m}
        summary = EvalSummary(
            split=split,
            adapter_id=adapter_id, bpc=score.bpc,
            per_category={c: CategoryScore(bpc=s.bpc, examples=s.num_examples, task_metric=per_category_metric.get(c))
                          for c, s in score.per_category.items()},
            task_metric_name=metric_name, task_metric=overall_metric,
        )
        _write_model(cache, summary)
        return summary

    def _adapter_dir(self, adapter_id: str) -> Path:
        folder = self.paths.adapters_dir / adapter_id
        if not (folder / "adapter_config.json").is_file():
            raise PipelineError(f"adapter {adapter_id} not found at {folder}")
        return folder

    # ----- generation ----------------------------------------------------------------------------------------------
    def _current_version(self) -> tuple[str, Any]:
        store = self._store()
        names = sorted(store.versions(), key=lambda n: int(n.split("-")[0][4:]))
        return names[-1], store

    def generate(self, targets: dict[str, int], iteration: int, max_generation_tokens: int) -> GenerateOutcome:
        from tools.backends import BackendSpec, SamplingSettings
        from tools.generate import Budget, GenerationRequest, generate
        from tools.quality import DedupGate, DedupIndex, LengthGate, default_gates

        previous_name, store = self._current_version()
        previous = store.load_version(previous_name)
        key = _digest({"targets": targets, "iteration": iteration, "previous": previous_name})
        done = self.paths.data_dir / f"generate-{iteration}-{key}.json"
        if done.is_file():
            return GenerateOutcome.model_validate_json(done.read_text(encoding="utf-8"))
        plugin = self.plugin
        model, tokenizer = self._base()
        del model
        index_path = self.paths.data_dir / "dedup_index.npz"
        gates = default_gates(plugin, existing=previous.records, held_out=self.split("dev") + self.split("test"),
                              dedup_index=DedupIndex.load(index_path) if index_path.is_file() else DedupIndex(),
                              length=LengthGate(tokenizer, self.task.template, self.task.context_length))
        gen = self.config.generator
        strategy: Any = plugin.make_strategy(self.split("train"))
        if gen.backend == "none":
            strategy = WritersOnly(strategy)
        spec = BackendSpec(kind="openai" if gen.backend == "openai" else "local", model=gen.model,
                           base_url=gen.base_url, api_key_env=gen.api_key_env, max_concurrency=gen.concurrency,
                           batch_size=gen.batch_size)
        request = GenerationRequest(
            task=plugin.name, targets=targets, seed_pool=self.split("train"), backend=spec,
            sampling=SamplingSettings(temperature=gen.temperature, max_new_tokens=gen.max_new_tokens),
            budget=Budget(max_generated_tokens=max(1, max_generation_tokens)), seed=self.config.seed,
            iteration=iteration, batch_size=gen.batch_size,
        )
        backend = self._generation_backend(spec)
        total = sum(targets.values())
        with progress.step(f"generate {total} rows", total) as advance:
            seen = [0]

            def on_batch(p: Any) -> None:
                advance(p.accepted - seen[0])
                seen[0] = p.accepted

            result = generate(request, strategy, backend, gates, store=store, progress=on_batch)
        shards = list(previous.manifest.shards)
        if result.accepted:
            provenance = [row.provenance.model_dump(mode="json") for row in result.accepted]
            shards.append(store.put_shard(result.records(), kind="synthetic", provenance=provenance))
        dedup = next((g for g in gates.gates if isinstance(g, DedupGate)), None)
        if dedup is not None:
            dedup.index.save(index_path)
        version = self._save_version(iteration, shards)
        synthetic = plugin.category_counts(store.load_version(version).synthetic())
        accepted = {c: p.accepted for c, p in result.per_category.items()}
        acceptance = _gate_pass_rates(result)
        outcome = GenerateOutcome(
            dataset=DatasetInfo(version=version, original_per_category=plugin.category_counts(self.split("train")),
                                synthetic_per_category=synthetic, acceptance=acceptance),
            accepted_per_category=accepted,
            rejected_per_reason=dict(sorted(Counter(r.reason for r in result.rejected if r.reason).items())),
            generation_tokens=result.completion_tokens, seconds=result.seconds, stop_reason=result.stop_reason,
            writers=dict(Counter(row.provenance.writer or "unknown" for row in result.accepted)),
        )
        _write_model(done, outcome)
        return outcome

    def _generation_backend(self, spec: Any) -> Any:
        if self.config.generator.backend == "none":
            return NoModelBackend()
        if self._backend is None:
            from tools.backends import LocalBackend, make_backend

            if spec.kind == "local" and spec.model in (self.config.base_model, self.weights):
                model, tokenizer = self._base()
                self._backend = LocalBackend(model, tokenizer, model_name=spec.model, batch_size=spec.batch_size)
            else:
                self._backend = make_backend(spec)
        return self._backend

    # ----- training ------------------------------------------------------------------------------------------------
    def train(self, dataset_version: str, iteration: int, overrides: TrainOverrides | None,
              max_train_tokens: int, max_seconds: float | None = None) -> AdapterInfo:
        from tools.train import TrainConfig, train_adapter

        settings = self.config.train
        config = TrainConfig(
            lora_r=overrides.lora_rank if overrides and overrides.lora_rank else settings.lora_rank,
            lora_alpha=2 * overrides.lora_rank if overrides and overrides.lora_rank else settings.lora_alpha,
            learning_rate=overrides.learning_rate if overrides and overrides.learning_rate else settings.learning_rate,
            epochs=overrides.epochs if overrides and overrides.epochs else settings.epochs,
            batch_tokens=settings.batch_tokens, seed=self.config.seed, qlora=settings.qlora,
            max_train_tokens=max(1, max_train_tokens), max_seconds=max_seconds,
        )
        # The time limit depends on when the step runs (a resume has less left): not part of the adapter's identity.
        identity = config.model_dump(exclude={"max_seconds"})
        adapter_id = f"a{iteration}-{_digest({'data': dataset_version, 'config': identity}, 8)}"
        records = self._store().load_version(dataset_version).records
        started = time.time()
        with progress.step(f"train {adapter_id}", None) as advance:
            def on_progress(p: Any) -> None:
                advance(p.step - getattr(on_progress, "last", 0), total=p.total_steps)
                on_progress.last = p.step  # type: ignore[attr-defined]

            result = train_adapter(self.weights, records, self.paths.adapters_dir / adapter_id, config,
                                   template=self.task.template, context_length=self.task.context_length,
                                   progress=on_progress, resume=True, hub_id=self.config.base_model)
        curve = result.loss_curve
        if len(curve) > 200:
            stride = len(curve) / 200
            curve = [curve[int(i * stride)] for i in range(200)]
        return AdapterInfo(adapter_id=adapter_id, iteration=iteration, dataset_version=dataset_version,
                           path=str(result.adapter_dir), train_tokens=result.real_tokens,
                           final_loss=result.loss_curve[-1] if result.loss_curve else None,
                           loss_curve=[round(x, 5) for x in curve],
                           seconds=round(result.wall_time_s or time.time() - started, 2))

    # ----- submission ----------------------------------------------------------------------------------------------
    def submit(self, adapter_id: str) -> SubmissionInfo:
        from tools.flock.ledger import SubmissionLedger
        from tools.flock.submit import publish_and_submit
        from tools.publish import repo_name

        adapter_dir = self._adapter_dir(adapter_id)
        task = self.env.client.get_task(self.env.task_id)
        user = os.environ.get("HF_USERNAME", "") if self.config.publishes_to_hub else "synthgen-local"
        repo_id = repo_name(user, task.id, self.config.base_model)
        ledger = SubmissionLedger.in_run_dir(self.paths.root)
        with progress.step(f"publish and submit {adapter_id}", None):
            receipt = publish_and_submit(self.env.client, ledger, self.env.publisher, task, adapter_dir,
                                         self.config.base_model, repo_id)
        validation_bpc = base_bpc = None
        if self.env.local:
            validation_bpc = self._simulator_score(receipt.hg_repo_id, receipt.revision)
            base_bpc = self._base_validation_bpc()
        return SubmissionInfo(adapter_id=adapter_id, repo_id=receipt.hg_repo_id, revision=receipt.revision,
                              task_id=task.id, validation_bpc=validation_bpc, base_validation_bpc=base_bpc)

    def _simulator_score(self, repo_id: str, revision: str) -> float | None:
        """Let the simulator's validator score pending submissions, then read this one's score."""
        assert self.env.simulator is not None
        with progress.step("FLock simulator validates the submission", None):
            self.env.simulator.validate_pending()
        for item in self.env.client.wallet_submissions(self.env.task_id):
            if item.hg_repo_id == repo_id and item.revision == revision:
                score = item.submission_phase_score
                return float(score) if score is not None else None
        return None

    def _base_validation_bpc(self) -> float | None:
        """The base model's score on the simulator's held-back validation file, for comparison (the agent never
        sees this file otherwise)."""
        cache = self.paths.evals_dir / "base-validation.json"
        if cache.is_file():
            return float(json.loads(cache.read_text())["bpc"])
        from tools.evaluate import flock_score

        assert self.env.task_dir is not None
        task_json = json.loads((self.env.task_dir / "task.json").read_text(encoding="utf-8"))
        key = task_json.get("data", {}).get("validation_set_key", "validation_set.jsonl")
        records = load_jsonl(self.env.task_dir / Path(key).name).records
        model, tokenizer = self._base()
        score = flock_score(model, records, template=self.task.template, context_length=self.task.context_length,
                            tokenizer=tokenizer, max_params=self.task.max_params or None)
        atomic_write_text(cache, json.dumps({"bpc": score.bpc}))
        return score.bpc

    # ----- reporting -----------------------------------------------------------------------------------------------
    def compare_on_test(self, adapter_id: str | None) -> TestComparison:
        base = self.evaluate(None, "test")
        adapter = self.evaluate(adapter_id, "test") if adapter_id else None
        deltas: dict[str, float] = {}
        if adapter is not None:
            deltas["overall"] = round(adapter.bpc - base.bpc, 6)
            for category, score in base.per_category.items():
                if category in adapter.per_category:
                    deltas[category] = round(adapter.per_category[category].bpc - score.bpc, 6)
            if base.task_metric_name and base.task_metric is not None and adapter.task_metric is not None:
                deltas[base.task_metric_name] = round(adapter.task_metric - base.task_metric, 6)
        return TestComparison(base=base, adapter=adapter, deltas=deltas)


@contextlib.contextmanager
def _applied(model: Any, adapter: Path | None) -> Iterator[Any]:
    """The base model with an adapter applied (unmerged) for the duration, then removed."""
    if adapter is None:
        yield model
        return
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    try:
        yield wrapped
    finally:
        wrapped.unload()


def _gate_pass_rates(result: Any) -> dict[str, float]:
    """Share of gated candidates that passed each gate (from the rows' provenance)."""
    passed: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for row in [*result.accepted, *result.rejected]:
        for gate in row.provenance.gates:
            seen[gate.gate] += 1
            passed[gate.gate] += int(gate.passed)
    return {gate: round(passed[gate] / seen[gate], 4) for gate in sorted(seen)}


def _plain_text(html_text: str) -> str:
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html_text or "")).strip()


class WritersOnly:
    """A strategy with its model calls removed: every draft is completed by the deterministic writers."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name
        self.plugin = inner.plugin
        self.seeds = inner.seeds

    def draft(self, category: str, rng: Any) -> Any:
        drafted = self.inner.draft(category, rng)
        if hasattr(drafted, "messages"):
            drafted.messages = None
        return drafted

    def complete(self, draft: Any, model_text: str | None) -> Any:
        return self.inner.complete(draft, None)


class NoModelBackend:
    """The backend of a run configured without a generator model; never asked for text (see WritersOnly)."""

    model_name = "none"

    def generate(self, batch: Any, sampling: Any, seed: int) -> list[Any]:
        raise PipelineError("generator.backend is 'none' but a strategy asked for model text")
