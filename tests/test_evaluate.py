"""FLock-exact scoring: hand computation of the formula, per-example-mean semantics, penalties, adapters."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tools.comparison import EvalReport, compare_reports
from tools.data import FlockRecord
from tools.evaluate import (
    PENALTY_SCORE,
    FlockScore,
    TaskMetricsReport,
    bpc_from,
    flock_score,
    generate_predictions,
    length_grouped_batches,
    prompt_ids,
    score_adapter_for_validation,
    task_metrics,
)
from tools.tasks.function_calling import function_call_probes
from tools.templates import tokenize_records

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def rec(user: str, answer: str, system: str | None = "You answer briefly.") -> FlockRecord:
    obj: dict = {"conversations": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
    if system is not None:
        obj["system"] = system
    return FlockRecord.model_validate(obj)


RECORDS = [
    rec("What is 2+2?", "4"),
    rec("Name a colour.", "Blue, like the sky on a clear summer day over the calm sea."),
    rec("List three fruits.", "Apple, banana and cherry."),
    FlockRecord.model_validate({"system": "S", "conversations": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Goodbye, see you soon."}]}),
    rec("Say ünïcödé", "ünïcödé ✓", system=None),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.eval()
    return model


def hand_score(model, tokenizer, records, template, context_length):
    """FLock's validator arithmetic written out plainly: batch size 1, explicit log-softmax, decode for bytes."""
    examples = tokenize_records(records, tokenizer, template, context_length)
    losses, total_tokens, total_bytes = [], 0, 0
    for ex in examples:
        ids = torch.tensor([ex.input_ids])
        with torch.no_grad():
            logits = model(ids).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        terms = [-logp[t, ex.input_ids[t + 1]].item() for t in range(len(ex) - 1) if ex.target_mask[t + 1] == 1]
        losses.append(sum(terms) / len(terms) if terms else math.nan)
        target_ids = [i for i, m in zip(ex.input_ids, ex.target_mask, strict=True) if m]
        if target_ids:
            total_tokens += len(target_ids)
            total_bytes += len(tokenizer.decode(target_ids, skip_special_tokens=True).encode("utf-8"))
    eval_loss = sum(losses) / len(losses)
    return eval_loss, total_tokens, total_bytes, eval_loss * total_tokens / math.log(2) / total_bytes, losses


def test_bpc_matches_hand_computation(tiny, smol_tokenizer):
    eval_loss, t, b, bpc, _ = hand_score(tiny, smol_tokenizer, RECORDS, "qwen1.5", 2048)
    score = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer)
    assert score.penalty_reason is None
    assert (score.target_tokens, score.target_bytes, score.num_examples) == (t, b, len(RECORDS))
    assert score.eval_loss == pytest.approx(eval_loss, rel=1e-6)
    assert score.bpc == pytest.approx(bpc, rel=1e-6)
    assert score.num_params == sum(p.numel() for p in tiny.parameters())


def test_small_token_budget_gives_same_score(tiny, smol_tokenizer):
    big = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer)
    small = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer,
                        batch_tokens=1)
    assert small.bpc == pytest.approx(big.bpc, rel=1e-6)


def test_eval_loss_is_mean_of_per_example_means(tiny, smol_tokenizer):
    _, _, _, _, losses = hand_score(tiny, smol_tokenizer, RECORDS, "qwen1.5", 2048)
    examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", 2048)
    counts = [sum(e.target_mask[1:]) for e in examples]
    token_weighted = sum(loss * c for loss, c in zip(losses, counts, strict=True)) / sum(counts)
    score = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer)
    assert score.eval_loss == pytest.approx(sum(losses) / len(losses), rel=1e-6)
    assert abs(score.eval_loss - token_weighted) > 1e-4  # the two means really differ on these records


def test_matches_transformers_trainer_like_the_validator(tiny, smol_tokenizer):
    """The validator's own path: Trainer.evaluate, batch size 1, FLock's collator."""
    from transformers import Trainer, TrainingArguments

    from tools.templates import SFTCollator

    class Rows(torch.utils.data.Dataset):
        def __init__(self, examples):
            self.examples = examples

        def __len__(self):
            return len(self.examples)

        def __getitem__(self, i):
            return self.examples[i]

    examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", 2048)
    args = TrainingArguments(output_dir="/tmp/synthgen-test-trainer", per_device_eval_batch_size=1, use_cpu=True,
                             report_to=[], remove_unused_columns=False)
    collator = SFTCollator(smol_tokenizer.pad_token_id, 2048)
    trainer = Trainer(model=tiny, args=args, eval_dataset=Rows(examples), data_collator=collator)
    eval_loss = trainer.evaluate()["eval_loss"]
    score = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer)
    assert score.eval_loss == pytest.approx(eval_loss, rel=1e-6)


