"""Evaluation: FLock's exact score (BPC) overall and per category, greedy predictions and task metrics.

FLock's validator (FLOCK_API.md 9.2, LV HEAD) scores a submission on a validation file like this:

1. tokenize every record with the task's template, truncated to ``context_length`` (:mod:`tools.templates`);
2. T = number of target tokens (mask 1) over all examples; B = sum over examples with targets of
   ``len(tokenizer.decode(target_ids, skip_special_tokens=True).encode("utf-8"))``;
3. ``eval_loss`` = Trainer.evaluate with batch size 1: the MEAN OVER EXAMPLES of each example's mean next-token
   cross-entropy over its target labels (not a token-weighted mean). An example left without target labels gives a
   NaN loss, which (under the validator's transformers 4.49) makes ``eval_loss`` NaN;
4. BPC = eval_loss * T / ln 2 / B; 999.0 instead when the model has more than ``max_params`` parameters, when
   B == 0, or when eval_loss is NaN or infinite.

:func:`flock_score` computes exactly that, batched for speed: examples of similar length share a right-padded batch
without an attention mask (under a causal mask, padding at the end cannot change earlier positions), and logits are
computed only at positions whose next token is a target. Each example's loss is still its own mean, so the
arithmetic is the validator's. fp32 on CPU, like the CPU validator; fp16 on GPU, like GPU validators.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tools.data import FlockRecord, load_jsonl
from tools.decoding import decode
from tools.metrics import available_metrics, compute_metric
from tools.shared_prefix import (
    PrefixGroup,
    PrefixKV,
    decoder_call,
    group_by_prefix,
    prefix_cache,
    run_prefix,
    supports_prefix_cache,
)
from tools.tasks import get_plugin
from tools.tasks.base import TaskMetric
from tools.templates import ChatTemplate, TokenizedExample, get_template, render_segments, tokenize_records

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PENALTY_SCORE = 999.0
LN2 = math.log(2)
#: Model types whose logits are exactly ``lm_head(hidden)`` (plus Gemma's final soft-capping), so logits can be
#: computed for target positions only. Others fall back to the model's full forward.
_PLAIN_HEAD_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3_text",
    "phi3", "olmo2", "smollm3", "ministral",
})


# ----- the shared forward: per-token losses at target positions ---------------------------------------------
@dataclass(frozen=True)
class TokenBatch:
    """A right-padded batch of tokenized examples; ``labels`` is -100 outside target tokens and padding."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    indices: list[int]
    """Position of each row's example in the caller's list."""
    real_tokens: int

    @property
    def padded_tokens(self) -> int:
        return int(self.input_ids.numel())


