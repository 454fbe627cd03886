"""Leaner training forwards for LoRA on decoder models: the same math with fewer ops and less saved memory.

- LoRA projections (peft ``lora.Linear`` over a plain ``nn.Linear``): ``base(x) + scaling * B(A(dropout(x)))`` as
  one ``addmm`` over the base output instead of a matmul, a scaling multiply and an add over the full output.
- Gated MLPs with SiLU (Llama, Qwen2/3, Mistral): ``silu(gate) * up`` as one autograd function that keeps only
  ``gate`` and ``up`` for the backward pass and recomputes the activation there, instead of keeping ``silu(gate)``
  too (an intermediate-size tensor per token and layer, about a sixth of what a layer keeps in fp32).

Both are checked against peft's and transformers' own forwards (tests/test_train_fused.py: same loss and
gradients). Anything else (QLoRA layers, DoRA, other activations, several active adapters) keeps its own forward.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

#: MLP classes whose forward is ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``.
GATED_MLP_CLASSES = frozenset({"LlamaMLP", "Qwen2MLP", "Qwen3MLP", "MistralMLP"})
SILU_NAMES = frozenset({"silu", "swish"})


class SiluGate(torch.autograd.Function):
    """``silu(gate) * up``, keeping only its inputs for the backward pass."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = ctx.saved_tensors
        sigmoid = torch.sigmoid(gate)
        silu = gate * sigmoid
        grad_gate = grad * up * (sigmoid * (1 + gate * (1 - sigmoid)))
        return grad_gate, grad * silu


def _gated_mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SiluGate.apply(self.gate_proj(x), self.up_proj(x)))


def _lora_linear_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if args or kwargs or self.disable_adapters or self.merged:
        return type(self).forward(self, x, *args, **kwargs)
    name = self.active_adapters[0]
    base = self.base_layer
    out = F.linear(x, base.weight, base.bias)
    low_rank = F.linear(self.lora_dropout[name](x), self.lora_A[name].weight)
    shape = out.shape
    fused = torch.addmm(out.reshape(-1, shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]),
                        self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return fused.view(shape)


def _plain_lora(module: Any) -> bool:
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or type(module.base_layer) is not torch.nn.Linear:
        return False
    active = list(module.active_adapters)
    return len(active) == 1 and active[0] in module.lora_A and active[0] not in module.lora_variant


def fuse_for_training(model: Any) -> dict[str, int]:
    """Give ``model``'s plain LoRA projections and SiLU-gated MLPs the lean forwards; returns how many of each."""
    counts = {"lora_linear": 0, "gated_mlp": 0}
    config = getattr(model, "config", None)
    silu = getattr(config, "hidden_act", None) in SILU_NAMES
    for module in model.modules():
        if _plain_lora(module):
            module.forward = types.MethodType(_lora_linear_forward, module)
            counts["lora_linear"] += 1
        elif silu and type(module).__name__ in GATED_MLP_CLASSES:
            module.forward = types.MethodType(_gated_mlp_forward, module)
            counts["gated_mlp"] += 1
    return counts


__all__ = ["GATED_MLP_CLASSES", "SiluGate", "fuse_for_training"]
