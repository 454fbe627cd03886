"""Shared prompt prefixes: find them, run them once, reuse their key/value cache.

Many evaluation examples and generation prompts start with the same tokens: a system prompt and a database
schema, a tool list, few-shot examples. In a decoder-only model the keys and values of those tokens do not depend
on what follows, so they are computed once per group of sequences that share them and reused by every sequence of
the group. Results equal running each sequence whole up to floating-point rounding (the matrix products have other
shapes); the tests and benchmarks/eval_throughput.py check the equality.

:func:`group_by_prefix` chooses the groups (an exact minimum of a token-count cost over the sorted sequences),
:func:`run_prefix` computes a prefix's keys and values, :func:`prefix_cache` hands them to a forward pass of a
batch, and :func:`decoder_call` calls a model with a cache under the keyword argument its transformers version
uses.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Per layer, the (keys, values) of a prefix for one row: ``[1, kv_heads, prefix_len, head_dim]`` each.
PrefixKV = list[tuple["torch.Tensor", "torch.Tensor"]]

#: A forward pass costs about this many tokens' worth of work besides its tokens (weights read, Python, kernels
#: started): a prefix shorter than this is not worth a pass of its own.
GROUP_OVERHEAD_TOKENS = 32


@dataclass(frozen=True)
class PrefixGroup:
    """Sequences (indices into the caller's list) whose first ``prefix_len`` tokens are the same and are run once
    (``prefix_len`` 0: no shared prefix, each sequence runs whole)."""

    members: tuple[int, ...]
    prefix_len: int


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def group_by_prefix(sequences: Sequence[Sequence[int]], limits: Sequence[int], *,
                    overhead_tokens: int = GROUP_OVERHEAD_TOKENS, window: int = 256) -> list[PrefixGroup]:
    """Partition sequences into groups that share a prefix, minimising the tokens run.

    ``limits[i]`` caps how many of sequence i's first tokens may be shared (the caller needs outputs at later
    positions only). Sequences are sorted; a group is a run of neighbours in that order, so its shared prefix is the
    smallest common prefix of neighbours in the run. A group with a shared prefix costs two passes of overhead
    (``overhead_tokens`` each: its prefix and its own batches), its prefix once and every member's remaining tokens;
    a group without one costs its tokens (its members join the caller's other batches). A dynamic programme over
    the sorted order (runs of up to ``window`` sequences) finds the cheapest partition. Groups come back in sorted
    order, members sorted by length.
    """
    if len(limits) != len(sequences):
        raise ValueError(f"{len(limits)} limits for {len(sequences)} sequences")
    n = len(sequences)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: list(sequences[i][:max(limits[i], 0)]))
    capped = [max(0, min(limits[i], len(sequences[i]))) for i in order]
    lengths = [len(sequences[i]) for i in order]
    neighbour = [min(common_prefix_len(sequences[a], sequences[b]), capped[k], capped[k + 1])
                 for k, (a, b) in enumerate(itertools.pairwise(order))]
    best = [0.0] * (n + 1)
    cut = [0] * (n + 1)
    shared = [0] * (n + 1)
    for end in range(1, n + 1):
        best[end] = float("inf")
        prefix = capped[end - 1]
        total = 0
        for start in range(end - 1, max(-1, end - 1 - window), -1):
            total += lengths[start]
            if start < end - 1:
                prefix = min(prefix, neighbour[start])
            size = end - start
            used = prefix if size > 1 else 0
            cost = best[start] + total + (used + 2 * overhead_tokens - size * used if used else 0)
            if cost < best[end]:
                best[end], cut[end], shared[end] = cost, start, used
    groups: list[PrefixGroup] = []
    end = n
    while end > 0:
        start = cut[end]
        members = sorted(order[start:end], key=lambda i: (len(sequences[i]), i))
        groups.append(PrefixGroup(tuple(members), shared[end]))
        end = start
    return groups[::-1]


def supports_prefix_cache(model: Any) -> bool:
    """Whether every layer of the model attends to the whole past (no sliding window, no linear attention): then
    a prefix's keys and values can be handed to later forward passes as a plain cache."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    return getattr(config, "sliding_window", None) is None or not getattr(config, "use_sliding_window", True)


@lru_cache(maxsize=32)
def _cache_keyword(forward: Any) -> str:
    """transformers 5.24 renamed the cache argument ``past_key_values`` to ``cache``; earlier 5.x use the old name."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def decoder_call(module: Any, cache: Any, **kwargs: Any) -> Any:
    """``module(**kwargs)`` with ``cache`` passed under the name this transformers version expects."""
    forward = getattr(type(module), "forward", None)
    if cache is not None:
        kwargs[_cache_keyword(forward)] = cache
    return module(**kwargs)


def run_prefix(decoder: Any, prefix_ids: Sequence[int], device: Any) -> PrefixKV:
    """Keys and values of ``prefix_ids`` (one row) from every layer of ``decoder`` (the model without its head)."""
    import torch
    from transformers import DynamicCache

    cache: Any = DynamicCache()
    decoder_call(decoder, cache, input_ids=torch.tensor([list(prefix_ids)], device=device), use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers]


def prefix_cache(prefix: PrefixKV, rows: int) -> Any:
    """A fresh cache holding ``prefix`` for each of ``rows`` rows; a forward pass appends to it, not to ``prefix``."""
    from transformers import DynamicCache

    return DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix])


__all__ = [
    "GROUP_OVERHEAD_TOKENS",
    "PrefixGroup",
    "PrefixKV",
    "common_prefix_len",
    "decoder_call",
    "group_by_prefix",
    "prefix_cache",
    "run_prefix",
    "supports_prefix_cache",
]