def make_batch(examples: Sequence[TokenizedExample], indices: Sequence[int], pad_token_id: int,
               device: str | torch.device = "cpu") -> TokenBatch:
    import torch

    width = max(len(examples[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(indices), width), -100, dtype=torch.long)
    for row, i in enumerate(indices):
        ex = examples[i]
        n = len(ex)
        if n == 0:
            continue
        ids[row, :n] = torch.tensor(ex.input_ids)
        mask = torch.tensor(ex.target_mask, dtype=torch.bool)
        labels[row, :n] = torch.where(mask, ids[row, :n], -100)
    return TokenBatch(ids.to(device), labels.to(device), list(indices), sum(len(examples[i]) for i in indices))


def length_grouped_batches(lengths: Sequence[int], max_tokens: int, *, max_rows: int | None = None,
                           order: Sequence[int] | None = None) -> list[list[int]]:
    """Group example indices into batches of similar length whose padded size stays within ``max_tokens``.

    Sorting by length keeps padding small; an example longer than ``max_tokens`` gets a batch of its own.
    ``order`` (default: by length) fixes which examples are grouped together.
    """
    order = list(order) if order is not None else sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        too_big = new_width * (len(current) + 1) > max_tokens or (max_rows is not None and len(current) >= max_rows)
        if current and too_big:
            batches.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def _causal_lm(model: Any) -> Any:
    """The transformers CausalLM inside a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def target_token_losses(model: Any, batch: TokenBatch, *,
                        prefix: PrefixKV | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy (nats, fp32) of every next-token target in the batch, and the row each belongs to.

    Position t predicts token t+1, as in transformers' causal-LM loss; only positions whose next token is a target
    reach the LM head. ``prefix`` holds the keys and values of tokens that precede every row of the batch (see
    :mod:`tools.shared_prefix`): the batch then continues them, its positions counted after the prefix.
    """
    import torch
    import torch.nn.functional as F

    next_labels = batch.labels[:, 1:]
    selected = next_labels != -100
    rows = selected.nonzero(as_tuple=True)[0]
    targets = next_labels[selected]
    causal = _causal_lm(model)
    cache = prefix_cache(prefix, len(batch.indices)) if prefix is not None else None
    if getattr(causal.config, "model_type", None) in _PLAIN_HEAD_TYPES:
        hidden = decoder_call(causal.get_decoder(), cache, input_ids=batch.input_ids,
                              use_cache=cache is not None).last_hidden_state
        logits = causal.get_output_embeddings()(hidden[:, :-1][selected])
        cap = getattr(causal.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
    else:
        logits = decoder_call(causal, cache, input_ids=batch.input_ids,
                              use_cache=cache is not None).logits[:, :-1][selected]
    return F.cross_entropy(logits.float(), targets, reduction="none"), rows


def _first_scored_position(example: TokenizedExample) -> int | None:
    """The first position whose output is scored (its next token is a target), or None when there is none."""
    return next((t - 1 for t in range(1, len(example)) if example.target_mask[t] == 1), None)


# ----- FLock score -------------------------------------------------------------------------------------------
class CategoryScore(BaseModel):
    """FLock's formula applied to a subset of the validation examples."""

    model_config = ConfigDict(frozen=True)

    bpc: float
    eval_loss: float
    target_tokens: int
    target_bytes: int
    num_examples: int
    penalty_reason: str | None = None


class FlockScore(CategoryScore):
    """FLock's score of a model on a validation set, overall and per category. ``bpc`` is what FLock ranks by
    (lower is better); it is 999.0 when a penalty applies, and ``penalty_reason`` says which."""

    num_params: int
    per_category: dict[str, CategoryScore] = Field(default_factory=dict)


def bpc_from(eval_loss: float, target_tokens: int, target_bytes: int) -> tuple[float, str | None]:
    """FLock's BPC, or (999.0, reason) exactly where the validator submits 999.0."""
    if target_bytes == 0:
        return PENALTY_SCORE, "no_target_bytes"
    if math.isnan(eval_loss):
        return PENALTY_SCORE, "eval_loss_nan"
    if math.isinf(eval_loss):
        return PENALTY_SCORE, "eval_loss_inf"
    return eval_loss * target_tokens / LN2 / target_bytes, None


def target_bytes(example: TokenizedExample, tokenizer: PreTrainedTokenizerBase) -> int:
    ids = [i for i, m in zip(example.input_ids, example.target_mask, strict=True) if m == 1]
    return len(str(tokenizer.decode(ids, skip_special_tokens=True)).encode("utf-8")) if ids else 0


def count_params(model: Any) -> int:
    """Parameters of the model as the validator counts them after merging (LoRA matrices excluded)."""
    return sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)


def example_losses(model: Any, examples: Sequence[TokenizedExample], pad_token_id: int, *,
                   batch_tokens: int = 8192, share_prefixes: bool = True) -> list[float]:
    """Each example's mean target cross-entropy (NaN when it has no next-token target), batch-size-1 semantics.

    Examples run in length-sorted batches of at most ``batch_tokens`` padded tokens. With ``share_prefixes``,
    examples that start with the same tokens (a system prompt and schema, a tool list) are grouped and their common
    tokens run once (:mod:`tools.shared_prefix`), up to the first position whose output is scored.
    """
    import torch

    device = next(model.parameters()).device
    sums = torch.zeros(len(examples), dtype=torch.float64)
    counts = torch.zeros(len(examples), dtype=torch.float64)
    first_scored = [_first_scored_position(e) for e in examples]
    scored = [i for i, p in enumerate(first_scored) if p is not None]
    causal = _causal_lm(model)
    if share_prefixes and supports_prefix_cache(causal):
        groups = group_by_prefix([examples[i].input_ids for i in scored], [first_scored[i] or 0 for i in scored])
        groups = [PrefixGroup(tuple(scored[m] for m in g.members), g.prefix_len) for g in groups]
    else:
        groups = [PrefixGroup(tuple(scored), 0)]

    def run(members: Sequence[int], prefix_len: int, prefix: PrefixKV | None) -> None:
        parts = [TokenizedExample(examples[i].input_ids[prefix_len:], examples[i].target_mask[prefix_len:])
                 for i in members]
        for indices in length_grouped_batches([len(p) for p in parts], batch_tokens):
            batch = make_batch(parts, indices, pad_token_id, device)
            losses, rows = target_token_losses(model, batch, prefix=prefix)
            index = torch.tensor([members[i] for i in indices])[rows.cpu()]
            sums.index_add_(0, index, losses.double().cpu())
            counts.index_add_(0, index, torch.ones_like(losses, dtype=torch.float64).cpu())

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            run([i for g in groups if g.prefix_len == 0 for i in g.members], 0, None)
            for group in groups:
                if group.prefix_len:
                    first = examples[group.members[0]].input_ids[:group.prefix_len]
                    run(group.members, group.prefix_len, run_prefix(causal.get_decoder(), first, device))
    finally:
        model.train(was_training)
    return [s / c if c > 0 else math.nan for s, c in zip(sums.tolist(), counts.tolist(), strict=True)]


def _score(losses: Sequence[float], tokens: Sequence[int], nbytes: Sequence[int]) -> CategoryScore:
    # A NaN example loss makes the mean NaN, as under the validator's transformers 4.49.
    eval_loss = math.fsum(losses) / len(losses) if losses else math.nan
    t, b = sum(tokens), sum(nbytes)
    bpc, reason = bpc_from(eval_loss, t, b)
    if reason == "eval_loss_nan" and any(math.isnan(x) for x in losses):
        reason = "example_without_targets"
    return CategoryScore(bpc=bpc, eval_loss=eval_loss, target_tokens=t, target_bytes=b, num_examples=len(losses),
                         penalty_reason=reason)


def flock_score(
    model: str | PreTrainedModel,
    records: Sequence[FlockRecord],
    *,
    template: ChatTemplate | str,
    context_length: int,
    tokenizer: PreTrainedTokenizerBase | None = None,
    adapter: str | Path | None = None,
    categories: Sequence[str] | None = None,
    max_params: int | None = None,
    batch_tokens: int = 8192,
    device: str | None = None,
    share_prefixes: bool = True,
) -> FlockScore:
    """FLock's score of a model (spec or loaded) or base + LoRA adapter on validation records.

    A spec is loaded fresh (fp32 on CPU, fp16 on GPU, as validators do) and an adapter on it is merged, as the
    validator does. A loaded model is reused as it is: an adapter is applied unmerged for the call and removed
    afterwards, leaving the model unchanged (measured equal to merging within 1e-4 BPC). ``categories`` gives
    one category per record for the per-category breakdown.
    """
    if categories is not None and len(categories) != len(records):
        raise ValueError(f"{len(categories)} categories for {len(records)} records")
    if not records:
        raise ValueError("no validation records to score")
    with _model_for_scoring(model, adapter, device=device) as (scoring_model, model_tokenizer):
        tokenizer = tokenizer or model_tokenizer
        if tokenizer is None:
            raise ValueError("pass tokenizer= with an already loaded model")
        examples = tokenize_records(records, tokenizer, template, context_length)
        tokens = [e.num_targets for e in examples]
        nbytes = [target_bytes(e, tokenizer) for e in examples]
        num_params = count_params(scoring_model)
        if max_params is not None and num_params > max_params:
            overall = CategoryScore(bpc=PENALTY_SCORE, eval_loss=math.nan, target_tokens=sum(tokens),
                                    target_bytes=sum(nbytes), num_examples=len(examples),
                                    penalty_reason="params_exceeded")
            return FlockScore(**overall.model_dump(), num_params=num_params)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        losses = example_losses(scoring_model, examples, pad, batch_tokens=batch_tokens,
                                share_prefixes=share_prefixes)
    overall = _score(losses, tokens, nbytes)
    per_category: dict[str, CategoryScore] = {}
    if categories is not None:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, category in enumerate(categories):
            groups[category].append(i)
        for category, idx in sorted(groups.items()):
            per_category[category] = _score([losses[i] for i in idx], [tokens[i] for i in idx],
                                            [nbytes[i] for i in idx])
    return FlockScore(**overall.model_dump(), num_params=num_params, per_category=per_category)


@contextmanager
def _model_for_scoring(model: Any, adapter: str | Path | None, *, device: str | None) -> Iterator[tuple[Any, Any]]:
    """Yields (model, tokenizer or None) ready to score; a reused model gets its adapter removed afterwards."""
    from peft import PeftModel

    from tools.models import default_device, load_causal_lm, load_tokenizer

    if adapter is not None:
        _check_adapter_dir(adapter)
    if isinstance(model, str | Path):
        import torch

        device = device or default_device()
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        loaded = load_causal_lm(str(model), dtype=dtype, device=device)
        if adapter is not None:
            loaded = PeftModel.from_pretrained(loaded, str(adapter)).merge_and_unload()
        yield loaded, load_tokenizer(str(model))
    elif adapter is not None:
        wrapped = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        try:
            yield wrapped, None
        finally:
            wrapped.unload()  # removes the LoRA layers, leaving the caller's base model as it was
    else:
        yield model, None


def _check_adapter_dir(adapter: str | Path) -> None:
    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{folder}: not an adapter folder (no adapter_config.json)")


def score_adapter_for_validation(
    hub_id: str,
    adapter_dir: str | Path | None,
    validation_file: str | Path,
    template: str,
    context_length: int,
    max_params: int,
    *,
    base_model: str | Path | None = None,
    categories: Sequence[str] | None = None,
) -> FlockScore:
    """What FLock's validator would submit for an adapter (or the base model when ``adapter_dir`` is None).

    Checks what the validator checks before scoring: the template name exists, and the adapter's
    ``base_model_name_or_path`` names ``hub_id``. ``base_model`` loads the weights from elsewhere (a folder or
    GGUF standing for ``hub_id``) when the Hub is not reachable.
    """
    get_template(template)
    if adapter_dir is not None:
        _check_adapter_dir(adapter_dir)
        config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
        named = config.get("base_model_name_or_path")
        if named != hub_id:
            raise ValueError(f"{adapter_dir}/adapter_config.json: base_model_name_or_path is {named!r}, "
                             f"expected {hub_id!r}; FLock validators load the base model from this field")
    records = load_jsonl(validation_file).records
    spec = str(base_model) if base_model is not None else hub_id
    return flock_score(spec, records, template=template, context_length=context_length, adapter=adapter_dir,
                       categories=categories, max_params=max_params)


# ----- greedy predictions ------------------------------------------------------------------------------------
def prompt_ids(record: FlockRecord, tokenizer: PreTrainedTokenizerBase, template: ChatTemplate | str) -> list[int]:
    """Token ids of the conversation up to the last assistant turn, encoded segment by segment as in training."""
    segments = render_segments(record, template, tokenizer.eos_token)
    last = max(i for i, s in enumerate(segments) if s.target)
    texts = [s.text for s in segments[:last]]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [i for ids in encoded for i in ids]


def reference_answer(record: FlockRecord) -> str:
    return [t.content for t in record.conversations if t.role == "assistant"][-1].strip()


def generate_predictions(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[FlockRecord],
    template: ChatTemplate | str,
    max_new_tokens: int = 128,
    batch_size: int = 32,
    *,
    max_prompt_tokens: int | None = None,
    share_prefixes: bool = True,
) -> list[str]:
    """Greedy answers to each record's last assistant turn, in input order (:func:`tools.decoding.decode`: prompts
    that share a prefix, such as a schema or a tool list, run it once; each row stops at its own end).

    A row stops at the tokenizer's eos or the template's stop word (a token, or text when the tokenizer has no
    such token); the text is cut at the stop word and stripped, so it compares directly with the reference answer.
    """
    t = get_template(template)
    prompts = [prompt_ids(r, tokenizer, t) for r in records]
    if max_prompt_tokens is not None:
        prompts = [p[-max_prompt_tokens:] for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids: set[int] = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    stop_strings: list[str] = []
    if t.stop_word:
        stop_token = tokenizer.convert_tokens_to_ids(t.stop_word)
        if isinstance(stop_token, int) and stop_token != tokenizer.unk_token_id:
            stop_ids.add(stop_token)
        else:
            stop_strings.append(t.stop_word)
    was_training = model.training
    model.eval()
    try:
        decoded = decode(model, prompts, max_new_tokens=max_new_tokens, stop_ids=stop_ids, pad_token_id=pad,
                         stop_strings=stop_strings, tokenizer=tokenizer, batch_size=batch_size,
                         share_prefixes=share_prefixes)
    finally:
        model.train(was_training)
    outputs = []
    for row in decoded:
        text = str(tokenizer.decode(row.tokens, skip_special_tokens=True))
        if t.stop_word and t.stop_word in text:
            text = text.split(t.stop_word, 1)[0]
        outputs.append(text.strip())
    return outputs


# ----- task metrics ------------------------------------------------------------------------------------------
class TaskMetricsReport(BaseModel):
    """Generation metrics overall and per category (each a 0-1 score, higher is better)."""

    overall: dict[str, float]
    per_category: dict[str, dict[str, float]] = Field(default_factory=dict)
    num_examples: int
    predictions: list[str] = Field(default_factory=list)
    """The answer to each record's last assistant turn (empty when no wanted metric scores them)."""
    probe_predictions: list[str] = Field(default_factory=list)
    """The answer to each probe (empty when no wanted metric scores probes)."""


def _scalar_metrics(metric: TaskMetric, result: Mapping[str, Any]) -> dict[str, float]:
    if metric.key not in result:
        raise KeyError(f"metric {metric.name!r} returned no {metric.key!r}: {sorted(result)}")
    return {metric.name: float(result[metric.key])}


def task_metrics(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[FlockRecord],
    *,
    template: ChatTemplate | str,
    task_type: str,
    categories: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    max_new_tokens: int = 128,
    batch_size: int = 32,
    answer: Callable[[Sequence[FlockRecord]], list[str]] | None = None,
) -> TaskMetricsReport:
    """Greedy-decode answers and score them with the task type's metrics (its plugin's, unless ``metrics`` names
    others), overall and per category.

    Metrics the plugin scores on probes (function calls: did the model call the right tool with the right
    arguments?) are computed on its probes of each record; the others on each record's last assistant turn. Only
    what a wanted metric scores is decoded, all of it in one :func:`generate_predictions` call (records and probes
    share prefixes). ``answer`` replaces that call (records in, answers out, in order).
    """
    plugin = get_plugin(task_type)
    if categories is not None and len(categories) != len(records):
        raise ValueError(f"{len(categories)} categories for {len(records)} records")
    names = list(metrics) if metrics is not None else [m.name for m in plugin.metrics]
    missing = [m for m in names if m not in available_metrics()]
    if missing:
        raise ValueError(f"metrics not available: {', '.join(missing)}; available: {', '.join(available_metrics())}")
    wanted = [plugin.metric(name) for name in names]
    cats = list(categories) if categories is not None else ["all"] * len(records)

    golds = [reference_answer(r) for r in records]
    probe_records: list[FlockRecord] = []
    probe_golds: list[str] = []
    probe_cats: list[str] = []
    if any(m.on_probes for m in wanted):
        for record, category in zip(records, cats, strict=True):
            for probe, gold in plugin.probes(record):
                probe_records.append(probe)
                probe_golds.append(gold)
                probe_cats.append(category)
    to_answer = [*(records if any(not m.on_probes for m in wanted) else []), *probe_records]

    def greedy_answers(batch: Sequence[FlockRecord]) -> list[str]:
        return generate_predictions(model, tokenizer, batch, template, max_new_tokens, batch_size)

    answered = (answer or greedy_answers)(to_answer) if to_answer else []
    answers, probe_answers = answered[:len(to_answer) - len(probe_records)], answered[len(to_answer) -
                                                                                      len(probe_records):]

    def score(idx: list[int], probe_idx: list[int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in wanted:
            if metric.on_probes:
                if probe_idx:
                    result = compute_metric(metric.name, [probe_answers[i] for i in probe_idx],
                                            [probe_golds[i] for i in probe_idx])
                    out.update(_scalar_metrics(metric, result))
                continue
            refs = plugin.metric_references(metric.name, [records[i] for i in idx], [golds[i] for i in idx])
            out.update(_scalar_metrics(metric, compute_metric(metric.name, [answers[i] for i in idx], refs)))
        return out

    overall = score(list(range(len(records))), list(range(len(probe_records))))
    per_category = {
        category: score([i for i, c in enumerate(cats) if c == category],
                        [i for i, c in enumerate(probe_cats) if c == category])
        for category in sorted(set(cats))
    } if categories is not None else {}
    return TaskMetricsReport(overall=overall, per_category=per_category, num_examples=len(records),
                             predictions=answers, probe_predictions=probe_answers)


__all__ = [
    "PENALTY_SCORE",
    "CategoryScore",
    "FlockScore",
    "TaskMetricsReport",
    "TokenBatch",
    "bpc_from",
    "count_params",
    "example_losses",
    "flock_score",
    "generate_predictions",
    "length_grouped_batches",
    "make_batch",
    "prompt_ids",
    "score_adapter_for_validation",
    "target_token_losses",
    "task_metrics",
]
