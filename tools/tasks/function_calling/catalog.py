"""What the seed data says about its tools, and schema-valid arguments and plausible results sampled from it.

Small models write poor JSON, so every call is built here: arguments are sampled from the tool's JSON schema
(enums, bounds, patterns) and from the values seen in real calls, and a result reuses the shape of a real result
of the same tool with the new argument values substituted.
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

from tools.data import FlockRecord, parse_function_call
from tools.tasks.function_calling.writers import format_value, humanize

_ID_LIKE = re.compile(r"^([A-Za-z]{1,6}[_-]?)(\d{2,})$")


class ArgumentError(ValueError):
    """No schema-valid arguments could be sampled for a tool."""


def _decimals(value: float) -> int:
    """Digits after the point as written (2 for exponent notation)."""
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 2


# ----- regex sampling (for string parameters with a pattern) -------------------------------------------------
def sample_regex(pattern: str, rng: random.Random) -> str:
    """A random string matching a simple regular expression (literals, classes, repeats, groups, alternation).
    Raises ValueError for constructs it does not handle (look-arounds, back-references, negated classes)."""
    import re._constants as c
    import re._parser as parser

    def characters(op: Any, arg: Any) -> str:
        """The characters a one-character token (or a class item) may stand for."""
        if op is c.LITERAL:
            return chr(arg)
        if op is c.ANY:
            return "abcdefghijklmnopqrstuvwxyz"
        if op is c.RANGE:
            return "".join(chr(x) for x in range(arg[0], min(arg[1], arg[0] + 200) + 1))
        if op is c.IN:
            return "".join(characters(*item) for item in arg)
        if op is c.CATEGORY:
            table = {c.CATEGORY_DIGIT: "0123456789", c.CATEGORY_WORD: "abcdefghijklmnopqrstuvwxyz0123456789",
                     c.CATEGORY_SPACE: " "}
            if arg not in table:
                raise ValueError(f"unsupported regex class {arg} in {pattern!r}")
            return table[arg]
        raise ValueError(f"unsupported regex construct {op} in {pattern!r}")

    def emit(tokens: Any) -> str:
        out: list[str] = []
        for op, arg in tokens:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                low, high, sub = arg
                high = low + 4 if high is c.MAXREPEAT else high
                out.extend(emit(sub) for _ in range(rng.randint(low, high)))
            elif op is c.SUBPATTERN:
                out.append(emit(arg[-1]))
            elif op is c.BRANCH:
                out.append(emit(rng.choice(arg[1])))
            elif op is c.AT:
                continue
            elif op is c.LITERAL:
                out.append(chr(arg))
            else:
                out.append(rng.choice(characters(op, arg)))
        return "".join(out)

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
