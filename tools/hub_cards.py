"""Hugging Face Hub cards for what a run publishes: the adapter's model card and the synthetic data's dataset card.

- :func:`write_model_card` writes ``README.md`` into an adapter folder with huggingface_hub's ``ModelCard``:
  ``base_model``, ``library_name: peft``, the FLock task, the scores measured (dev and test split, FLock's
  validation by the simulator), the training data, the run id and the software versions. It is an extra file:
  ``adapter_config.json`` and ``adapter_model.safetensors`` are not touched, so validators load the adapter as before.
- :func:`write_dataset_folder` writes a dataset repository's files (what ``datasets.load_dataset(folder)`` and the
  Hub read): the rows as Parquet through ``datasets``, and a ``README.md`` dataset card (provenance, gate
  statistics, category balance, generator, license).

The card text depends only on its inputs (no clock), so writing it again for the same adapter gives the same bytes
and a content-addressed store the same revision.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tools.data import FlockRecord

LIBRARY_NAME = "peft"
DATA_FILE = "data/train-00000-of-00001.parquet"
class CardScore(BaseModel):
    """One measurement of the adapter, next to the base model's on the same data (lower BPC is better)."""

    split: str
    metric: str
    value: float | None
    base_value: float | None = None
    source: str = ""


class TrainingSummary(BaseModel):
    """What the adapter was trained on and how."""

    dataset_version: str = ""
    original_per_category: dict[str, int] = Field(default_factory=dict)
    synthetic_per_category: dict[str, int] = Field(default_factory=dict)
    real_tokens: int | None = None
    steps: int | None = None
    epochs_completed: float | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class AdapterCard(BaseModel):
    """Everything a model card says; kept as JSON next to the adapter so later stages can add their scores."""

    base_model: str
    template: str
    task_id: int | str
    task_title: str = ""
    task_type: str = ""
    #: The task type's Hub tags (its plugin's ``hub_tags``).
    task_tags: list[str] = Field(default_factory=list)
    context_length: int | None = None
    max_params: int | None = None
    run_id: str
    adapter_id: str
    repo_id: str | None = None
    revision: str | None = None
    accepted_by_flock_validators: bool
    scores: list[CardScore] = Field(default_factory=list)
    training: TrainingSummary = Field(default_factory=TrainingSummary)
    dataset_repo_id: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)

    def with_scores(self, *scores: CardScore) -> AdapterCard:
        """This card with ``scores`` replacing any earlier ones of the same split and metric."""
        replaced = {(s.split, s.metric) for s in scores}
        kept = [s for s in self.scores if (s.split, s.metric) not in replaced]
        return self.model_copy(update={"scores": [*kept, *scores]})


