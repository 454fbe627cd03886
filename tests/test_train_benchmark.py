"""The training benchmark's parts on the tiny model: the long-row builder, both anchors, the FLOP count."""

from __future__ import annotations

import json

import pytest

from benchmarks.long_rows import build_long_rows
from benchmarks.reference_recipe import FULL_AUTOMATION, run_reference
from benchmarks.sfttrainer_recipe import run_sfttrainer
from benchmarks.train_throughput import DEMO, flops_per_token
from tools.data import load_jsonl
from tools.templates import TokenizedExample, tokenize_records
from tools.train import TrainConfig

from .test_train import HUB_ID, make_records


def test_long_rows_are_long_deterministic_and_from_one_split(smol_tokenizer):
    train = load_jsonl(DEMO / "training_set.jsonl").records
    rows = build_long_rows(train, smol_tokenizer, 6, seed=3)
    lengths = [len(e) for e in tokenize_records(rows, smol_tokenizer, "qwen1.5", 10**6)]
    assert all(400 <= n <= 1400 for n in lengths)
    assert [r.model_dump() for r in rows] == [r.model_dump() for r in build_long_rows(train, smol_tokenizer, 6, seed=3)]
    answers = {r.conversations[-1].content for r in train}
    assert all(turn.content in answers for r in rows for turn in r.conversations if turn.role == "assistant")
    with pytest.raises(ValueError, match="not a demo text-to-SQL record"):
        build_long_rows(make_records(3), smol_tokenizer, 1)


@pytest.mark.parametrize("mode", ["padded", "padding_free"])
def test_anchors_train_and_write_flock_adapters(tiny_model_dir, smol_tokenizer, tmp_path, mode):
    examples = tokenize_records(make_records(4), smol_tokenizer, "qwen1.5", 512)
    ref = run_reference(str(tiny_model_dir), HUB_ID, examples, smol_tokenizer.pad_token_id, tmp_path / "ref", 512, 1,
                        False, recipe=FULL_AUTOMATION)
    sft = run_sfttrainer(str(tiny_model_dir), HUB_ID, examples, smol_tokenizer, tmp_path / "sft", 512,
                         TrainConfig(lora_r=4, lora_alpha=8), False, mode=mode, batch_size=2)
    total = sum(len(e) for e in examples)
    assert ref["steps"] == 1 and sft["steps"] == 2  # 4 rows: one step of 8 (the last one short); 2 x 2
    for run in (ref, sft):
        assert run["real_tokens"] == total and run["train_time_s"] > 0 and run["peak_bytes"] > 0
        assert json.loads((run["adapter"] / "adapter_config.json").read_text())["base_model_name_or_path"] == HUB_ID
    assert json.loads((sft["adapter"] / "adapter_config.json").read_text())["r"] == 4


def test_flops_per_token_counts_linear_attention_and_target_head():
    shape = {"linear_params": 100, "layers": 2, "hidden": 8, "attention_width": 8, "vocab": 10}
    rows = [TokenizedExample([1, 2, 3], [0, 0, 1])]
    # 4 x 100, attention 12 x 2 layers x 8 x mean context 2 (positions 1..3), head 4 x 10 x 8 x 1/3 targets
    assert flops_per_token(shape, rows) == pytest.approx(400 + 384 + 320 / 3)
