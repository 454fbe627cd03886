"""The lean training forwards (tools.train_fused) compute what peft's and transformers' own forwards compute."""

from __future__ import annotations

import pytest
import torch

from tools.evaluate import make_batch, target_token_losses
from tools.templates import tokenize_records
from tools.train import TrainConfig, _prepare_model
from tools.train_fused import SiluGate, fuse_for_training

from .test_train import HUB_ID, make_records


def _loss_and_grads(model, batch):
    losses, _ = target_token_losses(model, batch)
    loss = losses.mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss), grads


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_fused_forwards_match_peft_and_transformers(tiny_model_dir, smol_tokenizer, dropout):
    examples = tokenize_records(make_records(6), smol_tokenizer, "qwen1.5", 512)
    batch = make_batch(examples, list(range(6)), smol_tokenizer.pad_token_id)
    results = []
    for fused in (False, True):
        config = TrainConfig(fused_ops=fused, lora_dropout=dropout)
        model = _prepare_model(str(tiny_model_dir), HUB_ID, config, "cpu", use_bf16=False, use_qlora=False)
        with torch.no_grad():  # LoRA B starts at zero: give it values so its path counts
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.02, generator=torch.Generator().manual_seed(len(name)))
        torch.manual_seed(1)  # the same dropout masks in both runs
        results.append(_loss_and_grads(model, batch))
    (plain_loss, plain_grads), (fused_loss, fused_grads) = results
    assert fused_loss == pytest.approx(plain_loss, rel=1e-6)
    assert plain_grads.keys() == fused_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fuse_counts_and_leaves_other_layers_alone(tiny_model_dir):
    model = _prepare_model(str(tiny_model_dir), HUB_ID, TrainConfig(fused_ops=False), "cpu", False, False)
    assert fuse_for_training(model) == {"lora_linear": 14, "gated_mlp": 2}  # 2 layers x 7 projections
    dora = _prepare_model(str(tiny_model_dir), HUB_ID, TrainConfig(fused_ops=False), "cpu", False, False)
    for module in dora.modules():  # a variant (DoRA and others) keeps peft's forward
        if hasattr(module, "lora_variant"):
            module.lora_variant["default"] = object()
    assert fuse_for_training(dora)["lora_linear"] == 0


def test_silu_gate_gradients():
    gate = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SiluGate.apply, (gate, up))
    torch.testing.assert_close(SiluGate.apply(gate, up), torch.nn.functional.silu(gate) * up)


def test_target_only_lm_head_matches_full_logits_loss(tiny_model_dir, smol_tokenizer):
    """The trainer's loss runs the LM head only where the next token is a target; transformers' own loss over the
    full logits gives the same per-token mean and the same LoRA gradients."""
    examples = tokenize_records(make_records(5), smol_tokenizer, "qwen1.5", 512)
    batch = make_batch(examples, list(range(5)), smol_tokenizer.pad_token_id)
    model = _prepare_model(str(tiny_model_dir), HUB_ID, TrainConfig(), "cpu", use_bf16=False, use_qlora=False)
    target_loss, target_grads = _loss_and_grads(model, batch)
    model.zero_grad(set_to_none=True)
    full = model(input_ids=batch.input_ids, labels=batch.labels, use_cache=False).loss
    full.backward()
    assert float(full) == pytest.approx(target_loss, rel=1e-6)
    for name, param in model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param.grad, target_grads[name], rtol=1e-4, atol=1e-7, msg=name)
