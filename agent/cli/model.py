"""``synthgen model train`` and ``synthgen model score``: one adapter, FLock's exact score."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent.cli.common import SkipBadLines, console, fail, load_records
from agent.config import RunConfig
from tools.models import DEFAULT_MODEL

#: The agent's training settings (``train:`` in a run configuration): ``model train`` starts from the same.
TRAIN_DEFAULTS = RunConfig().train

app = typer.Typer(help="Train LoRA adapters and score them as FLock does.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


def _template_of(model: str, template: str | None) -> str:
    from tools.models import BASE_MODELS, ModelNotAvailableError, resolve_model

    if template:
        return template
    try:
        hub = resolve_model(model).hub_id
    except ModelNotAvailableError as exc:
        raise fail(str(exc)) from None
    if hub in BASE_MODELS:
        return BASE_MODELS[hub].template
    raise fail(f"no FLock template known for {model!r}; pass --template (one of the FLock template names)")


@app.command("train")
def train_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="FLock JSONL training file")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="adapter folder to write")],
    model: Annotated[str, typer.Option(metavar="MODEL", help="base model: Hub id, folder or .gguf")] = DEFAULT_MODEL,
    hub_id: Annotated[str | None, typer.Option(metavar="HUB_ID", help="Hub id the model stands for (for a folder "
                                                                      "or GGUF)")] = None,
    template: Annotated[str | None, typer.Option(metavar="NAME", help="FLock template (default: from the model "
                                                                      "table)")] = None,
    context_length: Annotated[int, typer.Option(metavar="N", help="the task's context_length")] = 2048,
    epochs: Annotated[int, typer.Option(metavar="N", help="passes over the data")] = TRAIN_DEFAULTS.epochs,
    max_steps: Annotated[int | None, typer.Option(metavar="N", help="optimizer steps (overrides --epochs)")] = None,
    learning_rate: Annotated[float, typer.Option(metavar="LR", help="peak learning rate")] \
        = TRAIN_DEFAULTS.learning_rate,
    lora_r: Annotated[int, typer.Option(metavar="N", help="LoRA rank (alpha is twice the rank)")] \
        = TRAIN_DEFAULTS.lora_r,
    batch_tokens: Annotated[int, typer.Option(metavar="N", help="padded tokens per micro-batch")] \
        = TRAIN_DEFAULTS.batch_tokens,
    qlora: Annotated[bool | None, typer.Option("--qlora/--no-qlora", help="default: on for GPU")] = None,
    resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
    skip_bad_lines: SkipBadLines = False,
) -> None:
    """Train a LoRA adapter on a FLock JSONL file, with a progress bar; writes the adapter and its metrics. The
    defaults are a run's training settings (synthgen config-doc, train.*)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tools.data import DataValidationError
    from tools.models import ModelNotAvailableError, resolve_model
    from tools.train import TrainConfig, TrainingOOMError, TrainProgress, train_adapter

    try:
        records = load_records(file, skip_bad_lines)
        config = TrainConfig(epochs=epochs, max_steps=max_steps, learning_rate=learning_rate, lora_r=lora_r,
                             lora_alpha=2 * lora_r, batch_tokens=batch_tokens, qlora=qlora)
        resolve_model(model, hub_id=hub_id)  # a model that cannot be found is reported before training starts
    except (DataValidationError, ModelNotAvailableError, ValueError) as exc:
        raise fail(str(exc)) from None
    name = _template_of(model, template)
    with Progress(TextColumn("[bold]training"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.0f} tok/s"),
                  TimeRemainingColumn()) as bar:
        task = bar.add_task("train", total=None, loss=float("nan"), rate=0.0)

        def show(p: TrainProgress) -> None:
            bar.update(task, completed=p.step, total=p.total_steps, loss=p.loss, rate=p.tokens_per_s)

        try:
            result = train_adapter(model, records, output, config, template=name,
                                   context_length=context_length, progress=show, resume=resume, hub_id=hub_id)
        except (TrainingOOMError, ValueError) as exc:
            raise fail(str(exc)) from None
    console.print(f"adapter: {result.adapter_dir} (base {result.hub_id}); {result.steps} steps, final loss "
                  f"{result.loss_curve[-1]:.4f}, {result.tokens_per_s:.0f} real tok/s, peak memory "
                  f"{result.peak_memory_bytes / 2**20:.0f} MiB; metrics: {result.metrics_path}")


@app.command("score")
def score_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="FLock JSONL validation file")],
    model: Annotated[str, typer.Option(metavar="MODEL", help="base model: Hub id, folder or .gguf")] = DEFAULT_MODEL,
    adapter: Annotated[Path | None, typer.Option(metavar="DIR", help="LoRA adapter folder")] = None,
    template: Annotated[str | None, typer.Option(metavar="NAME", help="FLock template (default: from the model "
                                                                      "table)")] = None,
    context_length: Annotated[int, typer.Option(metavar="N", help="the task's context_length")] = 2048,
    max_params: Annotated[int | None, typer.Option(metavar="N", help="the task's max_params")] = None,
    skip_bad_lines: SkipBadLines = False,
) -> None:
    """FLock's exact score (BPC, lower is better) of a model or model + adapter, overall and per category."""
    from rich.table import Table

    from tools.data import DataValidationError
    from tools.evaluate import flock_score
    from tools.models import ModelNotAvailableError
    from tools.tasks import detect_plugin

    try:
        records = load_records(file, skip_bad_lines)
    except DataValidationError as exc:
        raise fail(str(exc)) from None
    plugin = detect_plugin(records)
    categories = [plugin.categorize(r).primary for r in records]
    try:
        score = flock_score(model, records, template=_template_of(model, template), context_length=context_length,
                            adapter=adapter, categories=categories, max_params=max_params)
    except (ModelNotAvailableError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    table = Table(title=f"FLock score ({plugin.name}; {score.num_params / 1e6:.1f}M parameters)")
    for column in ("category", "examples", "BPC", "eval loss", "target tokens", "target bytes", "penalty"):
        table.add_column(column, justify="left" if column in ("category", "penalty") else "right")
    rows = [("overall", score), *score.per_category.items()]
    for name, s in rows:
        table.add_row(name, str(s.num_examples), f"{s.bpc:.4f}", f"{s.eval_loss:.4f}", str(s.target_tokens),
                      str(s.target_bytes), s.penalty_reason or "")
    console.print(table)
