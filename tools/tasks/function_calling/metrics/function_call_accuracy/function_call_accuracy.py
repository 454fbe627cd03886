"""Function-call accuracy: does the predicted call name the right tool(s) with the right arguments?

A call is read from either form FLock data uses:
- JSON: ``{"name": ..., "arguments": {...}}`` or a list of them (``arguments`` may itself be a JSON string);
- the rendered form FLock's templates produce: ``Action: <name>\\nAction Input: <json>`` (repeated for parallel
  calls), optionally wrapped in ``<|tool_call|>...<|/tool_call|>`` or a Markdown code fence.
Arguments are compared as parsed JSON (key order and whitespace do not matter; 1 and 1.0 are equal). Parallel
calls are compared as multisets. An unparsable prediction scores 0 on everything.

Reports ``function_call_accuracy`` (names and arguments all right), ``name_accuracy`` (the multiset of tool
names right) and ``parse_rate`` (share of predictions that parse), each a mean over examples.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets
import evaluate

_ACTION = re.compile(r"Action:\s*(?P<name>[^\n]+?)\s*\nAction Input:\s*", re.MULTILINE)
_WRAPPERS = re.compile(r"<\|/?tool_call\|>|^```[a-zA-Z]*\s*|\s*```$", re.MULTILINE)


def _canonical(value: Any) -> Any:
    """A hashable, order-free form of parsed JSON (numbers compared by value)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("__list__", *(_canonical(v) for v in value))
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            return raw
    return raw


def parse_calls(text: str) -> list[tuple[str, Any]] | None:
    """``[(name, canonical arguments), ...]`` from a call in JSON or Action form; None when it does not parse."""
    text = _WRAPPERS.sub("", text).strip()
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested past the decoder's limit
        value = None
    if value is not None:
        calls = value if isinstance(value, list) else [value]
        if calls and all(isinstance(c, dict) and isinstance(c.get("name"), str) and "arguments" in c
                         for c in calls):
            return [(c["name"].strip(), _canonical(_arguments(c["arguments"]))) for c in calls]
        return None
    matches = list(_ACTION.finditer(text))
    if not matches:
        return None
    decoder = json.JSONDecoder()
    out = []
    for match in matches:
        try:
            arguments, _ = decoder.raw_decode(text, match.end())
        except (json.JSONDecodeError, RecursionError):
            return None
        out.append((match.group("name").strip(), _canonical(arguments)))
    return out


def compute(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    exact = names = parsed = 0
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        gold = parse_calls(ref)
        if gold is None:
            raise ValueError(f"reference {i} is not a function call in JSON or Action form: {ref[:120]!r}")
        got = parse_calls(pred)
        if got is None:
            continue
        parsed += 1
        names += Counter(n for n, _ in got) == Counter(n for n, _ in gold)
        exact += Counter(got) == Counter(gold)
    n = len(predictions) or 1
    return {"function_call_accuracy": exact / n, "name_accuracy": names / n, "parse_rate": parsed / n}


class FunctionCallAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__ or "",
            citation="",
            inputs_description="predictions: list of str (a call); references: list of str (the gold call)",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        return compute(predictions, references)
