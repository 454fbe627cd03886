"""Token F1 (SQuAD-style): harmonic mean of token precision and recall between prediction and reference.

Both texts are normalised (case folded, punctuation and English articles removed, whitespace collapsed) and split
on whitespace; overlap counts tokens as a multiset. Two empty texts score 1, one empty text scores 0. With a list
of references an example takes its best-scoring reference. Reports means over examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import datasets
import evaluate

from tools.metrics._text import normalize_text


def _tokens(text: str) -> list[str]:
    return normalize_text(text, ignore_case=True, ignore_punctuation=True, ignore_articles=True).split()


def prf(prediction: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, f1) of one pair."""
    pred, ref = _tokens(prediction), _tokens(reference)
    if not pred or not ref:
        same = float(pred == ref)
        return same, same, same
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred), common / len(ref)
    return precision, recall, 2 * precision * recall / (precision + recall)


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    """``{"token_f1", "precision", "recall"}``, each a mean over examples (0.0 for no examples)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scores = []
    for pred, refs in zip(predictions, references, strict=True):
        options = [refs] if isinstance(refs, str) else list(refs)
        scores.append(max((prf(pred, ref) for ref in options), key=lambda s: s[2], default=(0.0, 0.0, 0.0)))
    n = len(scores) or 1
    return {"token_f1": sum(s[2] for s in scores) / n, "precision": sum(s[0] for s in scores) / n,
            "recall": sum(s[1] for s in scores) / n}


class TokenF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="Rajpurkar et al., SQuAD (2016): token-level F1.",
            inputs_description="predictions: list of str; references: list of str (or list of lists of str)",
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
            ],
        )

    def _compute(self, predictions, references):
        return compute(predictions, references)
