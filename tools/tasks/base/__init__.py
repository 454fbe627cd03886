"""What every task type builds on: the plugin interface (:mod:`.plugin`) and the generation-strategy interface
(:mod:`.strategy`). The registry of task types (:mod:`tools.tasks`) and the task packages import from here; this
package imports no task type."""

from tools.tasks.base.plugin import Categorization, GateCheck, Probe, TaskMetric, TaskPlugin, fail, ok
from tools.tasks.base.strategy import (
    Candidate,
    Draft,
    GenerationStrategy,
    Rejection,
    meta_text,
    parse_labeled_turns,
)

__all__ = ["Candidate", "Categorization", "Draft", "GateCheck", "GenerationStrategy", "Probe", "Rejection",
           "TaskMetric", "TaskPlugin", "fail", "meta_text", "ok", "parse_labeled_turns"]
