"""Function-calling text without a model: the deterministic writers of requests and answers, and the checks a
model-written turn must pass (a request states every argument value; an answer reports a value of the tool
result; no meta-text). The strategy falls back to a writer for each turn that fails its check."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from tools.tasks.base import meta_text

#: Errands no tool can do, for requests the assistant must decline.
ERRANDS = (
    "order a pizza", "call a taxi", "pay {my} electricity bill", "water {my} plants", "book a haircut",
    "buy concert tickets", "renew {my} passport", "order groceries", "call {my} dentist", "repair {my} bike",
    "walk {my} dog", "buy a birthday present", "transfer money to {my} friend", "cancel {my} gym membership",
)
#: (opener, closing punctuation): questions end with "?", requests with ".".
_REQUEST_OPENERS = (("Can you", "?"), ("Could you please", "?"), ("Please", "."), ("I'd like you to", "."),
                    ("Hi! Can you", "?"), ("I need you to", "."))
_DETAIL_INTROS = ("Here are the details:", "Details:", "Use these details:")
_ANSWER_OPENERS = ("Here is what I found:", "Done. Here is the result:", "Here are the results:", "All set:",
                   "The tool returned:")
_MAX_ANSWER_WORDS = 150


def humanize(name: str) -> str:
    return name.replace("_", " ").strip()


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


def _action(tool: dict[str, Any]) -> str:
    """The tool's description as something a user asks for ("create an event in my calendar")."""
    text = _lower_first(tool.get("description") or humanize(tool["name"])).rstrip(".")
    return re.sub(r"\bthe user\b", "me", re.sub(r"\bthe user's\b", "my", text))


def _opener(rng: random.Random) -> tuple[str, str]:
    return rng.choice(_REQUEST_OPENERS)


def scalar_leaves(value: Any) -> list[Any]:
    """Strings and numbers inside a JSON value (booleans and nulls say nothing a reader can check)."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in scalar_leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in scalar_leaves(v)]
    if isinstance(value, bool) or value is None:
        return []
    return [value]


def mentions(text: str, value: Any) -> bool:
    """Whether ``text`` states ``value`` (case-insensitive for strings; any usual spelling of a number)."""
    if isinstance(value, str):
        return " ".join(value.lower().split()) in " ".join(text.lower().split())
    if isinstance(value, int | float):
        spellings = {str(value)}
        if isinstance(value, float) and value.is_integer():
            spellings.add(str(int(value)))
        if abs(value) >= 1000:
            spellings.add(f"{value:,}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}")
        return any(re.search(rf"(?<![\d.]){re.escape(s)}(?![\d])", text) for s in spellings)
    return True


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


# ----- deterministic writers ---------------------------------------------------------------------------------
def render_request(tool: dict[str, Any], arguments: dict[str, Any], rng: random.Random) -> str:
    """A user request that names the tool's action and states every argument value."""
    opener, end = _opener(rng)
    details = [f"{humanize(k)}: {format_value(v) if not isinstance(v, bool) else ('yes' if v else 'no')}"
               for k, v in arguments.items()]
    text = f"{opener} {_action(tool)}{end}"
    if details:
        text += f" {rng.choice(_DETAIL_INTROS)} " + "; ".join(details) + "."
    return text


def _describe(value: Any, limit: int = 8) -> list[str]:
    phrases: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if len(phrases) >= limit:
                break
            if isinstance(item, dict):
                phrases.extend(_describe(item, limit - len(phrases)))
            elif isinstance(item, list) and item and all(isinstance(x, dict) for x in item):
                summaries = []
                for entry in item[:3]:
                    parts = [format_value(v) for v in entry.values() if not isinstance(v, dict | list)]
                    summaries.append(" / ".join(parts[:4]))
                phrases.append(f"{len(item)} {humanize(key)}: " + "; ".join(summaries))
            elif item is not None and item != []:
                phrases.append(f"{humanize(key)}: {format_value(item)}")
    elif isinstance(value, list):
        phrases.append(", ".join(format_value(v) for v in value[:limit]))
    else:
        phrases.append(format_value(value))
    return phrases


def render_answer(observation: str, rng: random.Random) -> str:
    """An answer that reports the observation's values in plain words."""
    try:
        value = json.loads(observation)
    except json.JSONDecodeError:
        return f"{rng.choice(_ANSWER_OPENERS)} {observation.strip()}"
    phrases = _describe(value)
    if not phrases:
        return "Done: the request went through."
    return f"{rng.choice(_ANSWER_OPENERS)} " + "; ".join(phrases) + "."


def render_ask_details(tool: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """A request without its details, and the assistant asking for the required ones."""
    parameters = tool.get("parameters") or {}
    required = parameters.get("required") or list(parameters.get("properties") or {})[:2]
    asks = [humanize(p) for p in required] or ["details"]
    listed = asks[0] if len(asks) == 1 else ", ".join(asks[:-1]) + " and " + asks[-1]
    opener, end = _opener(rng)
    user = f"{opener} {_action(tool)}{end}"
    assistant = rng.choice((
        f"Sure, I can help with that. Could you tell me the {listed}?",
        f"Happy to help. What {'is' if len(asks) == 1 else 'are'} the {listed}?",
        f"Of course. To do that I need the {listed}. Could you share {'it' if len(asks) == 1 else 'them'}?",
    ))
    return user, assistant


def render_decline(tool: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """An out-of-scope request and a polite refusal naming what the assistant can do instead."""
    errand = rng.choice(ERRANDS)
    mine, yours = errand.format(my="my"), errand.format(my="your")
    action = _action(tool).replace(" my ", " your ").replace(" me", " you")
    user = rng.choice((f"Can you {mine} for me?", f"Please {mine}.", f"Could you {mine}?"))
    assistant = rng.choice((
        f"I'm sorry, but I can't {yours}: I have no tool for that. I can {action}, though.",
        f"Sorry, that's outside what I can do. I'm not able to {yours}, but I can {action} if that helps.",
    ))
    return user, assistant


# ----- checks on model-written turns -------------------------------------------------------------------------
def generic_problem(text: str, max_words: int = _MAX_ANSWER_WORDS) -> str | None:
    words = len(text.split())
    if words < 3:
        return "too short"
    if words > max_words:
        return f"too long ({words} words)"
    if "{" in text or "}" in text:
        return "contains braces"
    found = meta_text(text)
    return f"meta-text {found!r}" if found else None


def request_problem(text: str, arguments: dict[str, Any]) -> str | None:
    """Why a model-written request is unusable (a missing argument value, meta-text), or None."""
    problem = generic_problem(text)
    if problem:
        return problem
    missing = [v for v in scalar_leaves(arguments) if not mentions(text, v)]
    return f"does not state {format_value(missing[0])!r}" if missing else None


def answer_problem(text: str, observation: str) -> str | None:
    """Why a model-written answer is unusable (reports no value of the observation, meta-text), or None."""
    problem = generic_problem(text)
    if problem:
        return problem
    try:
        leaves = [v for v in scalar_leaves(json.loads(observation)) if not (isinstance(v, str) and len(v) > 60)]
    except json.JSONDecodeError:
        return None
    if leaves and not any(mentions(text, v) for v in leaves):
        return "reports no value from the tool result"
    return None
