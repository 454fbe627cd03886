"""Function-calling generation, seed-anchored, with deterministic tool calls and a fallback writer.

Small models write poor JSON, so everything structured is built here, not by the model: the tools come from the
seed data, each call's arguments are sampled from the tool's JSON schema (enums, bounds, patterns) and from the
values seen in real calls, and the observation reuses the shape of a real observation of the same tool with the
new argument values substituted. The model writes only the natural-language turns: the user's requests and the
assistant's answers, which are the turns FLock scores. Each model-written turn must pass a check (a request
states every argument value; an answer reports a value from the observation; no meta-text); a turn that fails
is replaced by a deterministic writer, and provenance records which writer produced each turn.

Categories are the call patterns of :mod:`tools.tasks.function_calling`.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import jsonschema

from prompts import load_prompt, text_hash
from tools.data import FlockRecord, Turn, parse_function_call
from tools.quality import meta_text, parse_labeled_turns
from tools.strategies.base import Candidate, Draft, GenerationStrategy, Rejection
from tools.tasks.base import TaskPlugin
from tools.tasks.function_calling import call_pattern

#: Everyday subjects for plain-chat (no_tools) questions, so questions spread beyond the seeds' topics.
TOPICS = (
    "cooking", "personal finance", "astronomy", "biology", "history", "geography", "grammar", "mathematics",
    "physics", "chemistry", "health and exercise", "gardening", "travel planning", "computers", "music",
    "literature", "economics", "weather and climate", "languages", "home repair", "pets", "sports rules",
    "art", "study skills",
)
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
_ID_LIKE = re.compile(r"^([A-Za-z]{1,6}[_-]?)(\d{2,})$")
_MAX_ANSWER_WORDS = 150


class ArgumentError(ValueError):
    """No schema-valid arguments could be sampled for a tool."""


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


def _decimals(value: float) -> int:
    """Digits after the point as written (2 for exponent notation)."""
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 2


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return json.dumps(value, ensure_ascii=False)


# ----- regex sampling (for string parameters with a pattern) -------------------------------------------------
def sample_regex(pattern: str, rng: random.Random) -> str:
    """A random string matching a simple regular expression (literals, classes, repeats, groups, alternation).
    Raises ValueError for constructs it does not handle (look-arounds, back-references, negated classes)."""
    import re._constants as c
    import re._parser as parser

    def emit(tokens: Any) -> str:
        out = []
        for op, arg in tokens:
            if op is c.LITERAL:
                out.append(chr(arg))
            elif op is c.ANY:
                out.append(rng.choice("abcdefghijklmnopqrstuvwxyz"))
            elif op is c.IN:
                out.append(rng.choice(_class_chars(arg)))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                low, high, sub = arg
                high = low + 4 if high is c.MAXREPEAT else high
                out.extend(emit(sub) for _ in range(rng.randint(low, high)))
            elif op is c.SUBPATTERN:
                out.append(emit(arg[-1]))
            elif op is c.BRANCH:
                out.append(emit(rng.choice(arg[1])))
            elif op is c.AT:
                continue
            elif op is c.CATEGORY:
                out.append(rng.choice(_category_chars(arg)))
            else:
                raise ValueError(f"unsupported regex construct {op} in {pattern!r}")
        return "".join(out)

    def _category_chars(category: Any) -> str:
        table = {c.CATEGORY_DIGIT: "0123456789", c.CATEGORY_WORD: "abcdefghijklmnopqrstuvwxyz0123456789",
                 c.CATEGORY_SPACE: " "}
        if category not in table:
            raise ValueError(f"unsupported regex class {category} in {pattern!r}")
        return table[category]

    def _class_chars(items: Any) -> str:
        chars = []
        for op, arg in items:
            if op is c.LITERAL:
                chars.append(chr(arg))
            elif op is c.RANGE:
                chars.extend(chr(x) for x in range(arg[0], min(arg[1], arg[0] + 200) + 1))
            elif op is c.CATEGORY:
                chars.extend(_category_chars(arg))
            else:
                raise ValueError(f"unsupported character class item {op} in {pattern!r}")
        return "".join(chars)

    return emit(parser.parse(pattern))


# ----- the seed catalog --------------------------------------------------------------------------------------
class ToolCatalog:
    """What the seed data says about its tools: schemas, argument values seen per parameter, and observations."""

    def __init__(self, seeds: Sequence[FlockRecord]):
        self.tools: dict[str, dict[str, Any]] = {}
        self.values: dict[tuple[str, str], list[Any]] = defaultdict(list)
        self.values_by_param: dict[str, list[Any]] = defaultdict(list)
        self.observations: dict[str, list[tuple[dict[str, Any], str]]] = defaultdict(list)
        self.calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in seeds:
            for tool in record.tool_list():
                if isinstance(tool.get("parameters", {}), dict):
                    self.tools.setdefault(tool["name"], tool)
            turns = record.conversations
            for index, turn in enumerate(turns):
                if turn.role != "function_call":
                    continue
                calls = parse_function_call(turn.content)
                observation = turns[index + 1].content if index + 1 < len(turns) and \
                    turns[index + 1].role == "observation" else None
                for call in calls:
                    arguments = call.get("arguments")
                    if isinstance(arguments, str):
                        try:
                            arguments = json.loads(arguments)
                        except json.JSONDecodeError:
                            continue
                    if not isinstance(arguments, dict):
                        continue
                    name = call["name"]
                    self.calls[name].append(arguments)
                    for param, value in arguments.items():
                        self.values[(name, param)].append(value)
                        self.values_by_param[param].append(value)
                    if observation is not None and len(calls) == 1:
                        self.observations[name].append((arguments, observation))

    def callable_tools(self) -> list[str]:
        """Tools with a schema and at least one real call (so observations have a shape to follow)."""
        return sorted(n for n in self.tools if self.observations.get(n))

    # ----- arguments -------------------------------------------------------------------------------------------
    def sample_arguments(self, tool: str, rng: random.Random, base: dict[str, Any] | None = None,
                         changes: int = 1) -> dict[str, Any]:
        """Schema-valid arguments: fresh ones, or ``base`` with ``changes`` parameters resampled."""
        schema = self.tools[tool].get("parameters") or {"type": "object", "properties": {}}
        properties = schema.get("properties") or {}
        required = [p for p in schema.get("required", []) if p in properties]
        for _ in range(20):
            if base is None:
                names = [p for p in properties if p in required or rng.random() < 0.35]
                arguments = {p: self._sample_value(tool, p, properties[p], rng) for p in names}
            else:
                arguments = copy.deepcopy(base)
                for param in rng.sample(sorted(properties), min(changes, len(properties))):
                    arguments[param] = self._sample_value(tool, param, properties[param], rng)
                if arguments == base:
                    continue
            try:
                jsonschema.validate(arguments, schema, cls=jsonschema.Draft202012Validator)
            except jsonschema.ValidationError:
                continue
            return arguments
        seen = [a for a in self.calls.get(tool, []) if a != base]
        if seen:
            return copy.deepcopy(rng.choice(seen))
        raise ArgumentError(f"could not sample valid arguments for {tool}")

    def _sample_value(self, tool: str, param: str, schema: dict[str, Any], rng: random.Random) -> Any:
        seen = self.values.get((tool, param)) or self.values_by_param.get(param) or []
        if schema.get("enum"):
            return rng.choice(schema["enum"])
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        if kind == "string":
            return self._sample_string(schema, seen, rng)
        if kind in ("integer", "number"):
            return self._sample_number(kind, schema, seen, rng)
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "array":
            if seen and rng.random() < 0.5:
                return copy.deepcopy(rng.choice(seen))
            items = schema.get("items") or {"type": "string"}
            pool = [x for value in seen if isinstance(value, list) for x in value]
            low = int(schema.get("minItems", 1))
            high = int(schema.get("maxItems", max(low, 3)))
            count = rng.randint(low, max(low, min(high, low + 3)))
            if pool and items.get("type") == "string" and "enum" not in items:
                return rng.sample(sorted(set(map(str, pool))), min(count, len(set(map(str, pool)))))
            return [self._sample_value(tool, param, items, rng) for _ in range(count)]
        if kind == "object":
            if seen:
                return copy.deepcopy(rng.choice(seen))
            properties = schema.get("properties") or {}
            return {p: self._sample_value(tool, p, s, rng) for p, s in properties.items()
                    if p in schema.get("required", []) or rng.random() < 0.5}
        return copy.deepcopy(rng.choice(seen)) if seen else None

    @staticmethod
    def _sample_string(schema: dict[str, Any], seen: list[Any], rng: random.Random) -> str:
        strings = sorted({v for v in seen if isinstance(v, str)})
        pattern, fmt = schema.get("pattern"), schema.get("format")
        if (pattern or fmt in ("date", "date-time", "time")) and (not strings or rng.random() < 0.6):
            # Dates and times vary freely (a regex alone would write 2025-61-99).
            year, month, day = rng.randint(2024, 2027), rng.randint(1, 12), rng.randint(1, 28)
            hour, minute = rng.randint(7, 21), rng.choice((0, 15, 30, 45))
            date, time = f"{year}-{month:02d}-{day:02d}", f"{hour:02d}:{minute:02d}"
            calendar = {"date": date, "time": time, "date-time": f"{date}T{time}:00"}
            if fmt in calendar:
                return calendar[fmt]
            if isinstance(pattern, str):
                for value in (date, time, f"{date} {time}", f"{date}T{time}", f"{date}T{time}:00"):
                    if re.fullmatch(pattern, value):
                        return value
        # Other patterned codes (currencies, airports, tickers) come from real calls when there are any:
        # random letters match the pattern but name nothing real.
        if isinstance(pattern, str) and not strings:
            try:
                return sample_regex(pattern, rng)
            except (ValueError, re.error):
                pass
        if strings:
            return rng.choice(strings)
        return humanize(schema.get("description", "value")).split(",")[0].lower()

    @staticmethod
    def _sample_number(kind: str, schema: dict[str, Any], seen: list[Any], rng: random.Random) -> int | float:
        numbers = [v for v in seen if isinstance(v, int | float) and not isinstance(v, bool)]
        low = schema.get("minimum", schema.get("exclusiveMinimum", min(numbers, default=1)))
        high = schema.get("maximum", schema.get("exclusiveMaximum", max(numbers, default=100) * 2))
        low, high = min(low, high), max(low, high)
        if kind == "integer":
            if numbers and rng.random() < 0.5:
                # Near a real value, so magnitudes stay plausible (a loan of 240000, a party of 4).
                anchor = rng.choice(numbers)
                value = round(anchor * rng.uniform(0.5, 1.5))
            else:
                value = rng.randint(int(low), int(high)) if high - low < 1000 else \
                    int(round(rng.uniform(low, high), -2))
            return max(int(low), min(int(high), value))
        decimals = max((_decimals(v) for v in numbers if isinstance(v, float)), default=0)
        anchor = rng.choice(numbers) if numbers else rng.uniform(low, high)
        value = round(max(low, min(high, anchor * rng.uniform(0.5, 1.5))), min(decimals, 2))
        return int(value) if decimals == 0 else value

    # ----- observations ----------------------------------------------------------------------------------------
    def observation(self, tool: str, arguments: dict[str, Any], rng: random.Random) -> str:
        """A plausible tool result: a real result's shape with the new argument values substituted, other
        numbers varied and identifiers renumbered."""
        examples = self.observations.get(tool)
        if not examples:
            return json.dumps({"status": "success", **arguments}, ensure_ascii=False)
        # Prefer results of calls with the same enum choices (a cafe search should not return pharmacies).
        properties = (self.tools[tool].get("parameters") or {}).get("properties") or {}
        enums = [p for p, s in properties.items() if "enum" in s and p in arguments]
        matching = [e for e in examples if all(e[0].get(p) == arguments[p] for p in enums)]
        seed_args, text = rng.choice(matching or examples)
        replace = {json.dumps(v): arguments[k] for k, v in seed_args.items()
                   if k in arguments and not isinstance(v, dict | list)}
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            for old, new in replace.items():
                text = text.replace(str(json.loads(old)), format_value(new))
            return text

        def vary(node: Any, key: str | None) -> Any:
            if isinstance(node, dict):
                return {k: vary(v, k) for k, v in node.items()}
            if isinstance(node, list):
                return [vary(v, key) for v in node]
            if key is not None and key in arguments and type(arguments[key]) is type(node):
                return arguments[key]
            if json.dumps(node) in replace:
                return replace[json.dumps(node)]
            if isinstance(node, bool) or node is None:
                return node
            if isinstance(node, int):
                return node if node == 0 else max(1, round(node * rng.uniform(0.6, 1.4))) if node > 0 else \
                    round(node * rng.uniform(0.6, 1.4))
            if isinstance(node, float):
                return round(node * rng.uniform(0.6, 1.4), min(_decimals(node), 2))
            if isinstance(node, str):
                match = _ID_LIKE.match(node)
                if match:
                    digits = len(match.group(2))
                    return match.group(1) + str(rng.randint(10 ** (digits - 1), 10 ** digits - 1))
            return node

        return json.dumps(vary(value, None), ensure_ascii=False)


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
def _generic_problem(text: str, max_words: int = _MAX_ANSWER_WORDS) -> str | None:
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
    problem = _generic_problem(text)
    if problem:
        return problem
    missing = [v for v in scalar_leaves(arguments) if not mentions(text, v)]
    return f"does not state {format_value(missing[0])!r}" if missing else None


def answer_problem(text: str, observation: str) -> str | None:
    """Why a model-written answer is unusable (reports no value of the observation, meta-text), or None."""
    problem = _generic_problem(text)
    if problem:
        return problem
    try:
        leaves = [v for v in scalar_leaves(json.loads(observation)) if not (isinstance(v, str) and len(v) > 60)]
    except json.JSONDecodeError:
        return None
    if leaves and not any(mentions(text, v) for v in leaves):
        return "reports no value from the tool result"
    return None


# ----- the strategy ------------------------------------------------------------------------------------------
class FunctionCallingStrategy(GenerationStrategy):
    """New function-calling conversations from the seed data's tools, in the four call patterns."""

    name = "function_calling_seeded"

    def __init__(self, plugin: TaskPlugin, seeds: Sequence[FlockRecord]):
        super().__init__(plugin, seeds)
        self.catalog = ToolCatalog(self.seeds)
        self.by_category: dict[str, list[FlockRecord]] = defaultdict(list)
        for record in self.seeds:
            self.by_category[call_pattern(record)].append(record)
        self.prompts = {name: load_prompt(f"function_calling_{name}") for name in ("turns", "no_call", "no_tools")}

    # ----- drafting ----------------------------------------------------------------------------------------
    def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
        if category == "no_tools":
            return self._draft_no_tools(rng)
        tools = self.catalog.callable_tools()
        if not tools:
            return Rejection("no_seed_tools", "the seed data has no tool with a recorded call", category)
        if category == "no_call":
            return self._draft_no_call(rng, tools)
        if category in ("single_call", "multi_call"):
            try:
                return self._draft_calls(category, rng, tools)
            except ArgumentError as exc:
                return Rejection("fc_args_unsampleable", str(exc), category)
        return Rejection("unknown_category", f"no function-calling pattern {category!r}", category)

    def _anchors(self, category: str, rng: random.Random, tool: str | None, k: int = 2) -> list[FlockRecord]:
        pool = self.by_category.get(category, [])
        if tool is not None:
            with_tool = [r for r in pool if any(t["name"] == tool for t in r.tool_list())]
            pool = with_tool or pool
        return rng.sample(pool, min(k, len(pool)))

    def _system(self, anchors: Sequence[FlockRecord], category: str, rng: random.Random) -> str | None:
        pool = anchors or self.by_category.get(category) or self.seeds
        return rng.choice(pool).system

    def _offered(self, tools: Sequence[str], rng: random.Random, distractor_p: float) -> list[dict[str, Any]]:
        offered = [self.catalog.tools[t] for t in tools]
        others = [t for t in self.catalog.tools if t not in tools]
        if others and rng.random() < distractor_p:
            offered.insert(rng.randint(0, len(offered)), self.catalog.tools[rng.choice(sorted(others))])
        return offered

    def _draft_calls(self, category: str, rng: random.Random, tools: list[str]) -> Draft:
        tool = rng.choice(tools)
        names = [tool]
        if category == "multi_call" and len(tools) > 1 and rng.random() < 0.3:
            names.append(rng.choice([t for t in tools if t != tool]))
        count = 1 if category == "single_call" else max(len(names), rng.choice((2, 2, 3)))
        exchanges: list[dict[str, Any]] = []
        for index in range(count):
            name = names[min(index, len(names) - 1)]
            previous = next((e for e in reversed(exchanges) if e["tool"] == name), None)
            try:
                arguments = self.catalog.sample_arguments(
                    name, rng, base=previous["arguments"] if previous else None, changes=rng.choice((1, 1, 2)))
            except ArgumentError:
                others = [t for t in tools if t not in names]
                if previous is None or not others:
                    raise
                # No second set of values for this tool: follow up with another tool instead.
                name = rng.choice(others)
                names.append(name)
                arguments = self.catalog.sample_arguments(name, rng)
            observation = self.catalog.observation(name, arguments, rng)
            schema = self.catalog.tools[name]
            exchanges.append({
                "tool": name, "arguments": arguments, "observation": observation,
                "fallback_user": render_request(schema, arguments, rng),
                "fallback_assistant": render_answer(observation, rng),
            })
        preamble = render_ask_details(self.catalog.tools[tool], rng) if rng.random() < 0.3 else None
        anchors = self._anchors(category, rng, tool)
        examples = [e for e in (self._example(r) for r in anchors) if e]
        prompt = self.prompts["turns"]
        text = prompt.render(
            tool_name=tool if len(names) == 1 else " and ".join(names),
            tool_description="; ".join(self.catalog.tools[n].get("description", "") for n in names),
            exchanges=[{"details": self._details(e["arguments"]), "result": e["observation"]} for e in exchanges],
            examples=examples,
        )
        state = {"mode": category, "system": self._system(anchors, category, rng),
                 "tools": self._offered(names, rng, 0.25), "exchanges": exchanges, "preamble": preamble}
        return Draft(category=category, messages=[{"role": "user", "content": text}], prompt_id=prompt.id,
                     prompt_hash=text_hash(prompt.file_hash + text), seed_ids=[r.record_id for r in anchors],
                     state=state)

    def _draft_no_call(self, rng: random.Random, tools: list[str]) -> Draft:
        tool = rng.choice(tools)
        schema = self.catalog.tools[tool]
        mode = rng.choice(("ask_details", "decline"))
        fallback = render_ask_details(schema, rng) if mode == "ask_details" else render_decline(schema, rng)
        anchors = self._anchors("no_call", rng, tool)
        prompt = self.prompts["no_call"]
        required = (schema.get("parameters") or {}).get("required") or []
        text = prompt.render(tool_name=tool, tool_description=schema.get("description", ""), mode=mode,
                             required=", ".join(humanize(r) for r in required) or "the details",
                             examples=[self._plain_example(r) for r in anchors])
        state = {"mode": mode, "system": self._system(anchors, "no_call", rng), "tool": tool,
                 "tools": self._offered([tool], rng, 0.2), "fallback": list(fallback)}
        return Draft(category="no_call", messages=[{"role": "user", "content": text}], prompt_id=prompt.id,
                     prompt_hash=text_hash(prompt.file_hash + text), seed_ids=[r.record_id for r in anchors],
                     state=state)

    def _draft_no_tools(self, rng: random.Random) -> Draft:
        anchors = self._anchors("no_tools", rng, None, k=3)
        topic = rng.choice(TOPICS)
        prompt = self.prompts["no_tools"]
        text = prompt.render(topic=topic, examples=[self._plain_example(r) for r in anchors])
        tools = anchors[0].tools if anchors else None
        state = {"mode": "no_tools", "topic": topic, "system": self._system(anchors, "no_tools", rng),
                 "tools_field": tools}
        return Draft(category="no_tools", messages=[{"role": "user", "content": text}], prompt_id=prompt.id,
                     prompt_hash=text_hash(prompt.file_hash + text), seed_ids=[r.record_id for r in anchors],
                     state=state)

    @staticmethod
    def _details(arguments: dict[str, Any]) -> str:
        return "; ".join(f"{k}: {format_value(v)}" for k, v in arguments.items())

    def _example(self, record: FlockRecord) -> str:
        """A seed conversation in the prompt's own format: exchange lines, then the labeled turns."""
        lines: list[str] = []
        labeled: list[str] = []
        turns = record.conversations
        user: str | None = None
        call: dict[str, Any] | None = None
        observation = ""
        for index, turn in enumerate(turns):
            if turn.role == "user":
                user, call = turn.content, None
            elif turn.role == "function_call" and call is None:
                calls = parse_function_call(turn.content)
                call = calls[0]
                observation = turns[index + 1].content if index + 1 < len(turns) else ""
            elif turn.role == "assistant" and user is not None and call is not None:
                n = len(labeled) // 2 + 1
                raw = call.get("arguments")
                arguments = raw if isinstance(raw, dict) else {}
                lines.append(f"Exchange {n}: details: {self._details(arguments)}; tool result: {observation}")
                labeled += [f"USER {n}: {user}", f"ASSISTANT {n}: {turn.content}"]
                user, call = None, None
        return "\n".join(lines + labeled)

    @staticmethod
    def _plain_example(record: FlockRecord) -> str:
        user = record.first_user_text()
        answer = next((t.content for t in record.conversations if t.role == "assistant"), "")
        return f"USER 1: {user}\nASSISTANT 1: {answer}"

    # ----- completing --------------------------------------------------------------------------------------
    def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
        parsed = parse_labeled_turns(model_text or "")
        users = [text for role, text in parsed if role == "user"]
        assistants = [text for role, text in parsed if role == "assistant"]
        mode = draft.state["mode"]
        if mode == "no_tools":
            return self._complete_no_tools(draft, users, assistants)
        if mode in ("ask_details", "decline"):
            return self._complete_no_call(draft, users, assistants)
        return self._complete_calls(draft, users, assistants)

    def _candidate(self, draft: Draft, turns: list[Turn], tools: str | None, writers: dict[str, str],
                   extras: dict[str, Any]) -> Candidate:
        kinds = {w.split(":")[0] for w in writers.values()}
        writer = "llm" if kinds == {"llm"} else "fallback" if "llm" not in kinds else "mixed"
        record = FlockRecord(system=draft.state.get("system"), conversations=turns, tools=tools)
        provenance = {"strategy": self.name, "writer": writer, "prompt_id": draft.prompt_id,
                      "prompt_hash": draft.prompt_hash, "seed_ids": draft.seed_ids, "turn_writers": writers,
                      **extras}
        return Candidate(record=record, category=draft.category, provenance=provenance)

    def _complete_calls(self, draft: Draft, users: list[str], assistants: list[str]) -> Candidate:
        turns: list[Turn] = []
        writers: dict[str, str] = {}
        preamble = draft.state.get("preamble")
        if preamble:
            turns += [Turn(role="user", content=preamble[0]), Turn(role="assistant", content=preamble[1])]
            writers["preamble"] = "fallback:template"
        for index, exchange in enumerate(draft.state["exchanges"]):
            user = users[index] if index < len(users) else ""
            problem = request_problem(user, exchange["arguments"]) if user else "missing"
            writers[f"user_{index + 1}"] = "llm" if problem is None else f"fallback:{problem}"
            answer = assistants[index] if index < len(assistants) else ""
            answer_issue = answer_problem(answer, exchange["observation"]) if answer else "missing"
            writers[f"assistant_{index + 1}"] = "llm" if answer_issue is None else f"fallback:{answer_issue}"
            call = {"name": exchange["tool"], "arguments": exchange["arguments"]}
            turns += [
                Turn(role="user", content=user if problem is None else exchange["fallback_user"]),
                Turn(role="function_call", content=json.dumps(call, ensure_ascii=False)),
                Turn(role="observation", content=exchange["observation"]),
                Turn(role="assistant", content=answer if answer_issue is None else exchange["fallback_assistant"]),
            ]
        tools = json.dumps(draft.state["tools"], ensure_ascii=False)
        extras = {"tools_called": [e["tool"] for e in draft.state["exchanges"]]}
        return self._candidate(draft, turns, tools, writers, extras)

    def _complete_no_call(self, draft: Draft, users: list[str], assistants: list[str]) -> Candidate:
        mode = draft.state["mode"]
        schema = self.catalog.tools[draft.state["tool"]]
        user, answer = (users[0] if users else ""), (assistants[0] if assistants else "")
        user_issue = _generic_problem(user) if user else "missing"
        if user_issue is None:
            values = [v for args in self.catalog.calls.get(draft.state["tool"], []) for v in scalar_leaves(args)]
            if mode == "ask_details" and any(isinstance(v, str) and len(v) > 3 and mentions(user, v) for v in values):
                user_issue = "already gives details"
        answer_issue = _generic_problem(answer) if answer else "missing"
        if answer_issue is None:
            if mode == "ask_details":
                required = (schema.get("parameters") or {}).get("required") or []
                words = {w for p in required for w in humanize(p).lower().split() if len(w) > 2}
                if "?" not in answer or (words and not any(w in answer.lower() for w in words)):
                    answer_issue = "does not ask for the missing details"
            elif not re.search(r"\b(sorry|can't|cannot|can not|unable|not able|don't have)\b", answer, re.I):
                answer_issue = "does not decline"
        fallback_user, fallback_answer = draft.state["fallback"]
        writers = {"user_1": "llm" if user_issue is None else f"fallback:{user_issue}",
                   "assistant_1": "llm" if answer_issue is None else f"fallback:{answer_issue}"}
        turns = [Turn(role="user", content=user if user_issue is None else fallback_user),
                 Turn(role="assistant", content=answer if answer_issue is None else fallback_answer)]
        tools = json.dumps(draft.state["tools"], ensure_ascii=False)
        return self._candidate(draft, turns, tools, writers, {"no_call_mode": mode})

    def _complete_no_tools(self, draft: Draft, users: list[str], assistants: list[str]) -> Candidate | Rejection:
        if not users or not assistants:
            return Rejection("writer_failed", "the model wrote no USER/ASSISTANT pair", "no_tools",
                             {"writer": "llm"})
        user, answer = users[0], assistants[0]
        for label, text in (("question", user), ("answer", answer)):
            problem = _generic_problem(text)
            if problem:
                return Rejection("writer_failed", f"{label}: {problem}", "no_tools", {"writer": "llm"})
        turns = [Turn(role="user", content=user), Turn(role="assistant", content=answer)]
        return self._candidate(draft, turns, draft.state.get("tools_field"), {"user_1": "llm", "assistant_1": "llm"},
                               {"topic": draft.state["topic"]})