def _number(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def model_card_text(card: AdapterCard) -> str:
    """The card as Markdown with YAML metadata (through huggingface_hub's ``ModelCardData``)."""
    from huggingface_hub import ModelCardData
    from huggingface_hub.repocard_data import EvalResult

    results = [EvalResult(task_type="text-generation", dataset_type=f"flock-task-{card.task_id}",
                          dataset_name=f"FLock task {card.task_id} ({s.split})", dataset_split=s.split,
                          metric_type=s.metric, metric_name=f"{s.metric} ({s.split}, {s.source})",
                          metric_value=s.value)
               for s in card.scores if s.value is not None]
    data = ModelCardData(
        base_model=card.base_model, library_name=LIBRARY_NAME, pipeline_tag="text-generation",
        tags=["lora", "peft", "flock", "synthgen", *card.task_tags],
        model_name=card.repo_id or card.adapter_id, eval_results=results or None,
        datasets=[card.dataset_repo_id] if card.dataset_repo_id else None,
    )
    title = card.repo_id or card.adapter_id
    acceptance = ("FLock's validators accept this base model." if card.accepted_by_flock_validators else
                  f"**Not accepted by FLock's validators**: `{card.base_model}` is not in their supported base "
                  "models, so real validators mark adapters on it failed; scores below come from this project's "
                  "simulator.")
    task = _table(["task", "type", "context length", "max params", "FLock template"],
                  [[f"{card.task_id}: {card.task_title}", card.task_type, str(card.context_length or "-"),
                    f"{card.max_params:,}" if card.max_params else "-", card.template]])
    scores = _table(["split", "metric", "adapter", "base model", "measured by"],
                    [[s.split, s.metric, _number(s.value), _number(s.base_value), s.source] for s in card.scores]) \
        if card.scores else "No scores measured yet."
    data_rows = sorted(set(card.training.original_per_category) | set(card.training.synthetic_per_category))
    training = _table(["category", "original rows", "synthetic rows"],
                      [[c, str(card.training.original_per_category.get(c, 0)),
                        str(card.training.synthetic_per_category.get(c, 0))] for c in data_rows])
    facts = [f"dataset version `{card.training.dataset_version}`" if card.training.dataset_version else "",
             f"{card.training.real_tokens:,} real tokens" if card.training.real_tokens is not None else "",
             f"{card.training.steps} optimizer steps" if card.training.steps is not None else "",
             f"{card.training.epochs_completed:g} epochs" if card.training.epochs_completed is not None else ""]
    settings = ", ".join(f"{k}={v}" for k, v in sorted(card.training.settings.items()))
    versions = ", ".join(f"{k} {v}" for k, v in sorted(card.versions.items()))
    where = (f"`{card.repo_id}`" + (f" at revision `{card.revision}`" if card.revision else "")
             if card.repo_id else "not published")
    dataset_line = (f"Synthetic data: [`{card.dataset_repo_id}`](https://huggingface.co/datasets/"
                    f"{card.dataset_repo_id})." if card.dataset_repo_id else "")
    body = f"""
# {title}

A LoRA adapter on [`{card.base_model}`](https://huggingface.co/{card.base_model}) for FLock.io AI Arena task
{card.task_id}, trained by SynthGen Agent on the task's data and targeted synthetic rows. {acceptance}

## Use

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM

base = AutoModelForCausalLM.from_pretrained("{card.base_model}")
model = PeftModel.from_pretrained(base, "{card.repo_id or card.adapter_id}")
```

Prompts follow FLock's `{card.template}` template; the score is FLock's bits per UTF-8 byte of the answer (BPC,
lower is better).

## Task

{task}

## Scores

{scores}

## Training data

{training}

{"; ".join(f for f in facts if f)}{"." if any(facts) else ""}
{f"Training settings: {settings}." if settings else ""}
{dataset_line}

## Provenance

Run `{card.run_id}`, adapter `{card.adapter_id}`; published as {where}. Versions: {versions}.
"""
    return f"---\n{data.to_yaml()}\n---\n" + "\n".join(line.rstrip() for line in body.splitlines()) + "\n"


def write_model_card(folder: str | Path, card: AdapterCard) -> Path:
    """Write ``README.md`` (the model card) into ``folder``; nothing else in the folder changes."""
    from huggingface_hub import ModelCard

    path = Path(folder) / "README.md"
    ModelCard(model_card_text(card)).save(path)
    return path


# ----- datasets ------------------------------------------------------------------------------------------------
class DatasetCardInfo(BaseModel):
    """What a dataset card says besides the rows themselves."""

    pretty_name: str
    run_id: str
    task_id: int | str
    task_title: str = ""
    task_type: str = ""
    license: str = "other"
    generator: str = ""
    base_model: str = ""
    dataset_version: str = ""
    original_per_category: dict[str, int] = Field(default_factory=dict)
    rejected_per_reason: dict[str, int] = Field(default_factory=dict)
    gate_pass_rates: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)