def test_per_category_scores(tiny, smol_tokenizer):
    cats = ["math", "chat", "chat", "chat", "unicode"]
    score = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer,
                        categories=cats)
    assert set(score.per_category) == {"math", "chat", "unicode"}
    chat = score.per_category["chat"]
    _, t, b, bpc, _ = hand_score(tiny, smol_tokenizer, RECORDS[1:4], "qwen1.5", 2048)
    assert (chat.target_tokens, chat.target_bytes, chat.num_examples) == (t, b, 3)
    assert chat.bpc == pytest.approx(bpc, rel=1e-6)
    with pytest.raises(ValueError, match="2 categories for 5 records"):
        flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer,
                    categories=["a", "b"])


def test_penalties(tiny, smol_tokenizer):
    score = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer,
                        max_params=1000)
    assert (score.bpc, score.penalty_reason) == (PENALTY_SCORE, "params_exceeded")

    # Truncation that leaves one example without answer tokens poisons the whole score (validator semantics).
    examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", 4096)
    cut = min(e.target_mask.index(1) for e in examples) + 1  # the shortest prompt keeps one target token
    cut_examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", cut)
    assert any(e.num_targets == 0 for e in cut_examples)
    score = flock_score(tiny, RECORDS, template="qwen1.5", context_length=cut, tokenizer=smol_tokenizer,
                        categories=["a", "b", "b", "b", "b"])
    assert (score.bpc, score.penalty_reason) == (PENALTY_SCORE, "example_without_targets")
    assert math.isnan(score.eval_loss)

    assert bpc_from(0.5, 10, 0) == (PENALTY_SCORE, "no_target_bytes")
    assert bpc_from(float("inf"), 10, 10) == (PENALTY_SCORE, "eval_loss_inf")
    assert bpc_from(0.693147, 100, 200)[0] == pytest.approx(0.5, rel=1e-6)  # LV tests/core/test_loss.py


def test_zero_target_bytes_penalty(tiny, smol_tokenizer):
    # The answer is a single special token: its target tokens decode to "" except the trailing "\n"; cutting
    # right after the two special tokens leaves target tokens but no target bytes.
    only_special = rec("x", "<|im_start|>")
    full = tokenize_records([only_special], smol_tokenizer, "qwen1.5", 4096)[0]
    cut = full.target_mask.index(1) + 2
    score = flock_score(tiny, [only_special], template="qwen1.5", context_length=cut, tokenizer=smol_tokenizer)
    assert score.target_tokens == 2 and score.target_bytes == 0
    assert (score.bpc, score.penalty_reason) == (PENALTY_SCORE, "no_target_bytes")


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                 init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = HUB_ID
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_adapter_merged_equals_unmerged_and_base_is_restored(tiny, tiny_model_dir, smol_tokenizer, random_adapter):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    unmerged = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer,
                           adapter=random_adapter)
    merged = flock_score(str(tiny_model_dir), RECORDS, template="qwen1.5", context_length=2048,
                         adapter=random_adapter)
    base = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer)
    assert unmerged.bpc == pytest.approx(merged.bpc, abs=1e-4)
    assert unmerged.num_params == merged.num_params == base.num_params
    assert abs(unmerged.bpc - base.bpc) > 1e-3  # the adapter really changed the model
    after = tiny.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_score_adapter_for_validation(tiny_model_dir, random_adapter, tmp_path):
    validation = tmp_path / "validation.jsonl"
    validation.write_text("".join(r.to_json_line() + "\n" for r in RECORDS))
    score = score_adapter_for_validation(HUB_ID, random_adapter, validation, "qwen1.5", 2048, 10**9,
                                         base_model=tiny_model_dir)
    assert isinstance(score, FlockScore) and score.penalty_reason is None and score.num_examples == len(RECORDS)
    with pytest.raises(ValueError, match="base_model_name_or_path is .*expected 'org/other'"):
        score_adapter_for_validation("org/other", random_adapter, validation, "qwen1.5", 2048, 10**9,
                                     base_model=tiny_model_dir)
    with pytest.raises(ValueError, match="unknown FLock template"):
        score_adapter_for_validation(HUB_ID, random_adapter, validation, "qwen2.5", 2048, 10**9)


