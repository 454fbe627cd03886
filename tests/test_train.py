"""LoRA trainer on a tiny random model: loss falls, only LoRA weights train, FLock-ready output, resume, errors."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tools.data import FlockRecord
from tools.evaluate import flock_score
from tools.templates import tokenize_records
from tools.train import (
    ADAPTER_FILES,
    TrainConfig,
    TrainingOOMError,
    _prepare_model,
    epoch_batches,
    train_adapter,
)

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def make_records(n: int = 24) -> list[FlockRecord]:
    colours = ["red", "green", "blue", "yellow"]
    return [FlockRecord.model_validate({
        "system": "Answer with the colour only.",
        "conversations": [{"role": "user", "content": f"Item {i}: which colour?"},
                          {"role": "assistant", "content": f"The colour is {colours[i % 4]}."}]})
        for i in range(n)]


RECORDS = make_records()
FAST = TrainConfig(learning_rate=5e-3, max_steps=8, batch_tokens=256, checkpoint_every=0, warmup_ratio=0.0)


def test_prepare_model_trains_only_lora(tiny_model_dir):
    model = _prepare_model(str(tiny_model_dir), HUB_ID, TrainConfig(), "cpu", use_bf16=False, use_qlora=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # all-linear: every projection of attention and MLP carries LoRA, the LM head does not
    kinds = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad)


def test_train_lowers_loss_and_writes_flock_adapter(tiny_model_dir, tmp_path, smol_tokenizer):
    out = tmp_path / "adapter"
    seen = []
    result = train_adapter(str(tiny_model_dir), RECORDS, out, FAST, template="qwen1.5", context_length=512,
                           hub_id=HUB_ID, progress=seen.append)
    assert result.steps == 8 and [p.step for p in seen] == list(range(1, 9))
    assert result.stopped == "max_steps"
    assert sum(result.loss_curve[-3:]) / 3 < sum(result.loss_curve[:3]) / 3
    assert result.real_tokens <= result.padded_tokens and result.tokens_per_s > 0
    assert result.peak_memory_bytes > 0 and result.peak_memory_method

    assert sorted(p.name for p in out.iterdir()) == sorted(ADAPTER_FILES)  # adapter files only
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == HUB_ID
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert weights and all("lora_" in k for k in weights)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())  # B starts at 0
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["steps"] == 8 and result.metrics_path.parent == out.parent

    base = flock_score(str(tiny_model_dir), RECORDS, template="qwen1.5", context_length=512)
    tuned = flock_score(str(tiny_model_dir), RECORDS, template="qwen1.5", context_length=512, adapter=out)
    assert tuned.bpc < base.bpc  # the adapter reloads with peft and fits its training data better


def test_resume_after_interruption_matches_uninterrupted(tiny_model_dir, tmp_path):
    config = FAST.model_copy(update={"checkpoint_every": 2, "max_steps": 6})
    straight = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "straight", config, template="qwen1.5",
                             context_length=512, hub_id=HUB_ID)

    class Killed(Exception):
        pass

    def die_at_5(progress):
        if progress.step == 5:
            raise Killed

    with pytest.raises(Killed):
        train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "resumed", config, template="qwen1.5",
                      context_length=512, hub_id=HUB_ID, progress=die_at_5)
    assert (tmp_path / "resumed" / ".checkpoints" / "latest.json").is_file()
    resumed = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "resumed", config, template="qwen1.5",
                            context_length=512, hub_id=HUB_ID)
    assert resumed.resumed_from_step == 4 and resumed.steps == 6
    assert resumed.loss_curve == pytest.approx(straight.loss_curve, rel=1e-5)
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (tmp_path / "resumed" / ".checkpoints").exists()

    again = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "resumed", config, template="qwen1.5",
                          context_length=512, hub_id=HUB_ID)
    assert again.wall_time_s == resumed.wall_time_s  # finished run with the same inputs: returned, not retrained


def test_checkpoint_of_another_run_is_refused(tiny_model_dir, tmp_path):
    config = FAST.model_copy(update={"checkpoint_every": 2, "max_steps": 4})

    def die_at_3(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "a", config, template="qwen1.5", context_length=512,
                      hub_id=HUB_ID, progress=die_at_3)
    with pytest.raises(ValueError, match="checkpoint of a different run"):
        train_adapter(str(tiny_model_dir), RECORDS[:10], tmp_path / "a", config, template="qwen1.5",
                      context_length=512, hub_id=HUB_ID)
    fresh = train_adapter(str(tiny_model_dir), RECORDS[:10], tmp_path / "a", config, template="qwen1.5",
                          context_length=512, hub_id=HUB_ID, resume=False)
    assert fresh.resumed_from_step is None and fresh.steps == 4


def test_gradient_checkpointing_keeps_the_math(tiny_model_dir, tmp_path):
    config = FAST.model_copy(update={"max_steps": 3})
    plain = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "plain", config, template="qwen1.5",
                          context_length=512, hub_id=HUB_ID)
    checkpointed = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "gc",
                                 config.model_copy(update={"gradient_checkpointing": True}), template="qwen1.5",
                                 context_length=512, hub_id=HUB_ID)
    assert checkpointed.loss_curve == pytest.approx(plain.loss_curve, rel=1e-4)


def test_out_of_memory_names_the_setting(tiny_model_dir, tmp_path, monkeypatch):
    import tools.train

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(tools.train, "target_token_losses", no_memory)
    with pytest.raises(TrainingOOMError, match=r"Lower TrainConfig\.batch_tokens \(now 256"):
        train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "oom", FAST, template="qwen1.5",
                      context_length=512, hub_id=HUB_ID)


def test_bad_inputs(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="no training records"):
        train_adapter(str(tiny_model_dir), [], tmp_path / "x", FAST, template="qwen1.5", context_length=512,
                      hub_id=HUB_ID)
    with pytest.raises(ValueError, match="has an assistant token within context_length 5"):
        train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "x", FAST, template="qwen1.5", context_length=5,
                      hub_id=HUB_ID)
    with pytest.raises(ValueError, match="unknown FLock template"):
        train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "x", FAST, template="nope", context_length=512)
    with pytest.raises(ValueError, match="lora_r"):
        TrainConfig(lora_r=0)


def test_epoch_batches_cover_data_within_budget(smol_tokenizer):
    examples = tokenize_records(make_records(40), smol_tokenizer, "qwen1.5", 512)
    first = epoch_batches(examples, 200, seed=0, epoch=0)
    assert sorted(i for b in first for i in b) == list(range(40))
    assert all(max(len(examples[i]) for i in b) * len(b) <= 200 for b in first)
    assert first == epoch_batches(examples, 200, seed=0, epoch=0)
    assert first != epoch_batches(examples, 200, seed=0, epoch=1)


@pytest.mark.slow
def test_qlora_trains_on_cpu(tiny_model_dir, tmp_path):
    config = FAST.model_copy(update={"qlora": True, "max_steps": 3})
    result = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "q", config, template="qwen1.5",
                           context_length=512, hub_id=HUB_ID)
    assert result.qlora and result.steps == 3
    assert all("lora_" in k for k in load_file(str(tmp_path / "q" / "adapter_model.safetensors")))


def test_time_limit_shortens_the_schedule_and_stops_in_time(tiny_model_dir, tmp_path):
    """A step paced at >= 0.2 s with a 1.5 s limit: after three steps the run is re-planned to the steps that fit,
    the learning rate still decays to its floor, and the adapter's identity ignores the limit."""
    import time

    config = FAST.model_copy(update={"max_steps": None, "epochs": 20, "max_seconds": 1.5})
    seen = []

    def slow(progress):
        seen.append(progress)
        time.sleep(0.2)

    result = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "timed", config, template="qwen1.5",
                           context_length=512, hub_id=HUB_ID, progress=slow)
    planned = seen[0].total_steps
    assert result.stopped == "max_seconds"
    assert 4 <= result.steps <= 9 < planned
    assert result.train_time_s < 1.5 + 0.6
    assert seen[-1].learning_rate < 0.3 * config.learning_rate
    untimed = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "timed",
                            config.model_copy(update={"max_seconds": 99.0}), template="qwen1.5",
                            context_length=512, hub_id=HUB_ID)
    assert untimed.fingerprint == result.fingerprint  # a finished run is reused whatever time is left


