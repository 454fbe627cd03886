"""Exact match of normalised text: 1 when prediction and reference are equal after normalisation, else 0.

Normalisation (tools.metrics._text.normalize_text): Unicode NFKC, whitespace collapsed and stripped, case folded
(``ignore_case``, default on); punctuation and English articles removed only on request. A list of references
counts as a match when any of them matches.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate

from tools.metrics._text import normalize_text


def _references(reference: str | Sequence[str]) -> list[str]:
    return [reference] if isinstance(reference, str) else list(reference)


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, ignore_case: bool = True,
            ignore_punctuation: bool = False, ignore_articles: bool = False) -> dict[str, float]:
    """``{"exact_match": mean over examples}`` (0.0 for no examples)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    options = {"ignore_case": ignore_case, "ignore_punctuation": ignore_punctuation,
               "ignore_articles": ignore_articles}
    hits = [
        any(normalize_text(pred, **options) == normalize_text(ref, **options) for ref in _references(refs))
        for pred, refs in zip(predictions, references, strict=True)
    ]
    return {"exact_match": sum(hits) / len(hits) if hits else 0.0}


class ExactMatch(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="",
            inputs_description="predictions: list of str; references: list of str (or list of lists of str)",
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
            ],
        )

    def _compute(self, predictions, references, ignore_case=True, ignore_punctuation=False,
                 ignore_articles=False):
        return compute(predictions, references, ignore_case=ignore_case, ignore_punctuation=ignore_punctuation,
                       ignore_articles=ignore_articles)
