"""The agent's typed state and its decisions.

The graph state is a TypedDict of plain JSON values so a checkpoint can be loaded in LangGraph's strict msgpack
mode (nothing but built-in types is ever deserialised). Nodes convert the pieces they use into the pydantic models
below with ``Model.model_validate`` and store them back with ``model_dump(mode="json")``. List fields grow through
their reducer: a node returns only the items it adds.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

# LangGraph Studio builds the state's schema with pydantic, which refuses typing.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from agent.trace import TraceEvent
from prompts import load_prompt
from tools.train import TrainConfig

Action = Literal["generate", "train", "evaluate", "submit", "stop"]
DecisionSource = Literal["llm", "retry", "policy", "override"]

#: The training settings a planner may change for the next training run.
PLANNER_TRAIN_FIELDS = ("learning_rate", "epochs", "lora_r")


def _partial_model(model: type[BaseModel], fields: Sequence[str], name: str, doc: str) -> type[BaseModel]:
    """A model of some of ``model``'s fields, each optional (None keeps the value), with the same types and
    documentation. Bounds are left to the guardrail, which tells a planner what it may choose."""
    optional: dict[str, Any] = {}
    for field in fields:
        info = model.model_fields[field]
        annotation: Any = info.annotation
        optional[field] = (annotation | None, Field(default=None, description=info.description))
    partial: type[BaseModel] = create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc,
                                            __module__=__name__, **optional)
    return partial


if TYPE_CHECKING:
    # Type checkers cannot follow a model built at run time; to them the overrides are a plain pydantic model.
    TrainOverrides = BaseModel
else:
    TrainOverrides = _partial_model(
        TrainConfig, PLANNER_TRAIN_FIELDS, "TrainOverrides",
        "Training settings a planner may change for the next training run: a partial of tools.train.TrainConfig "
        "(None keeps the configured value).")


class Decision(BaseModel):
    """What the agent does next. Every planner (LLM, local, policy) produces exactly this."""

    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="generate | train | evaluate | submit | stop")
    targets: dict[str, int] = Field(
        default_factory=dict,
        description="for generate: synthetic examples to add per category, e.g. {'join': 20, 'nested': 10}",
    )
    train_overrides: TrainOverrides | None = Field(default=None, description="for train: settings to change")
    rationale: str = Field(default="", max_length=600, description="one or two sentences: why this action now")


#: What a rationale reads when a planner filled the answer's shape instead of giving a reason (compared as words,
#: case and punctuation aside).
PLACEHOLDER_RATIONALES = frozenset({"string", "str", "text", "reason", "rationale", "your rationale", "your reason",
                                    "explanation", "why", "because", "todo", "tbd", "n a", "na", "none", "null",
                                    "placeholder"})


def _words(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()


@cache
def _answer_shape_words() -> str:
    """The planner prompt's own words, which a small planner copies into its rationale instead of a reason."""
    return _words(load_prompt("plan").body)


def placeholder_rationale(text: str) -> bool:
    """Whether a rationale says nothing: empty, only punctuation ("...", "…"), a placeholder word, or a piece of
    the planner prompt's own wording ("which numbers above decide it")."""
    core = _words(text)
    return not core or core in PLACEHOLDER_RATIONALES or (len(core.split()) >= 6 and core in _answer_shape_words())


class DecisionRecord(BaseModel):
    """A decision as taken, with where it came from and what the guardrail said. The run's ``decision`` trace
    events carry it (:meth:`trace_data`, with ``rationale_placeholder`` true when the rationale says nothing);
    replay reads them back (:meth:`from_trace`)."""

    iteration: int
    decision: Decision
    source: DecisionSource
    guardrail: str = Field(description="'ok' or the reason the guardrail rejected the planner's proposal")
    raw_output: str | None = None
    input_hash: str | None = None

    def trace_data(self) -> dict[str, Any]:
        """The payload of this decision's trace event."""
        return {"action": self.decision.action, "targets": self.decision.targets,
                "rationale": self.decision.rationale, "source": self.source, "guardrail": self.guardrail,
                "rationale_placeholder": placeholder_rationale(self.decision.rationale)}

    @classmethod
    def from_trace(cls, event: TraceEvent) -> DecisionRecord:
        """The decision a ``decision`` trace event records (the planner's raw output is not traced with it)."""
        data = event.data
        decision = Decision(action=data["action"], targets=dict(data.get("targets") or {}),
                            rationale=data.get("rationale", ""))
        return cls(iteration=event.iteration, decision=decision, source=data["source"],
                   guardrail=data.get("guardrail", "ok"))

    @property
    def replay_key(self) -> tuple[int, str, dict[str, int], str]:
        """What a replay must reproduce: iteration, action, targets and source."""
        return self.iteration, self.decision.action, self.decision.targets, self.source


