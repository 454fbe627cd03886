"""FLock scoring with shared prefixes run once equals scoring each example whole at batch size 1 (1e-6 relative),
for plain models, adapters and examples whose first scored token comes early."""

from __future__ import annotations

import math

import pytest
import torch

from tools.data import FlockRecord
from tools.evaluate import example_losses, flock_score
from tools.shared_prefix import group_by_prefix, supports_prefix_cache
from tools.templates import tokenize_records

SCHEMA = ("Schema:\nCREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT, country TEXT, birth_year INTEGER);\n"
          "CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, author_id INTEGER, genre TEXT, year INTEGER);\n\n")
SYSTEM = "You are a text-to-SQL assistant. Answer with one SQLite query and nothing else."


def sql(question: str, answer: str) -> FlockRecord:
    return FlockRecord.model_validate({"system": SYSTEM, "conversations": [
        {"role": "user", "content": SCHEMA + "Question: " + question}, {"role": "assistant", "content": answer}]})


def chat(*turns: str) -> FlockRecord:
    roles = ["user", "assistant"] * len(turns)
    return FlockRecord.model_validate({"system": "S", "conversations": [
        {"role": role, "content": text} for role, text in zip(roles, turns, strict=False)]})


RECORDS = [
    sql("How many books?", "SELECT COUNT(*) FROM books"),
    sql("List authors from Peru.", "SELECT name FROM authors WHERE country = 'Peru'"),
    chat("Hi", "Hello!", "Bye", "Goodbye."),
    sql("Books after 2000 by genre?", "SELECT genre, COUNT(*) FROM books WHERE year > 2000 GROUP BY genre"),
    chat("Hi", "Hello!", "What is 2+2?", "4"),  # shares its first answer (a scored token) with the record above
    chat("Name a colour.", "Blue."),
    sql("Oldest author?", "SELECT name FROM authors ORDER BY birth_year LIMIT 1"),
]


def batch_one_losses(model, tokenizer, records) -> list[float]:
    """The validator's arithmetic: each example whole, batch size 1, its own mean over scored tokens."""
    out = []
    for ex in tokenize_records(records, tokenizer, "qwen1.5", 2048):
        labels = torch.tensor([[t if m else -100 for t, m in zip(ex.input_ids, ex.target_mask, strict=True)]])
        with torch.no_grad():
            out.append(model(torch.tensor([ex.input_ids]), labels=labels).loss.item())
    return out


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_examples_really_share_prefixes(smol_tokenizer):
    examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", 2048)
    limits = [next(t for t in range(1, len(e)) if e.target_mask[t]) - 1 for e in examples]
    groups = group_by_prefix([e.input_ids for e in examples], limits)
    shared = {g.members: g.prefix_len for g in groups if g.prefix_len}
    assert shared and set(next(iter(shared))) == {0, 1, 3, 6}  # the four SQL records, system prompt and schema
    assert next(iter(shared.values())) > 60
    # The two chats that share a scored answer are never grouped beyond their first scored position.
    for g in groups:
        assert all(g.prefix_len <= limits[i] for i in g.members)


def test_shared_prefix_losses_equal_batch_one(tiny, smol_tokenizer):
    assert supports_prefix_cache(tiny)
    expected = batch_one_losses(tiny, smol_tokenizer, RECORDS)
    examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", 2048)
    for share in (True, False):
        for budget in (8192, 64):
            got = example_losses(tiny, examples, smol_tokenizer.pad_token_id, batch_tokens=budget,
                                 share_prefixes=share)
            assert got == pytest.approx(expected, rel=1e-6)
    score = flock_score(tiny, RECORDS, template="qwen1.5", context_length=2048, tokenizer=smol_tokenizer)
    assert score.eval_loss == pytest.approx(math.fsum(expected) / len(expected), rel=1e-6)


def test_shared_prefix_with_an_adapter(tiny, smol_tokenizer):
    from peft import LoraConfig, get_peft_model

    base = batch_one_losses(tiny, smol_tokenizer, RECORDS)
    torch.manual_seed(2)
    wrapped = get_peft_model(tiny, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                              init_lora_weights=False))
    try:
        expected = batch_one_losses(wrapped, smol_tokenizer, RECORDS)
        examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", 2048)
        assert example_losses(wrapped, examples, smol_tokenizer.pad_token_id) == pytest.approx(expected, rel=1e-6)
        assert max(abs(a - b) for a, b in zip(expected, base, strict=True)) > 1e-3  # the adapter changes them
    finally:
        wrapped.unload()


def test_sliding_window_models_score_without_a_shared_cache(smol_tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=16,
                         max_window_layers=0, pad_token_id=smol_tokenizer.pad_token_id)
    torch.manual_seed(4)
    model = Qwen2ForCausalLM(config).eval()
    assert not supports_prefix_cache(model)
    examples = tokenize_records(RECORDS, smol_tokenizer, "qwen1.5", 2048)
    assert example_losses(model, examples, smol_tokenizer.pad_token_id) == pytest.approx(
        batch_one_losses(model, smol_tokenizer, RECORDS), rel=1e-6)
