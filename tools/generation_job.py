"""A generation job on a task: targeted synthetic data with gates, provenance, versions and a diversity report.

``synthgen generate`` (agent/cli/generate.py) runs one: :func:`prepare_job` reads the task and assembles the
generation the way the agent does (:func:`tools.generation_setup.assemble_generation`), :meth:`GenerationJob.run`
generates and writes, under ``out``:

* ``accepted.jsonl``   accepted rows in FLock JSONL (what training uses)
* ``rejected.jsonl``   one JSON object per rejected attempt: category, reason, detail, record (or null), provenance
* ``provenance.jsonl`` one JSON object per accepted row, same order as accepted.jsonl
* ``report.json``      the diversity and balance report
* ``store/``           content-addressed shards, the version manifest ``iter<N>`` (base + synthetic shards),
                       the generation journal (a rerun after a crash resumes it) and the dedup index carried
                       across iterations
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.backends import BackendSpec, SamplingSettings
from tools.data import DataValidationError, FlockRecord, Splits, load_jsonl, stratified_split, write_jsonl
from tools.datastore import DataStore, ShardRef, atomic_write_bytes
from tools.demo_tasks import DEMO_TASKS
from tools.generate import BatchProgress, Budget, GenerationRequest, GenerationResult
from tools.generation_setup import AssembledGeneration, assemble_generation
from tools.models import DEFAULT_MODEL
from tools.quality import LengthGate
from tools.tasks import detect_plugin, get_plugin
from tools.tasks.base import TaskPlugin

if TYPE_CHECKING:
    from tools.diversity import DiversityReport

DEFAULT_CONTEXT_LENGTH = 4096


class JobInputError(ValueError):
    """The job's task, targets or models cannot be used; the message names the option and the problem."""


@dataclass
class TaskData:
    name: str
    training: list[FlockRecord]
    validation: list[FlockRecord]
    context_length: int
    base_models: list[str]


def load_task(spec: str, *, lenient: bool) -> TaskData:
    """A demo name, a task folder (training_set.jsonl, optional validation_set.jsonl and task.json) or a JSONL."""
    path = DEMO_TASKS.get(spec, Path(spec))
    if not path.exists():
        raise JobInputError(f"--task {spec!r}: no such demo task, folder or file (demos: {', '.join(DEMO_TASKS)})")
    folder = path if path.is_dir() else path.parent
    training_path = path / "training_set.jsonl" if path.is_dir() else path
    meta: dict[str, Any] = {}
    task_json = folder / "task.json"
    if path.is_dir() and task_json.is_file():
        try:
            meta = json.loads(task_json.read_text(encoding="utf-8")).get("data") or {}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise JobInputError(f"{task_json}: not a FLock task object ({exc})") from None
    try:
        training = load_jsonl(training_path, strict=not lenient).records
        validation_path = folder / "validation_set.jsonl"
        validation = load_jsonl(validation_path, strict=not lenient).records \
            if path.is_dir() and validation_path.is_file() else []
    except DataValidationError as exc:
        raise JobInputError(str(exc)) from None
    context_length = int(meta.get("context_length") or DEFAULT_CONTEXT_LENGTH)
    return TaskData(name=spec, training=training, validation=validation, context_length=context_length,
                    base_models=list(meta.get("supported_base_models") or []))


def _length_gate(base_model: str, context_length: int) -> LengthGate:
    from tools.models import load_tokenizer, template_for

    try:
        template = template_for(base_model)
    except KeyError as exc:
        raise JobInputError(f"--base-model {base_model!r}: {exc.args[0]}") from None
    try:
        tokenizer = load_tokenizer(base_model)
    except Exception as exc:
        raise JobInputError(f"--base-model {base_model!r}: cannot load its tokenizer ({exc})") from None
    return LengthGate(tokenizer, template, context_length)


def write_outputs(out: Path, result: GenerationResult) -> None:
    write_jsonl(result.records(), out / "accepted.jsonl")
    lines = [json.dumps(row.model_dump(mode="json"), ensure_ascii=False, sort_keys=True) for row in result.rejected]
    atomic_write_bytes(out / "rejected.jsonl", "".join(line + "\n" for line in lines).encode("utf-8"))
    provenance = [json.dumps(row.provenance.model_dump(mode="json"), ensure_ascii=False, sort_keys=True)
                  for row in result.accepted]
    atomic_write_bytes(out / "provenance.jsonl", "".join(line + "\n" for line in provenance).encode("utf-8"))


