"""Task metrics: hand-checked values, and the evaluate-module path agrees with the in-process path."""

from __future__ import annotations

import json

import pytest

from tools.metrics import available_metrics, compute_metric, load_metric
from tools.metrics.token_f1.token_f1 import prf
from tools.tasks.function_calling.metrics.function_call_accuracy.function_call_accuracy import parse_calls


def test_available_and_unknown():
    assert {"exact_match", "token_f1", "bleu", "function_call_accuracy"} <= set(available_metrics())
    with pytest.raises(ValueError, match=r"unknown metric 'rouge'; available: .*exact_match"):
        compute_metric("rouge", [], [])


def test_exact_match_normalisation():
    preds = ["  Paris ", "The Paris.", "paris", "London"]
    refs = ["paris", "paris", ["Lyon", "PARIS"], "paris"]
    assert compute_metric("exact_match", preds, refs) == {"exact_match": 0.5}
    loose = compute_metric("exact_match", preds, refs, ignore_punctuation=True, ignore_articles=True)
    assert loose == {"exact_match": 0.75}
    assert compute_metric("exact_match", ["A"], ["a"], ignore_case=False) == {"exact_match": 0.0}
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        compute_metric("exact_match", ["a", "b"], ["a"])


def test_token_f1_by_hand():
    # pred tokens: cat sat mat (articles dropped); ref: cat sat on mat -> P=3/3, R=3/4, F1=6/7
    p, r, f = prf("The cat sat, the mat!", "a cat sat on the mat")
    assert (p, r) == (1.0, 0.75) and f == pytest.approx(6 / 7)
    assert prf("", "") == (1.0, 1.0, 1.0) and prf("x", "")[2] == 0.0
    assert prf("dog dog", "dog")[0] == 0.5  # multiset overlap
    result = compute_metric("token_f1", ["The cat sat, the mat!", "zzz"], ["a cat sat on the mat", ["q", "zzz"]])
    assert result["token_f1"] == pytest.approx((6 / 7 + 1.0) / 2)


def test_bleu_matches_sacrebleu_scale():
    import sacrebleu

    preds = ["the cat is on the mat", "a quick brown fox"]
    refs = ["the cat is on the mat", "the quick brown fox jumps"]
    result = compute_metric("bleu", preds, refs)
    expected = sacrebleu.corpus_bleu(preds, [refs]).score / 100
    assert result["bleu"] == pytest.approx(expected)
    assert compute_metric("bleu", ["same text here ok"], ["same text here ok"])["bleu"] == pytest.approx(1.0)
    assert compute_metric("bleu", [], [])["bleu"] == 0.0


def test_function_call_parsing_forms():
    as_json = json.dumps({"name": "get_weather", "arguments": {"city": "Paris", "days": 2}})
    action = 'Action: get_weather\nAction Input: {"days": 2.0, "city": "Paris"}\n'
    wrapped = f"<|tool_call|>{action}<|/tool_call|>"
    string_args = json.dumps({"name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 2})})
    assert parse_calls(as_json) == parse_calls(action) == parse_calls(wrapped) == parse_calls(string_args)
    assert parse_calls("I think it is sunny") is None
    assert parse_calls('Action: f\nAction Input: {"a": ') is None
    parallel = 'Action: a\nAction Input: {}\n\nAction: b\nAction Input: {"x": [1, 2]}\n'
    assert parse_calls(parallel) == [("a", ()), ("b", (("x", ("__list__", 1.0, 2.0)),))]


def test_function_call_accuracy_scores():
    gold = json.dumps({"name": "search", "arguments": {"q": "rice", "n": 3}})
    preds = [
        'Action: search\nAction Input: {"n": 3, "q": "rice"}',  # right
        'Action: search\nAction Input: {"n": 4, "q": "rice"}',  # right name, wrong arguments
        'Action: lookup\nAction Input: {"n": 3, "q": "rice"}',  # wrong name
        "no call at all",  # unparsable
    ]
    result = compute_metric("function_call_accuracy", preds, [gold] * 4)
    assert result == {"function_call_accuracy": 0.25, "name_accuracy": 0.5, "parse_rate": 0.75}
    with pytest.raises(ValueError, match="reference 0 is not a function call"):
        compute_metric("function_call_accuracy", ["x"], ["not a call"])


@pytest.mark.parametrize(
    ("name", "predictions", "references"),
    [
        ("exact_match", ["Paris", "x"], ["paris", "y"]),
        ("token_f1", ["the cat sat", "dog"], ["cat sat down", "dog"]),
        ("bleu", ["the cat is on the mat"], ["the cat sat on the mat"]),
        ("function_call_accuracy", ['Action: f\nAction Input: {"a": 1}'], ['{"name": "f", "arguments": {"a": 1}}']),
    ],
)
def test_evaluate_load_offline_matches_in_process(name, predictions, references):
    module = load_metric(name)
    assert module.compute(predictions=predictions, references=references) == compute_metric(
        name, predictions, references)
