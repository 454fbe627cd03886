"""The batched decoder (tools.decoding) gives, row for row, the tokens plain one-prompt ``model.generate`` gives:
shared prefixes, prefill pieces, rows leaving the batch, stop tokens and stop strings, greedy and sampled."""

from __future__ import annotations

import pytest
import torch

from tools.backends import RowSampler
from tools.decoding import decode
from tools.shared_prefix import group_by_prefix


@pytest.fixture(scope="module")
def peaked(smol_tokenizer):
    """A tiny random Llama whose next-token scores are far apart (large initial weights), so that rounding in
    other matrix shapes cannot swap the top two tokens and exact equality is a fair test."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         initializer_range=0.3, tie_word_embeddings=True, pad_token_id=smol_tokenizer.pad_token_id)
    torch.manual_seed(3)
    return LlamaForCausalLM(config).eval()


def prompts_with_shared_prefixes() -> list[list[int]]:
    """Three families of prompts (40-, 25- and 0-token shared prefixes) of different lengths."""
    g = torch.Generator().manual_seed(5)

    def ids(n: int) -> list[int]:
        return torch.randint(100, 2000, (n,), generator=g).tolist()

    schema_a, schema_b = ids(40), ids(25)
    return [schema_a + ids(3), ids(7), schema_b + ids(9), schema_a + ids(11), schema_b + ids(2), ids(30),
            schema_a + ids(6), schema_b + ids(5), ids(1)]


def reference(model, prompt: list[int], max_new_tokens: int, stop_ids=(), processor=None) -> list[int]:
    """Plain transformers, one prompt, no padding: the new tokens before the first stop token."""
    from transformers import LogitsProcessorList

    kwargs = {"logits_processor": LogitsProcessorList([processor])} if processor is not None else {}
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=list(stop_ids) or None, pad_token_id=0, **kwargs)[0, len(prompt):].tolist()
    cut = next((i for i, t in enumerate(out) if t in stop_ids), len(out))
    return out[:cut]


def test_groups_share_the_real_common_prefix():
    prompts = prompts_with_shared_prefixes()
    groups = group_by_prefix(prompts, [len(p) - 1 for p in prompts], overhead_tokens=4)
    assert sorted(i for g in groups for i in g.members) == list(range(len(prompts)))
    shared = {frozenset(g.members): g.prefix_len for g in groups if g.prefix_len}
    assert shared == {frozenset({0, 3, 6}): 40, frozenset({2, 4, 7}): 25}
    # A prefix shorter than a pass's overhead is not worth one.
    assert all(not g.prefix_len for g in group_by_prefix(prompts, [len(p) - 1 for p in prompts],
                                                         overhead_tokens=500))


def group_cost(seqs, overhead, members, prefix_len):
    """Tokens run for a group: its prefix once, every member's rest, two passes of overhead with a prefix."""
    total = sum(len(seqs[i]) for i in members)
    return total + (prefix_len + 2 * overhead - len(members) * prefix_len if prefix_len else 0)


def test_group_partition_is_the_cheapest_one():
    """The dynamic programme against every partition of the sorted order into runs (small random cases)."""
    import functools
    import itertools
    import random

    from tools.shared_prefix import common_prefix_len

    rng = random.Random(0)
    for _ in range(30):
        seqs = [[rng.choice((1, 2)) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(1, 7))]
        limits = [rng.randint(0, len(s)) for s in seqs]
        overhead = rng.choice((0, 1, 3))
        cost = functools.partial(group_cost, seqs, overhead)

        groups = group_by_prefix(seqs, limits, overhead_tokens=overhead)
        for g in groups:
            if g.prefix_len:
                first = seqs[g.members[0]]
                assert all(common_prefix_len(first, seqs[i]) >= g.prefix_len and limits[i] >= g.prefix_len
                           for i in g.members)
        order = sorted(range(len(seqs)), key=lambda i: seqs[i][:limits[i]])
        best = float("inf")
        for cuts in itertools.product((False, True), repeat=len(seqs) - 1):
            runs, current = [], [order[0]]
            for i, cut in zip(order[1:], cuts, strict=True):
                if cut:
                    runs.append(current)
                    current = []
                current.append(i)
            runs.append(current)
            total = 0
            for run in runs:
                shared = min([limits[i] for i in run] + [common_prefix_len(seqs[run[0]], seqs[i]) for i in run])
                total += min(cost(run, shared if len(run) > 1 else 0), cost(run, 0))
            best = min(best, total)
        assert sum(cost(g.members, g.prefix_len) for g in groups) == best


