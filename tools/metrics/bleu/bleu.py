"""Corpus BLEU through sacrebleu (default 13a tokenisation, exponential smoothing), reported on a 0-1 scale.

``bleu`` is sacrebleu's corpus score divided by 100 so every task metric here shares the 0-1 scale; the n-gram
precisions and brevity penalty are reported alongside. References may be one string per prediction or a list
of strings (every prediction needs the same number of references, as sacrebleu requires).
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import sacrebleu


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]], *, tokenize: str = "13a",
            lowercase: bool = False) -> dict[str, float | list[float]]:
    """``{"bleu": 0-1, "precisions": [p1..p4] (0-1), "brevity_penalty", "sys_len", "ref_len"}``."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return {"bleu": 0.0, "precisions": [0.0] * 4, "brevity_penalty": 0.0, "sys_len": 0, "ref_len": 0}
    ref_lists = [[r] if isinstance(r, str) else list(r) for r in references]
    width = len(ref_lists[0])
    if any(len(r) != width for r in ref_lists):
        raise ValueError("every prediction needs the same number of references for corpus BLEU")
    streams = [[refs[i] for refs in ref_lists] for i in range(width)]
    result = sacrebleu.corpus_bleu(list(predictions), streams, tokenize=tokenize, lowercase=lowercase)
    return {"bleu": result.score / 100, "precisions": [p / 100 for p in result.precisions],
            "brevity_penalty": result.bp, "sys_len": result.sys_len, "ref_len": result.ref_len}


class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="Post, A Call for Clarity in Reporting BLEU Scores (2018).",
            inputs_description="predictions: list of str; references: list of str (or list of lists of str)",
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
            ],
        )

    def _compute(self, predictions, references, tokenize="13a", lowercase=False):
        return compute(predictions, references, tokenize=tokenize, lowercase=lowercase)
