"""``synthgen generate``: targeted synthetic data for a task, with gates, provenance, versions and a report.

Outputs under ``--out``:

* ``accepted.jsonl``   accepted rows in FLock JSONL (what training uses)
* ``rejected.jsonl``   one JSON object per rejected attempt: category, reason, detail, record (or null), provenance
* ``provenance.jsonl`` one JSON object per accepted row, same order as accepted.jsonl
* ``report.json``      the diversity and balance report (also printed as tables)
* ``store/``           content-addressed shards, the version manifest ``iter<N>`` (base + synthetic shards),
                       the generation journal (a rerun after a crash resumes it) and the dedup index carried
                       across iterations
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from tools.backends import BackendError, BackendSpec, SamplingSettings, make_backend
from tools.data import DataValidationError, FlockRecord, load_jsonl, stratified_split, write_jsonl
from tools.datastore import DataStore, DataStoreError, ShardRef, atomic_write_bytes
from tools.generate import (
    BatchProgress,
    Budget,
    GenerationError,
    GenerationRequest,
    GenerationResult,
    generate,
)
from tools.quality import DedupIndex, GateSuite, LengthGate, default_gates
from tools.tasks import detect_plugin, get_plugin
from tools.tasks.base import TaskPlugin

app = typer.Typer(help="Generate targeted synthetic training data.", add_completion=False,
                  pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)

DEMO_TASKS = {
    "demo": Path(__file__).resolve().parent / "demo_tasks" / "text2sql",
    "demo-fc": Path(__file__).resolve().parent / "demo_tasks" / "function_calling",
}
DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_CONTEXT_LENGTH = 4096


class CLIError(Exception):
    """A user-facing problem: printed as one line, exit code 2."""


@dataclass
class TaskData:
    name: str
    training: list[FlockRecord]
    validation: list[FlockRecord]
    context_length: int
    base_models: list[str]


def parse_targets(text: str) -> dict[str, int]:
    """``join=20,nested=20`` -> ``{"join": 20, "nested": 20}``."""
    targets: dict[str, int] = {}
    for index, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"([\w:.\-]+)\s*=\s*(\d+)", part)
        if not match:
            raise CLIError(f"--targets item {index + 1} {part!r}: expected CATEGORY=COUNT, e.g. join=20")
        if match.group(1) in targets:
            raise CLIError(f"--targets: category {match.group(1)!r} given twice")
        targets[match.group(1)] = int(match.group(2))
    if not targets:
        raise CLIError("--targets is empty: give CATEGORY=COUNT pairs, e.g. join=20,nested=20")
    return targets


def load_task(spec: str, *, lenient: bool) -> TaskData:
    """A demo name, a task folder (training_set.jsonl, optional validation_set.jsonl and task.json) or a JSONL."""
    path = DEMO_TASKS.get(spec, Path(spec))
    if not path.exists():
        raise CLIError(f"--task {spec!r}: no such demo task, folder or file (demos: {', '.join(DEMO_TASKS)})")
    folder = path if path.is_dir() else path.parent
    training_path = path / "training_set.jsonl" if path.is_dir() else path
    meta: dict[str, Any] = {}
    task_json = folder / "task.json"
    if path.is_dir() and task_json.is_file():
        try:
            meta = json.loads(task_json.read_text(encoding="utf-8")).get("data") or {}
        except (json.JSONDecodeError, AttributeError) as exc:
            raise CLIError(f"{task_json}: not a FLock task object ({exc})") from None
    try:
        training = load_jsonl(training_path, strict=not lenient).records
        validation_path = folder / "validation_set.jsonl"
        validation = load_jsonl(validation_path, strict=not lenient).records \
            if path.is_dir() and validation_path.is_file() else []
    except DataValidationError as exc:
        raise CLIError(str(exc)) from None
    context_length = int(meta.get("context_length") or DEFAULT_CONTEXT_LENGTH)
    return TaskData(name=spec, training=training, validation=validation, context_length=context_length,
                    base_models=list(meta.get("supported_base_models") or []))


def _length_gate(base_model: str, context_length: int) -> LengthGate:
    from tools.models import load_tokenizer, template_for

    try:
        template = template_for(base_model)
    except KeyError as exc:
        raise CLIError(f"--base-model {base_model!r}: {exc.args[0]}") from None
    try:
        tokenizer = load_tokenizer(base_model)
    except Exception as exc:
        raise CLIError(f"--base-model {base_model!r}: cannot load its tokenizer ({exc})") from None
    return LengthGate(tokenizer, template, context_length)


def build_gates(plugin: TaskPlugin, task: TaskData, held_out: list[FlockRecord], store: DataStore,
                base_model: str | None) -> GateSuite:
    index_path = store.root / "dedup_index.npz"
    index = DedupIndex.load(index_path) if index_path.is_file() else DedupIndex()
    length = _length_gate(base_model, task.context_length) if base_model else None
    return default_gates(plugin, existing=task.training, held_out=held_out, dedup_index=index, length=length)


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


@app.command("generate")
def generate_command(
    targets: Annotated[str, typer.Option(help="CATEGORY=COUNT pairs, e.g. join=20,nested=20")],
    task: Annotated[str, typer.Option(help="demo (text2sql), demo-fc (function calling), a task folder or a JSONL")]
    = "demo",
    task_type: Annotated[str | None, typer.Option(help="text2sql | function_calling | chat (default: detect)")]
    = None,
    backend: Annotated[str, typer.Option(help="local | openai")] = "local",
    model: Annotated[str, typer.Option(help="Generator: Hub id, folder or GGUF (local); served name (openai)")]
    = DEFAULT_MODEL,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")]
    = None,
    api_key_env: Annotated[str | None, typer.Option(help="Environment variable holding the server's API key")]
    = None,
    base_model: Annotated[str | None, typer.Option(help="Model to be trained (for the length gate; default: the "
                                                        "task's first supported base model)")] = None,
    no_length_gate: Annotated[bool, typer.Option("--no-length-gate", help="Skip the context-length gate")] = False,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same rows")] = 0,
    iteration: Annotated[int, typer.Option(min=0, help="Iteration number (versions are iter<N>)")] = 0,
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("runs/generate"),
    batch_size: Annotated[int, typer.Option(min=1, help="Attempts per generation batch")] = 32,
    forward_batch: Annotated[int, typer.Option(min=1, help="Local backend: conversations per forward pass")] = 32,
    concurrency: Annotated[int, typer.Option(min=1, help="OpenAI backend: requests in flight")] = 8,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (0 = greedy)")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.01, max=1.0, help="Nucleus sampling mass")] = 0.95,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Tokens per completion (default by task: "
                                                                   "text2sql 64, function_calling 192, chat 320)")]
    = None,
    max_attempts: Annotated[int | None, typer.Option(min=1, help="Budget: attempts (default 20x the targets)")]
    = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Budget: generated tokens")] = None,
    max_seconds: Annotated[float | None, typer.Option(min=1, help="Budget: wall-clock seconds")] = None,
    embeddings: Annotated[bool, typer.Option(help="Embedding spread in the report (all-MiniLM-L6-v2)")] = True,
    lenient: Annotated[bool, typer.Option(help="Skip bad training lines instead of stopping")] = False,
) -> None:
    """Generate synthetic rows for the given per-category targets, gate them, and write data, provenance and a
    report. Rerunning the same command resumes an interrupted run."""
    try:
        _run(**locals())
    except (CLIError, BackendError, DataStoreError, GenerationError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def _run(*, targets: str, task: str, task_type: str | None, backend: str, model: str, base_url: str | None,
         api_key_env: str | None, base_model: str | None, no_length_gate: bool, seed: int, iteration: int,
         out: Path, batch_size: int, forward_batch: int, concurrency: int, temperature: float, top_p: float,
         max_new_tokens: int | None, max_attempts: int | None, max_tokens: int | None, max_seconds: float | None,
         embeddings: bool, lenient: bool) -> None:
    from tools.diversity import SentenceEmbedder, build_report, render_report, report_json

    wanted = parse_targets(targets)
    if backend not in ("local", "openai"):
        raise CLIError(f"--backend {backend!r}: expected local or openai")
    data = load_task(task, lenient=lenient)
    plugin = get_plugin(task_type).fit(data.training) if task_type else detect_plugin(data.training)
    known = plugin.categories()
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise CLIError(f"--targets: unknown categories {', '.join(unknown)} for task type {plugin.name}; "
                       f"known: {', '.join(known)}")
    splits = stratified_split(data.training, category=lambda r: plugin.categorize(r).primary,
                              key=lambda r: r.record_id, seed=seed)
    held_out = splits.dev + splits.test + data.validation
    store = DataStore(out / "store")
    base_shard = store.put_shard(data.training, kind="base")
    if not no_length_gate:
        base_model = base_model or (data.base_models[0] if data.base_models else DEFAULT_MODEL)
    gates = build_gates(plugin, data, held_out, store, None if no_length_gate else base_model)
    spec = BackendSpec(kind=backend, model=model, base_url=base_url, api_key_env=api_key_env,
                       max_concurrency=concurrency, batch_size=forward_batch)
    request = GenerationRequest(
        task=plugin.name, targets=wanted, seed_pool=splits.train, backend=spec,
        sampling=SamplingSettings(temperature=temperature, top_p=top_p,
                                  max_new_tokens=max_new_tokens or plugin.strategy_class().max_new_tokens),
        budget=Budget(max_attempts=max_attempts, max_generated_tokens=max_tokens, max_seconds=max_seconds),
        seed=seed, iteration=iteration, batch_size=batch_size,
    )
    console.print(f"[bold]{data.name}[/]: {len(data.training)} training records, task type [cyan]{plugin.name}"
                  f"[/], {len(splits.train)} seeds, {len(held_out)} held out; targets {wanted}")
    strategy = plugin.make_strategy(splits.train)
    generator = make_backend(spec)

    def report_progress(p: BatchProgress) -> None:
        done = ", ".join(f"{c} {v.accepted}/{v.target}" for c, v in p.per_category.items() if v.target)
        console.print(f"batch {p.batch}: {p.attempts} attempts, {p.accepted} accepted ({done}); "
                      f"{p.completion_tokens} tokens, {p.seconds:.1f} s")

    result = generate(request, strategy, generator, gates, store=store, progress=report_progress)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(out, result)
    version = save_version(store, base_shard, result, iteration, request)
    dedup = next((g for g in gates.gates if g.name == "dedup"), None)
    if dedup is not None:
        dedup.index.save(store.root / "dedup_index.npz")  # type: ignore[attr-defined]

    embedder, note = None, ""
    if embeddings:
        try:
            embedder = SentenceEmbedder.packaged()
        except (FileNotFoundError, OSError) as exc:
            note = f"unavailable ({exc})"
    else:
        note = "disabled (--no-embeddings)"
    report = build_report(result, splits.train, plugin, data.name, wanted, embedder, note)
    atomic_write_bytes(out / "report.json", (json.dumps(report_json(report), indent=2) + "\n").encode("utf-8"))
    render_report(report, console)
    console.print(f"wrote {len(result.accepted)} accepted and {len(result.rejected)} rejected rows to {out} "
                  f"(version {version}; stop: {result.stop_reason})")
