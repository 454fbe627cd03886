"""The research trainer: a plain plan reproduces tools.train; weights and stages do what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.trainer import Stage, plan_batches, tokenize, train_plan
from tools.data import load_jsonl
from tools.templates import TokenizedExample
from tools.train import TrainConfig, train_adapter

TASK = Path(__file__).resolve().parents[2] / "tools" / "demo_tasks" / "text2sql" / "training_set.jsonl"


def _examples(lengths: list[int]) -> list[TokenizedExample]:
    return [TokenizedExample([1] * n, [0] * (n - 2) + [1, 1]) for n in lengths]


def test_plan_orders_stages_and_cuts_at_the_token_budget() -> None:
    examples = _examples([10, 12, 14, 16])
    stages = [Stage([0, 0, 1, 1]), Stage([2, 2, 0, 0])]
    batches = plan_batches(examples, stages, batch_tokens=24, seed=0, max_train_tokens=None)
    flat = [i for b in batches for i in b]
    assert sorted(flat[:2]) == [2, 3]
    assert sorted(flat[2:]) == [0, 0, 1, 1]
    cut = plan_batches(examples, stages, batch_tokens=24, seed=0, max_train_tokens=30)
    assert sum(len(examples[i]) for b in cut for i in b) >= 30
    assert sum(len(examples[i]) for b in cut[:-1] for i in b) < 30


def test_plan_rejects_a_stage_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="stage 0"):
        plan_batches(_examples([5, 6]), [Stage([1])], batch_tokens=64, seed=0, max_train_tokens=None)


def test_a_plain_plan_reproduces_train_adapter(tiny_model_dir: Path, smol_tokenizer, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    records = load_jsonl(TASK).records[:12]
    config = TrainConfig(epochs=2, seed=3, batch_tokens=1024, bf16=False, checkpoint_every=0)
    reference = train_adapter(tiny_model_dir, records, tmp_path / "ref", config, template="qwen1.5",
                              context_length=1024, hub_id="tiny/model", device="cpu")
    examples = tokenize(records, smol_tokenizer, "qwen1.5", 1024)
    ours = train_plan(str(tiny_model_dir), "tiny/model", examples, [1.0] * len(examples), [Stage([2] * 12)],
                      tmp_path / "ours", config, smol_tokenizer.pad_token_id)
    assert ours.steps == reference.steps
    assert ours.loss_curve == pytest.approx(reference.loss_curve, rel=1e-5)
    a = load_file(str(tmp_path / "ref" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "ours" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5


def test_weight_zero_rows_teach_nothing(tiny_model_dir: Path, smol_tokenizer, tmp_path: Path) -> None:
    """Rows at weight 0 add no gradient: 3 rows + 3 rows at weight 0 in one batch train as the 3 rows alone at
    half weight (a step's loss divides by the rows in it)."""
    from safetensors.torch import load_file

    records = load_jsonl(TASK).records[:6]
    examples = tokenize(records, smol_tokenizer, "qwen1.5", 1024)
    config = TrainConfig(seed=1, batch_tokens=100_000, bf16=False)
    pad = smol_tokenizer.pad_token_id
    mixed = train_plan(str(tiny_model_dir), "tiny/model", examples, [1, 1, 1, 0, 0, 0], [Stage([2] * 6)],
                       tmp_path / "mixed", config, pad)
    alone = train_plan(str(tiny_model_dir), "tiny/model", examples[:3], [0.5] * 3, [Stage([2] * 3)],
                       tmp_path / "alone", config, pad)
    assert mixed.steps == alone.steps == 2
    a = load_file(str(tmp_path / "mixed" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "alone" / "adapter_model.safetensors"))
    for key in a:
        # Equal gradients up to float summation order; Adam's division amplifies that on near-zero gradients,
        # so allow 1% of one step (lr 4e-4 x 2 steps).
        assert (a[key] - b[key]).abs().max() < 1e-5
    assert any(a[key].abs().max() > 1e-4 for key in a if "lora_B" in key)