@pytest.mark.parametrize(("batch_size", "prefill_tokens", "share", "min_shared"),
                         [(32, 4096, True, 1), (2, 16, True, 1), (4, 64, False, 1),
                          (32, 4096, True, 8)])  # the default: prefixes of 3 rows join the unshared batches
def test_greedy_equals_one_prompt_generate(peaked, batch_size, prefill_tokens, share, min_shared):
    prompts = prompts_with_shared_prefixes()
    expected = [reference(peaked, p, 7) for p in prompts]
    got = decode(peaked, prompts, max_new_tokens=7, stop_ids=(), pad_token_id=0, batch_size=batch_size,
                 prefill_tokens=prefill_tokens, share_prefixes=share, min_shared_rows=min_shared)
    assert [d.tokens for d in got] == expected
    assert all(d.finish == "length" for d in got)


def test_rows_stop_at_their_own_stop_token(peaked):
    """Stop tokens chosen so rows end at different steps (and the batch sheds rows as they end)."""
    prompts = prompts_with_shared_prefixes()
    free = [reference(peaked, p, 12) for p in prompts]
    stops = {free[0][2], free[3][5], free[5][0]}
    expected = [reference(peaked, p, 12, stop_ids=stops) for p in prompts]
    assert len({len(e) for e in expected}) > 2  # rows really end at different steps
    got = decode(peaked, prompts, max_new_tokens=12, stop_ids=stops, pad_token_id=0, batch_size=4, min_shared_rows=1)
    assert [d.tokens for d in got] == expected
    assert [d.finish for d in got] == ["stop_token" if len(e) < 12 else "length" for e in expected]


def test_rows_stop_at_a_stop_string(peaked, smol_tokenizer):
    prompts = prompts_with_shared_prefixes()
    free = decode(peaked, prompts, max_new_tokens=10, stop_ids=(), pad_token_id=0)
    text = smol_tokenizer.decode(free[1].tokens, skip_special_tokens=True)
    stop = text[len(text) // 2:len(text) // 2 + 3]
    got = decode(peaked, prompts, max_new_tokens=10, stop_ids=(), pad_token_id=0, stop_strings=[stop],
                 tokenizer=smol_tokenizer)
    for before, after in zip(free, got, strict=True):
        full = smol_tokenizer.decode(before.tokens, skip_special_tokens=True)
        cut = smol_tokenizer.decode(after.tokens, skip_special_tokens=True)
        assert after.tokens == before.tokens[:len(after.tokens)]
        if stop in full:
            assert after.finish == "stop_string" and stop in cut
            assert stop not in smol_tokenizer.decode(after.tokens[:-1], skip_special_tokens=True)
            assert cut.split(stop, 1)[0] == full.split(stop, 1)[0]
        else:
            assert after.finish == "length" and after.tokens == before.tokens
    assert got[1].finish == "stop_string"
    with pytest.raises(ValueError, match="stop_strings need the tokenizer"):
        decode(peaked, prompts, max_new_tokens=2, stop_ids=(), pad_token_id=0, stop_strings=["x"])


def test_sampling_keeps_each_prompts_own_stream(peaked):
    """With a per-row sampler, each row's tokens are those of sampling it alone through transformers."""
    prompts = prompts_with_shared_prefixes()
    seeds = [11 * i + 1 for i in range(len(prompts))]
    sampler = RowSampler(seeds, temperature=0.9, top_p=0.9)
    got = decode(peaked, prompts, max_new_tokens=6, stop_ids=(), pad_token_id=0, batch_size=3, pick=sampler.pick,
                 min_shared_rows=1)
    for i, prompt in enumerate(prompts):
        alone = RowSampler([seeds[i]], temperature=0.9, top_p=0.9)
        assert got[i].tokens == reference(peaked, prompt, 6, processor=alone)


def test_sliding_window_models_fall_back_to_generate(smol_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=8,
                         max_window_layers=0, initializer_range=0.3, pad_token_id=0)
    torch.manual_seed(4)
    model = Qwen2ForCausalLM(config).eval()
    prompts = prompts_with_shared_prefixes()[:4]
    got = decode(model, prompts, max_new_tokens=5, stop_ids=(), pad_token_id=0, batch_size=1)
    assert [d.tokens for d in got] == [reference(model, p, 5) for p in prompts]
