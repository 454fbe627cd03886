"""Function-calling tasks: records offer tools (a JSON list) and may contain function_call/observation turns.

Primary category = call pattern (how the assistant uses the tools); tags add the names of the tools called.
"""

from __future__ import annotations

from collections.abc import Sequence

from tools.data import FlockRecord
from tools.tasks.base import Categorization, TaskPlugin

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


class FunctionCallingPlugin(TaskPlugin):
    name = "function_calling"
    description = "Function calling: pick a tool, fill its JSON arguments, answer from the observation."

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
