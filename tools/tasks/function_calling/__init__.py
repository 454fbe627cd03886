"""The function-calling task type: call-pattern categories, seed-anchored generation with schema-valid calls
(:mod:`.catalog` for tools, arguments and results; :mod:`.writers` for the fallback writers), call checks,
probes at every function call and the function-call accuracy metric (``metrics/``)."""

from tools.tasks.function_calling.plugin import (
    CALL_PATTERNS,
    FunctionCallingPlugin,
    call_pattern,
    check_function_calls,
    function_call_probes,
)

__all__ = ["CALL_PATTERNS", "FunctionCallingPlugin", "call_pattern", "check_function_calls", "function_call_probes"]
