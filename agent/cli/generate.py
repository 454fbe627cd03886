"""``synthgen generate``: targeted synthetic data for a task, with gates, provenance, versions and a report
(the job itself is tools/generation_job.py; its outputs are listed there)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import SkipBadLines, console, fail
from agent.config import GeneratorConfig
from tools.backends import BackendError, BackendSpec
from tools.datastore import DataStoreError
from tools.generate import BatchProgress, Budget, GenerationError
from tools.generation_job import JobInputError, prepare_job
from tools.models import DEFAULT_MODEL

app = typer.Typer(help="Generate targeted synthetic training data.", add_completion=False,
                  pretty_exceptions_enable=False)
#: A run's generator settings (``generator:`` in a run configuration): ``generate`` starts from the same.
GENERATOR_DEFAULTS = GeneratorConfig()


def parse_targets(text: str) -> dict[str, int]:
    """``join=20,nested=20`` -> ``{"join": 20, "nested": 20}``."""
    targets: dict[str, int] = {}
    for index, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"([\w:.\-]+)\s*=\s*(\d+)", part)
        if not match:
            raise JobInputError(f"--targets item {index + 1} {part!r}: expected CATEGORY=COUNT, e.g. join=20")
        if match.group(1) in targets:
            raise JobInputError(f"--targets: category {match.group(1)!r} given twice")
        targets[match.group(1)] = int(match.group(2))
    if not targets:
        raise JobInputError("--targets is empty: give CATEGORY=COUNT pairs, e.g. join=20,nested=20")
    return targets


@app.command("generate")
def generate_command(
    targets: Annotated[str, typer.Option(metavar="CATEGORY=N,...", help="CATEGORY=COUNT pairs, e.g. "
                                                                        "join=20,nested=20")],
    task: Annotated[str, typer.Option(metavar="TASK", help="demo (text2sql), demo-fc (function calling), a task "
                                                           "folder or a JSONL")] = "demo",
    task_type: Annotated[str | None, typer.Option(metavar="text2sql|function_calling|chat", help="Task type "
                                                  "(default: detect)")] = None,
    backend: Annotated[str, typer.Option(metavar="local|openai", help="Generator backend")] = "local",
    model: Annotated[str, typer.Option(metavar="MODEL", help="Generator: Hub id, folder or GGUF (local); served "
                                                             "name (openai)")] = DEFAULT_MODEL,
    base_url: Annotated[str | None, typer.Option(metavar="URL", help="OpenAI-compatible server, e.g. "
                                                                     "http://127.0.0.1:8000/v1")] = None,
    api_key_env: Annotated[str | None, typer.Option(metavar="VAR", help="Environment variable holding the "
                                                                        "server's API key")] = None,
    base_model: Annotated[str | None, typer.Option(metavar="HUB_ID", help="Model to be trained (for the length "
                                                   "gate; default: the task's first supported base model)")] = None,
    no_length_gate: Annotated[bool, typer.Option("--no-length-gate", help="Skip the context-length gate")] = False,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same rows")] = 0,
    iteration: Annotated[int, typer.Option(min=0, help="Iteration number (versions are iter<N>)")] = 0,
    out: Annotated[Path, typer.Option(metavar="DIR", help="Output folder")] = Path("runs/generate"),
    batch_size: Annotated[int, typer.Option(min=1, help="Attempts per generation batch")] \
        = GENERATOR_DEFAULTS.batch_size,
    forward_batch: Annotated[int | None, typer.Option(min=1, help="Local backend: conversations per forward pass "
                                                                  "(default: --batch-size, as in a run)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="OpenAI backend: requests in flight")] \
        = GENERATOR_DEFAULTS.concurrency,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature (0 = greedy)")] \
        = GENERATOR_DEFAULTS.temperature,
    top_p: Annotated[float, typer.Option(min=0.01, max=1.0, help="Nucleus sampling mass")] = 0.95,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Tokens per completion (default by task: "
                                                                   "text2sql 64, function_calling 192, chat 320)")]
    = None,
    max_attempts: Annotated[int | None, typer.Option(min=1, help="Budget: attempts (default 20x the targets)")]
    = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Budget: generated tokens")] = None,
    max_seconds: Annotated[float | None, typer.Option(min=1, help="Budget: wall-clock seconds")] = None,
    embeddings: Annotated[bool, typer.Option(help="Embedding spread in the report (all-MiniLM-L6-v2)")] = True,
    skip_bad_lines: SkipBadLines = False,
) -> None:
    """Generate synthetic rows for the given per-category targets, gate them, and write data, provenance and a
    report. Rerunning the same command resumes an interrupted run."""
    from tools.diversity import render_report

    try:
        wanted = parse_targets(targets)
        if backend not in ("local", "openai"):
            raise JobInputError(f"--backend {backend!r}: expected local or openai")
        job = prepare_job(
            targets=wanted, task=task, task_type=task_type, base_model=base_model, no_length_gate=no_length_gate,
            backend=BackendSpec(kind=backend, model=model, base_url=base_url, api_key_env=api_key_env,
                                max_concurrency=concurrency, batch_size=forward_batch or batch_size),
            seed=seed, iteration=iteration, out=out, batch_size=batch_size, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, lenient=skip_bad_lines,
            budget=Budget(max_attempts=max_attempts, max_generated_tokens=max_tokens, max_seconds=max_seconds))
        console.print(f"[bold]{job.data.name}[/]: {len(job.data.training)} training records, task type "
                      f"[cyan]{job.plugin.name}[/], {len(job.splits.train)} seeds, {len(job.held_out)} held out; "
                      f"targets {wanted}")
        outcome = job.run(_print_progress, embeddings=embeddings)
        render_report(outcome.report, console)
        console.print(f"wrote {len(outcome.result.accepted)} accepted and {len(outcome.result.rejected)} rejected "
                      f"rows to {out} (version {outcome.version}; stop: {outcome.result.stop_reason})")
    except (BackendError, DataStoreError, GenerationError, ValueError) as exc:
        raise fail(str(exc)) from None


def _print_progress(p: BatchProgress) -> None:
    done = ", ".join(f"{c} {v.accepted}/{v.target}" for c, v in p.per_category.items() if v.target)
    console.print(f"batch {p.batch}: {p.attempts} attempts, {p.accepted} accepted ({done}); "
                  f"{p.completion_tokens} tokens, {p.seconds:.1f} s")