def test_example_weights_weigh_each_example_in_the_step_loss(tiny_model_dir, smol_tokenizer):
    """A weight of 0 removes an example from the step (same loss and gradients as training without it), and
    weights act relative to each other (doubling all of them changes nothing)."""
    from tools.evaluate import make_batch
    from tools.train import _step_loss

    model = _prepare_model(str(tiny_model_dir), HUB_ID, TrainConfig(), "cpu", use_bf16=False, use_qlora=False)
    examples = tokenize_records([RECORDS[0], make_records(3)[2]], smol_tokenizer, "qwen1.5", 512)
    pad = smol_tokenizer.pad_token_id
    trainable = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():  # LoRA B starts at 0: move it so the gradients reach every LoRA matrix
        for p in trainable:
            p.add_(0.01 * torch.randn_like(p))

    def step(indices, weights, weighting="example"):
        model.zero_grad(set_to_none=True)
        loss, _ = _step_loss(model, [make_batch(examples, indices, pad)], weighting, contextlib.nullcontext,
                             weights)
        return loss, [p.grad.clone() for p in trainable]

    targets = [sum(e.target_mask[1:]) for e in examples]
    for weighting in ("example", "token"):
        alone_loss, alone_grads = step([0], [1.0, 1.0], weighting)
        masked_loss, masked_grads = step([0, 1], [1.0, 0.0], weighting)
        assert masked_loss == pytest.approx(alone_loss, rel=1e-5)
        assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(alone_grads, masked_grads, strict=True))
        other_loss, _ = step([1], [1.0, 1.0], weighting)
        mixed_loss, _ = step([0, 1], [1.0, 3.0], weighting)
        share = [1.0, 3.0] if weighting == "example" else [targets[0], 3.0 * targets[1]]
        assert mixed_loss == pytest.approx((share[0] * alone_loss + share[1] * other_loss) / sum(share), rel=1e-5)
        doubled_loss, _ = step([0, 1], [2.0, 6.0], weighting)
        assert doubled_loss == pytest.approx(mixed_loss, rel=1e-6)


