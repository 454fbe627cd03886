"""Function-calling tasks: records offer tools (a JSON list) and may contain function_call/observation turns.

Primary category = call pattern (how the assistant uses the tools); tags add the names of the tools called.
Generated calls must match their tool's JSON schema; evaluation probes the model at every function call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import jsonschema

from tools.data import FlockRecord, Turn, parse_function_call
from tools.tasks.base import Categorization, GateCheck, Probe, TaskMetric, TaskPlugin, fail, ok
from tools.tasks.function_calling.strategy import FunctionCallingStrategy
from tools.templates import format_function_call

CALL_PATTERNS: dict[str, str] = {
    "no_tools": "plain dialogue, no tools offered",
    "no_call": "tools offered but the assistant answers (or asks for details) without calling one",
    "single_call": "exactly one function call, then an answer from its observation",
    "multi_call": "two or more function calls in the conversation (sequential or parallel)",
}


def call_pattern(record: FlockRecord) -> str:
    calls = record.function_calls()
    if len(calls) >= 2:
        return "multi_call"
    if len(calls) == 1:
        return "single_call"
    return "no_call" if record.tool_list() else "no_tools"


def check_function_calls(record: FlockRecord) -> GateCheck:
    """Every function call names an offered tool, its arguments validate against that tool's JSON schema, and
    an observation follows it."""
    tools = {t["name"]: t for t in record.tool_list()}
    turns = record.conversations
    for index, turn in enumerate(turns):
        if turn.role != "function_call":
            continue
        calls = json.loads(turn.content)
        for call in calls if isinstance(calls, list) else [calls]:
            name = call.get("name")
            if name not in tools:
                return fail("fc_unknown_tool", f"conversations[{index}]: {name!r} is not among the offered tools")
            arguments = call.get("arguments")
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError as exc:
                    return fail("fc_bad_arguments", f"conversations[{index}]: arguments are not JSON ({exc.msg})")
            schema = tools[name].get("parameters") or {"type": "object"}
            try:
                jsonschema.validate(arguments, schema, cls=jsonschema.Draft202012Validator)
            except jsonschema.ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
                return fail("fc_bad_arguments", f"conversations[{index}]: {name} arguments at {where}: {exc.message}")
            except jsonschema.SchemaError as exc:
                return fail("fc_bad_schema", f"tool {name}: invalid JSON schema: {exc.message}")
        if index + 1 >= len(turns) or turns[index + 1].role != "observation":
            return fail("fc_no_observation", f"conversations[{index}]: function_call not followed by an observation")
    return ok()


def function_call_probes(record: FlockRecord) -> list[Probe]:
    """One (record, gold call JSON) per function_call turn: the conversation up to that call, with the call as
    the answer to predict. Its prompt is exactly the text before the call in FLock's rendering."""
    probes = []
    for index, turn in enumerate(record.conversations):
        if turn.role != "function_call" or index == 0:
            continue
        answer = format_function_call(parse_function_call(turn.content)).strip()
        turns = [*record.conversations[:index], Turn(role="assistant", content=answer)]
        probe = record.model_copy(update={"conversations": turns})
        probes.append(Probe(probe, json.dumps(parse_function_call(turn.content), ensure_ascii=False)))
    return probes


class FunctionCallingPlugin(TaskPlugin):
    name = "function_calling"
    description = "Function calling: pick a tool, fill its JSON arguments, answer from the observation."
    strategies = (FunctionCallingStrategy,)
    metrics = (TaskMetric("function_call_accuracy", on_probes=True), TaskMetric("token_f1"), TaskMetric("bleu"))
    headline_metric = "function_call_accuracy"
    hub_tags = ("function-calling", "tool-use")

    def detect(self, records: Sequence[FlockRecord]) -> float:
        if not records:
            return 0.0
        with_tools = sum(1 for r in records if r.tool_list() or any(t.role == "function_call" for t in r.conversations))
        share = with_tools / len(records)
        # A minority of tool records is still a function-calling task (the FLock demo has 36% without tools).
        return min(1.0, share * 1.6) if share >= 0.2 else share

    def categorize(self, record: FlockRecord) -> Categorization:
        pattern = call_pattern(record)
        tool_tags = tuple(sorted({f"tool:{c['name']}" for c in record.function_calls()}))
        return Categorization(primary=pattern, tags=(pattern, *tool_tags))

    def categories(self) -> dict[str, str]:
        return dict(CALL_PATTERNS)

    def check_validity(self, record: FlockRecord) -> GateCheck:
        return check_function_calls(record)

    def probes(self, record: FlockRecord) -> list[Probe]:
        return function_call_probes(record)