def save_version(store: DataStore, base: ShardRef, result: GenerationResult, iteration: int,
                 request: GenerationRequest) -> str:
    """Version ``iter<N>``: the base shard, the previous iteration's synthetic shards, and this one's."""
    shards = [base]
    parent = f"iter{iteration - 1}" if iteration > 0 and f"iter{iteration - 1}" in store.versions() else None
    if parent is not None:
        shards += [s for s in store.manifest(parent).shards if s.kind == "synthetic"]
    if result.accepted:
        provenance = [row.provenance.model_dump(mode="json") for row in result.accepted]
        shards.append(store.put_shard(result.records(), kind="synthetic", provenance=provenance))
    name = f"iter{iteration}"
    key = request.journal_key()
    store.save_version(name, shards, parent=parent,
                       meta={"iteration": iteration, "request": key, "stop_reason": result.stop_reason},
                       replace_if=lambda existing: existing.meta.get("request") == key)
    return name


@dataclass
class JobOutcome:
    result: GenerationResult
    report: DiversityReport
    version: str


@dataclass
class GenerationJob:
    """A job with its task read, its targets checked and its generation assembled, ready to run."""

    data: TaskData
    plugin: TaskPlugin
    targets: dict[str, int]
    splits: Splits[FlockRecord]
    held_out: list[FlockRecord]
    store: DataStore
    base_shard: ShardRef
    generation: AssembledGeneration
    out: Path

    @property
    def request(self) -> GenerationRequest:
        return self.generation.request

    def run(self, progress: Callable[[BatchProgress], None], *, embeddings: bool) -> JobOutcome:
        """Generate, gate and write the outputs, save version ``iter<N>`` and the dedup index, and build the
        report (with the embedding spread when ``embeddings`` and the packaged embedder is there)."""
        from tools.diversity import SentenceEmbedder, build_report, report_json

        result = self.generation.run(progress)
        self.out.mkdir(parents=True, exist_ok=True)
        write_outputs(self.out, result)
        version = save_version(self.store, self.base_shard, result, self.request.iteration, self.request)

        embedder, note = None, ""
        if embeddings:
            try:
                embedder = SentenceEmbedder.packaged()
            except (FileNotFoundError, OSError) as exc:
                note = f"unavailable ({exc})"
        else:
            note = "disabled (--no-embeddings)"
        report = build_report(result, self.splits.train, self.plugin, self.data.name, self.targets, embedder, note)
        atomic_write_bytes(self.out / "report.json",
                           (json.dumps(report_json(report), indent=2) + "\n").encode("utf-8"))
        return JobOutcome(result=result, report=report, version=version)


def prepare_job(*, targets: dict[str, int], task: str, task_type: str | None, backend: BackendSpec,
                base_model: str | None, no_length_gate: bool, seed: int, iteration: int, out: Path,
                batch_size: int, temperature: float, top_p: float, max_new_tokens: int | None, budget: Budget,
                lenient: bool) -> GenerationJob:
    """Read the task, check the targets against its categories, split it, store its base shard and assemble the
    generation (strategy, backend, gates, request). ``max_new_tokens`` None takes the task type's default."""
    data = load_task(task, lenient=lenient)
    plugin = get_plugin(task_type).fit(data.training) if task_type else detect_plugin(data.training)
    known = plugin.categories()
    unknown = [c for c in targets if c not in known]
    if unknown:
        raise JobInputError(f"--targets: unknown categories {', '.join(unknown)} for task type {plugin.name}; "
                            f"known: {', '.join(known)}")
    splits = stratified_split(data.training, category=lambda r: plugin.categorize(r).primary,
                              key=lambda r: r.record_id, seed=seed)
    held_out = splits.dev + splits.test + data.validation
    store = DataStore(out / "store")
    base_shard = store.put_shard(data.training, kind="base")
    if not no_length_gate:
        base_model = base_model or (data.base_models[0] if data.base_models else DEFAULT_MODEL)
    length = _length_gate(base_model, data.context_length) if base_model and not no_length_gate else None
    generation = assemble_generation(
        plugin, targets, splits.train, backend=backend,
        sampling=SamplingSettings(temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens or plugin.strategy_class().max_new_tokens),
        budget=budget, seed=seed, iteration=iteration, batch_size=batch_size, existing=data.training,
        held_out=held_out, length=length, store=store, dedup_index_path=store.root / "dedup_index.npz")
    return GenerationJob(data=data, plugin=plugin, targets=targets, splits=splits, held_out=held_out, store=store,
                         base_shard=base_shard, generation=generation, out=out)