class RunBudget(BaseModel):
    """Hard limits of one run. Zero means the resource may not be used at all."""

    model_config = ConfigDict(extra="forbid")

    max_iterations: int = Field(default=3, ge=0, description="generate-train-evaluate rounds")
    max_synthetic_examples: int = Field(default=300, ge=0, description="accepted synthetic rows over the run")
    max_generation_tokens: int = Field(default=400_000, ge=0, description="tokens the generator may write")
    max_train_tokens: int = Field(default=2_000_000, ge=0, description="tokens trained on, all runs together")
    max_wall_seconds: float = Field(default=25 * 60, gt=0, description="wall clock for the whole run")
    max_submissions: int = Field(default=1, ge=0, description="submissions this run may send (FLock allows 2/day)")
    no_gain_patience: int = Field(default=2, ge=1, description="stop after this many evaluations without gain")
    min_relative_gain: float = Field(default=0.002, ge=0, description="dev-BPC gain that counts as progress")


class BudgetUsage(BaseModel):
    iterations: int = 0
    synthetic_examples: int = 0
    generation_tokens: int = 0
    train_tokens: int = 0
    wall_seconds: float = 0.0
    submissions: int = 0


class CategoryMetrics(BaseModel):
    """One category's part of an evaluation as the agent keeps it: FLock BPC over the category's examples (from
    the evaluator's tools.evaluate.CategoryScore), how many there were, and the task metric."""

    bpc: float
    examples: int
    task_metric: float | None = None


class EvalSummary(BaseModel):
    """One evaluation on one split: FLock BPC overall and per category, plus the task metric if computed."""

    split: Literal["dev", "test", "validation"]
    adapter_id: str | None = Field(description="None for the base model")
    bpc: float
    per_category: dict[str, CategoryMetrics]
    task_metric_name: str | None = None
    task_metric: float | None = None


class AdapterInfo(BaseModel):
    adapter_id: str
    iteration: int
    dataset_version: str
    path: str
    train_tokens: int
    final_loss: float | None = None
    loss_curve: list[float] = Field(default_factory=list, description="logged training losses (at most 200 points)")
    seconds: float = 0.0


class DatasetInfo(BaseModel):
    """A dataset version: original training data plus the accepted synthetic rows so far."""

    version: str
    original_per_category: dict[str, int]
    synthetic_per_category: dict[str, int]
    acceptance: dict[str, float] = Field(default_factory=dict, description="acceptance rate per gate")
    generation_seconds: float | None = Field(default=None, description="how long generating this version took")


class TaskInfo(BaseModel):
    task_id: int | str
    title: str
    task_type: str
    categories: dict[str, str]
    context_length: int
    max_params: int
    base_model: str
    template: str
    split_sizes: dict[str, int]
    description_excerpt: str = ""


class SubmissionInfo(BaseModel):
    adapter_id: str
    repo_id: str
    revision: str
    task_id: int | str
    validation_bpc: float | None = None
    base_validation_bpc: float | None = None
    accepted_by_flock_validators: bool | None = Field(
        default=None, description="False: scored by the simulator, but FLock's validators would mark it failed (its "
                                  "base model is not in their supported list); None: not known")


class AgentInput(TypedDict, total=False):
    """What a caller passes to start a run (the narrower input schema)."""

    run_id: str


class AgentState(TypedDict, total=False):
    """The whole run, as JSON-compatible values."""

    run_id: str
    status: str  # running | finished | failed
    iteration: int
    task: dict[str, Any]  # TaskInfo
    dataset: dict[str, Any]  # DatasetInfo (current version)
    datasets: Annotated[list[dict[str, Any]], operator.add]  # every DatasetInfo so far
    baseline: dict[str, Any]  # EvalSummary of the base model on dev
    evaluations: Annotated[list[dict[str, Any]], operator.add]  # EvalSummary of each adapter on dev
    adapters: Annotated[list[dict[str, Any]], operator.add]  # AdapterInfo
    best_adapter: str | None
    pending: dict[str, Any] | None  # the DecisionRecord being carried out
    decisions: Annotated[list[dict[str, Any]], operator.add]  # every DecisionRecord
    usage: dict[str, Any]  # BudgetUsage
    no_gain_streak: int
    submissions: Annotated[list[dict[str, Any]], operator.add]  # SubmissionInfo
    test_report: dict[str, Any] | None  # base vs best adapter on test
    cassette_len: int  # recorded calls covered by this checkpoint (resume truncates the cassette to it)
    error: str | None
