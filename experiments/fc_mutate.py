"""Function-calling rows made by editing real conversations: other argument values, other tools on offer.

FLock scores only the assistant turns of a function-calling record (function calls and observations are prompt),
so what a synthetic row teaches is the answers: how the task asks for missing details, declines, answers plain
questions and reports an observation's values. Editing a real conversation keeps those answers in the task's
own words while changing what they are about:

| operator | edit | category |
|---|---|---|
| swap_entity | a string argument the user named (city, restaurant ...) -> another value real calls of the tool use for
  it, everywhere it appears (user, call, observation, answer) | kept |
| shift_date | every ``YYYY-MM-DD`` date (and its ``5 October`` spelling in answers) moved by the same days | kept |
| perturb_observation | a number in an observation that the answer quotes -> a nearby number, in both | kept |
| add_tool | one more tool on offer that the conversation does not use | kept (no_tools -> no_call) |
| drop_tool | an offered tool that no call uses taken away | kept (no_call -> no_tools when none is left) |

Arguments that feed a computation (amounts, rates, principals) are never changed: the observation would no longer
follow from them.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tools.strategies.base import Candidate, Draft, GenerationStrategy, Rejection

from tools.data import FlockRecord, Turn
from tools.tasks.base import TaskPlugin

_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
#: Argument names whose values the observation computes from: never swapped.
_COMPUTED = {"amount", "principal", "annual_rate", "years", "passengers", "party_size", "duration_minutes",
             "radius_km", "from_currency", "to_currency"}

Operator = Callable[[FlockRecord, "Pools", random.Random], FlockRecord | None]


class Pools:
    """Values real calls use per (tool, argument), and every tool definition seen, from the training rows."""

    def __init__(self, records: Sequence[FlockRecord]):
        self.values: dict[tuple[str, str], list[str]] = defaultdict(list)
        self.tools: dict[str, dict[str, Any]] = {}
        for record in records:
            for tool in record.tool_list():
                self.tools.setdefault(tool["name"], tool)
            for call in _calls(record):
                for key, value in (call.get("arguments") or {}).items():
                    if isinstance(value, str) and value not in self.values[(call["name"], key)]:
                        self.values[(call["name"], key)].append(value)


def _calls(record: FlockRecord) -> list[dict[str, Any]]:
    calls = []
    for turn in record.conversations:
        if turn.role == "function_call":
            parsed = json.loads(turn.content)
            calls += parsed if isinstance(parsed, list) else [parsed]
    return calls


def _replace_everywhere(record: FlockRecord, old: str, new: str) -> FlockRecord:
    pattern = re.compile(r"(?<![\w@.-])" + re.escape(old) + r"(?![\w@-])")
    turns = []
    for turn in record.conversations:
        content = turn.content
        if turn.role in ("function_call", "observation"):
            content = json.dumps(_replace_json(json.loads(content), old, new), ensure_ascii=False)
        else:
            content = pattern.sub(new.replace("\\", "\\\\"), content)
        turns.append(Turn(role=turn.role, content=content))
    return FlockRecord(system=record.system, conversations=turns, tools=record.tools)


def _replace_json(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace_json(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_json(v, old, new) for v in value]
    if isinstance(value, str):
        return value.replace(old, new)
    return value


def swap_entity(record: FlockRecord, pools: Pools, rng: random.Random) -> FlockRecord | None:
    users = " ".join(t.content for t in record.conversations if t.role == "user")
    options = []
    for call in _calls(record):
        for key, value in (call.get("arguments") or {}).items():
            if key in _COMPUTED or not isinstance(value, str) or _DATE.search(value) or value not in users:
                continue
            others = [v for v in pools.values[(call["name"], key)] if v != value and v not in users
                      and not _DATE.search(v)]
            if others:
                options.append((value, others))
    if not options:
        return None
    value, others = rng.choice(options)
    return _replace_everywhere(record, value, rng.choice(others))


def _spoken(day: dt.date) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]}"


def shift_date(record: FlockRecord, pools: Pools, rng: random.Random) -> FlockRecord | None:
    text = " ".join(t.content for t in record.conversations)
    dates = sorted(set(_DATE.findall(text)))
    if not dates:
        return None
    days = rng.choice([d for d in range(-40, 41) if d])
    replacements: dict[str, str] = {}
    for y, m, d in dates:
        try:
            old = dt.date(int(y), int(m), int(d))
        except ValueError:
            return None
        new = old + dt.timedelta(days=days)
        replacements[old.isoformat()] = new.isoformat()
        replacements[_spoken(old)] = _spoken(new)
    turns = []
    for turn in record.conversations:
        content = turn.content
        for old_text, new_text in replacements.items():
            content = re.sub(r"(?<!\d)" + re.escape(old_text) + r"(?!\d)", new_text, content)
        turns.append(Turn(role=turn.role, content=content))
    return FlockRecord(system=record.system, conversations=turns, tools=record.tools)


def _number_forms(value: float) -> list[str]:
    forms = {f"{value:g}", f"{value:.2f}", f"{value:,.2f}", f"{value:,}"}
    if float(value).is_integer():
        forms |= {str(int(value)), f"{int(value):,}"}
    return sorted(forms, key=len, reverse=True)


def perturb_observation(record: FlockRecord, pools: Pools, rng: random.Random) -> FlockRecord | None:
    answers = " ".join(t.content for t in record.conversations if t.role == "assistant")
    users = " ".join(t.content for t in record.conversations if t.role == "user")
    candidates: list[tuple[int, str, float]] = []
    for index, turn in enumerate(record.conversations):
        if turn.role != "observation":
            continue
        data = json.loads(turn.content)
        leaves = data.items() if isinstance(data, dict) else []
        for key, value in leaves:
            if isinstance(value, bool) or not isinstance(value, int | float) or key in _COMPUTED:
                continue
            if any(form in users for form in _number_forms(value)):
                continue
            if any(re.search(r"(?<![\d.,])" + re.escape(f) + r"(?![\d,]|\.\d)", answers) for f in _number_forms(value)):
                candidates.append((index, key, value))
    if not candidates:
        return None
    index, key, value = rng.choice(candidates)
    factor = rng.choice([0.8, 0.9, 1.1, 1.25])
    new: float = round(value * factor) if isinstance(value, int) else round(value * factor, 2)
    if new == value:
        new = value + 1
    turns = []
    for i, turn in enumerate(record.conversations):
        content = turn.content
        if i == index:
            data = json.loads(content)
            data[key] = new
            content = json.dumps(data, ensure_ascii=False)
        elif turn.role == "assistant":
            for old_form, new_form in zip(_number_forms(value), _number_forms_like(value, new), strict=True):
                content = re.sub(r"(?<![\d.,])" + re.escape(old_form) + r"(?![\d,]|\.\d)", new_form, content)
        turns.append(Turn(role=turn.role, content=content))
    return FlockRecord(system=record.system, conversations=turns, tools=record.tools)


def _number_forms_like(old: float, new: float) -> list[str]:
    """``new`` in each of ``old``'s spellings, in the same order as :func:`_number_forms` lists ``old``'s."""
    spellings = {f"{old:g}": f"{new:g}", f"{old:.2f}": f"{new:.2f}", f"{old:,.2f}": f"{new:,.2f}",
                 f"{old:,}": f"{new:,}"}
    if float(old).is_integer():
        spellings[str(int(old))] = str(int(new))
        spellings[f"{int(old):,}"] = f"{int(new):,}"
    return [spellings[form] for form in _number_forms(old)]


def add_tool(record: FlockRecord, pools: Pools, rng: random.Random) -> FlockRecord | None:
    offered = record.tool_list()
    names = {t["name"] for t in offered}
    spare = [t for n, t in sorted(pools.tools.items()) if n not in names]
    if len(offered) >= 2 or not spare:
        return None
    tools = [*offered, rng.choice(spare)]
    rng.shuffle(tools)
    return FlockRecord(system=record.system, conversations=record.conversations, tools=json.dumps(tools))


def drop_tool(record: FlockRecord, pools: Pools, rng: random.Random) -> FlockRecord | None:
    used = {c["name"] for c in _calls(record)}
    offered = record.tool_list()
    unused = [t for t in offered if t["name"] not in used]
    if not unused or (not used and len(offered) == len(unused) and _asks_for_tool(record)):
        return None
    drop = rng.choice(unused)
    return FlockRecord(system=record.system, conversations=record.conversations,
                       tools=json.dumps([t for t in offered if t is not drop]))


def _asks_for_tool(record: FlockRecord) -> bool:
    """A no-call answer that talks about what a tool can do (asks for details, says what it can only do) needs
    its tools: dropping them would leave an answer about a tool that is not there."""
    answer = record.assistant_texts()[0].lower() if record.assistant_texts() else ""
    return any(w in answer for w in ("i can", "i'll", "i can only", "what's the", "which", "?"))


OPERATORS: dict[str, Operator] = {"swap_entity": swap_entity, "shift_date": shift_date,
                                  "perturb_observation": perturb_observation, "add_tool": add_tool,
                                  "drop_tool": drop_tool}


class FCMutationStrategy(GenerationStrategy):
    """Edit real function-calling conversations (module docstring). ``chain``: chance of a second edit."""

    name = "fc_mutation"

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord], *, operators: Sequence[str] | None = None,
                 chain: float = 0.5):
        super().__init__(plugin, seeds)
        self.pools = Pools(self.seeds)
        self.operators = {n: OPERATORS[n] for n in (operators or OPERATORS)}
        self.chain = chain

    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        order = list(self.seeds)
        rng.shuffle(order)
        names = list(self.operators)
        for seed in order[:100]:
            rng.shuffle(names)
            for name in names:
                edited = self.operators[name](seed, self.pools, rng)
                if edited is None:
                    continue
                applied = [name]
                if rng.random() < self.chain:
                    second_name = rng.choice([n for n in names if n != name])
                    second = self.operators[second_name](edited, self.pools, rng)
                    if second is not None:
                        edited, applied = second, [name, second_name]
                if self.plugin.categorize(edited).primary != category or edited == seed:
                    continue
                return Draft(category=category, messages=None, seed_ids=[seed.record_id],
                             state={"record": edited.to_json_dict(), "operator": "+".join(applied)})
        return Rejection("no_mutation", f"no conversation could be edited into {category}", category)

    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        record = FlockRecord.model_validate(draft.state["record"])
        return Candidate(record=record, category=draft.category,
                         provenance={"strategy": self.name, "writer": "mutation", "operator": draft.state["operator"],
                                     "seed_ids": list(draft.seed_ids)})