def test_length_grouped_batches_respect_budget():
    lengths = [5, 100, 7, 6, 90, 300]
    batches = length_grouped_batches(lengths, 200)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 200 or len(b) == 1
    assert [5] in batches  # 300 tokens alone, over the budget


def test_generate_predictions_batched_equals_single(tiny, smol_tokenizer):
    records = RECORDS[:4]
    single = generate_predictions(tiny, smol_tokenizer, records, "qwen1.5", max_new_tokens=6, batch_size=1)
    batched = generate_predictions(tiny, smol_tokenizer, records, "qwen1.5", max_new_tokens=6, batch_size=4)
    assert batched == single and len(single) == 4
    ids = prompt_ids(RECORDS[3], smol_tokenizer, "qwen1.5")
    text = smol_tokenizer.decode(ids)
    assert text.endswith("<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n") and "Goodbye" not in text


def test_function_call_probes():
    record = FlockRecord.model_validate({"conversations": [
        {"role": "user", "content": "Recipes with rice?"},
        {"role": "function_call", "content": json.dumps({"name": "search", "arguments": {"q": "rice"}})},
        {"role": "observation", "content": "{}"},
        {"role": "assistant", "content": "None found."}]})
    [(probe, gold)] = function_call_probes(record)
    assert json.loads(gold) == [{"name": "search", "arguments": {"q": "rice"}}]
    assert probe.conversations[-1].role == "assistant"
    assert probe.conversations[-1].content == 'Action: search\nAction Input: {"q": "rice"}'


def test_task_metrics_plumbing(tiny, smol_tokenizer):
    report = task_metrics(tiny, smol_tokenizer, RECORDS[:3], template="qwen1.5", task_type="chat",
                          categories=["a", "b", "b"], max_new_tokens=4, batch_size=2)
    assert set(report.overall) == {"token_f1", "bleu"} and set(report.per_category) == {"a", "b"}
    assert len(report.predictions) == 3
    with pytest.raises(ValueError, match="metrics not available: nope"):
        task_metrics(tiny, smol_tokenizer, RECORDS[:1], template="qwen1.5", task_type="chat", metrics=["nope"])


def test_task_metrics_text2sql_uses_sql_metrics(tiny, smol_tokenizer):
    from pathlib import Path

    demo = Path(__file__).resolve().parents[1] / "tools" / "demo_tasks" / "text2sql" / "validation_set.jsonl"
    if not demo.is_file():
        pytest.skip("demo text2sql task not present")
    from tools.data import load_jsonl

    records = load_jsonl(demo).records[:2]
    report = task_metrics(tiny, smol_tokenizer, records, template="qwen1.5", task_type="text2sql",
                          max_new_tokens=4, batch_size=2)
    assert set(report.overall) == {"sql_execution", "sql_exact_match", "exact_match"}
    assert all(0.0 <= v <= 1.0 for v in report.overall.values())
    assert report.overall["sql_execution"] == 0.0  # four random tokens are not a query


def test_compare_reports_deltas_and_direction():
    def flock(bpc, per):
        cats = {k: {"bpc": v, "eval_loss": 1.0, "target_tokens": 1, "target_bytes": 1, "num_examples": 1}
                for k, v in per.items()}
        return FlockScore(bpc=bpc, eval_loss=1.0, target_tokens=1, target_bytes=1, num_examples=1, num_params=1,
                          per_category=cats)

    base = EvalReport(flock=flock(1.0, {"join": 1.2}),
                      tasks=TaskMetricsReport(overall={"exact_match": 0.2}, per_category={"join": {"exact_match": 0.1}},
                                              num_examples=2))
    adapter = EvalReport(flock=flock(0.8, {"join": 1.3}),
                         tasks=TaskMetricsReport(overall={"exact_match": 0.5},
                                                 per_category={"join": {"exact_match": 0.0}}, num_examples=2))
    rows = {(r.category, r.metric): r for r in compare_reports(base, adapter).rows}
    assert rows[("overall", "bpc")].delta == pytest.approx(-0.2) and rows[("overall", "bpc")].improved
    assert not rows[("join", "bpc")].improved
    assert rows[("overall", "exact_match")].improved and not rows[("join", "exact_match")].improved
    table = compare_reports(base, adapter).to_markdown()
    assert "| overall | bpc | 1.0000 | 0.8000 | -0.2000 (better) |" in table