def dataset_rows(records: Sequence[FlockRecord], provenance: Sequence[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """FLock-format rows (``system``, ``conversations``, ``tools``) with each row's provenance as columns."""
    rows = []
    for record, origin in zip(records, provenance, strict=True):
        source = origin or {}
        rows.append({**record.to_json_dict(), "tools": record.tools, "system": record.system,
                     "record_id": record.record_id, "category": str(source.get("category", "")),
                     "strategy": str(source.get("strategy", "")), "writer": str(source.get("writer", "")),
                     "model": str(source.get("model", "")), "iteration": int(source.get("iteration", 0)),
                     "gates": json.dumps(source.get("gates", []), sort_keys=True)})
    return rows


def dataset_card_text(info: DatasetCardInfo, rows: Sequence[dict[str, Any]]) -> str:
    from huggingface_hub import DatasetCardData

    categories = Counter(row["category"] for row in rows)
    writers = Counter(row["writer"] or "unknown" for row in rows)
    strategies = Counter(row["strategy"] or "unknown" for row in rows)
    size = "n<1K" if len(rows) < 1000 else "1K<n<10K" if len(rows) < 10_000 else "10K<n<100K"
    data = DatasetCardData(
        license=info.license, pretty_name=info.pretty_name, size_categories=[size],
        task_categories=["text-generation"], tags=["synthetic", "flock", "synthgen"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILE}]}],
    )
    balance = _table(["category", "synthetic rows", "original rows"],
                     [[c, str(categories.get(c, 0)), str(info.original_per_category.get(c, 0))]
                      for c in sorted(set(categories) | set(info.original_per_category))])
    gates = _table(["gate", "pass rate"], [[g, f"{r:.1%}"] for g, r in sorted(info.gate_pass_rates.items())]) \
        if info.gate_pass_rates else "No gate statistics recorded."
    rejected = _table(["reason", "rejected rows"], [[r, str(n)] for r, n in sorted(info.rejected_per_reason.items())]) \
        if info.rejected_per_reason else "No row was rejected."
    versions = ", ".join(f"{k} {v}" for k, v in sorted(info.versions.items()))
    body = f"""
# {info.pretty_name}

Synthetic training rows SynthGen Agent generated for FLock.io AI Arena task {info.task_id}
({info.task_title or info.task_type}), in FLock's JSONL format (`system`, `conversations`, `tools`), each with where
it came from. Every row passed the quality gates (FLock format, task validity, category match, near-duplicate and
decontamination checks against the task's held-out data, privacy scrub, length); the task's own data is not
included.

## Category balance

{balance}

## Quality gates

Share of gated candidates that passed each gate:

{gates}

Rejections by reason:

{rejected}

## Provenance

- Generator: {info.generator or "-"}; writers: {", ".join(f"{w} ({n})" for w, n in sorted(writers.items())) or "-"};
  strategies: {", ".join(f"{s} ({n})" for s, n in sorted(strategies.items())) or "-"}.
- Columns `category`, `strategy`, `writer`, `model`, `iteration` and `gates` (each gate's verdict, JSON) give every
  row's own provenance; `record_id` is a hash of its content.
- Run `{info.run_id}`, dataset version `{info.dataset_version}`, base model `{info.base_model}`. Versions: {versions}.

## License

`{info.license}`: the rows are derived from the task's data and the generator model's output; check both before
reuse.
"""
    return f"---\n{data.to_yaml()}\n---\n" + "\n".join(line.rstrip() for line in body.splitlines()) + "\n"


def write_dataset_folder(folder: str | Path, records: Sequence[FlockRecord],
                         provenance: Sequence[dict[str, Any] | None], info: DatasetCardInfo) -> Path:
    """Write a dataset repository's files into ``folder``: the rows as Parquet and the card as ``README.md``."""
    import datasets
    from huggingface_hub import DatasetCard

    target = Path(folder)
    rows = dataset_rows(records, provenance)
    (target / DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(target / DATA_FILE))
    DatasetCard(dataset_card_text(info, rows)).save(target / "README.md")
    return target


__all__ = [
    "AdapterCard",
    "CardScore",
    "DatasetCardInfo",
    "TrainingSummary",
    "dataset_rows",
    "model_card_text",
    "write_dataset_folder",
    "write_model_card",
]