def test_example_weights_in_training(tiny_model_dir, tmp_path):
    plain = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "plain", FAST, template="qwen1.5",
                          context_length=512, hub_id=HUB_ID)
    uniform = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "uniform", FAST, template="qwen1.5",
                            context_length=512, hub_id=HUB_ID, example_weights=[1.0] * len(RECORDS))
    assert uniform.loss_curve == pytest.approx(plain.loss_curve, rel=1e-5)
    halved = [1.0 if i % 2 else 0.25 for i in range(len(RECORDS))]
    weighted = train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "weighted", FAST, template="qwen1.5",
                             context_length=512, hub_id=HUB_ID, example_weights=halved)
    assert weighted.loss_curve != pytest.approx(plain.loss_curve, rel=1e-3)
    assert len({plain.fingerprint, uniform.fingerprint, weighted.fingerprint}) == 3  # weights are in the identity
    for bad in ([1.0], [0.0] * len(RECORDS), [-1.0] + [1.0] * (len(RECORDS) - 1), [math.nan] * len(RECORDS)):
        with pytest.raises(ValueError, match="example_weights"):
            train_adapter(str(tiny_model_dir), RECORDS, tmp_path / "bad", FAST, template="qwen1.5",
                          context_length=512, hub_id=HUB_ID, example_weights=bad)
