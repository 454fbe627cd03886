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

Action = Literal["generate", "train", "evaluate", "refit", "submit", "stop"]
DecisionSource = Literal["llm", "retry", "policy", "override"]


#: Who decides each step: an LLM behind a chat API, a local model, or the deterministic policy.
PlannerKind = Literal["llm", "local", "policy"]


class LearningSettings(BaseModel):
    """How the agent spends its budget on learning: how it measures what each round's synthetic rows are worth,
    how much they weigh in training, and whether the submission is refit on every original row."""

    model_config = ConfigDict(extra="forbid")

    data_value: Literal["estimate", "with_without"] = Field(
        default="estimate",
        description="how the marginal value of a round's synthetic rows on dev is found, per category and strategy: "
                    "estimate: compare each targeted category's change with the untargeted ones' (no extra cost); "
                    "with_without: also train the same recipe without the round's rows and compare (one more "
                    "training and dev scoring per round; the estimate is traced beside it)")
    synthetic_weight: float = Field(default=1.0, gt=0, le=1,
                                    description="loss weight of a synthetic row relative to an original one")
    min_synthetic_weight: float = Field(default=0.25, gt=0, le=1,
                                        description="the lowest synthetic weight the policy moves to when synthetic "
                                                    "rows do not help on dev")
    original_epochs: int = Field(default=1, ge=1, le=8,
                                 description="passes over the original rows per pass over the synthetic ones")
    max_eval_share: float = Field(default=0.10, gt=0, le=1,
                                  description="share of the wall-clock budget evaluation may take: dev scoring in "
                                              "every round, then the test comparison, whose task-metric decoding "
                                              "gets what is left of the share (a fixed sample when the split "
                                              "does not fit)")
    refit: bool = Field(default=False,
                        description="before submitting, retrain the chosen recipe on every original row (train, dev "
                                    "and test: FLock validates on its own held-out file) plus its synthetic rows, "
                                    "with the step count scaled, and submit that adapter")


#: The training settings a planner may change for the next training run, and the data mix it may change.
PLANNER_TRAIN_FIELDS = ("learning_rate", "epochs", "lora_r")
PLANNER_MIX_FIELDS = ("synthetic_weight", "original_epochs")


def _partial_model(sources: Sequence[tuple[type[BaseModel], Sequence[str]]], name: str, doc: str) -> type[BaseModel]:
    """A model of some fields of each source model, each optional (None keeps the value), with the same types and
    documentation. Bounds are left to the guardrail, which tells a planner what it may choose."""
    optional: dict[str, Any] = {}
    for model, fields in sources:
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
        [(TrainConfig, PLANNER_TRAIN_FIELDS), (LearningSettings, PLANNER_MIX_FIELDS)], "TrainOverrides",
        "Settings a planner may change for the next training run: a partial of tools.train.TrainConfig and of the "
        "data mix (synthetic rows' loss weight, passes over the originals); None keeps the configured value.")


def override_values(overrides: BaseModel | None) -> dict[str, Any]:
    """The settings a TrainOverrides changes (the ones not None)."""
    return overrides.model_dump(exclude_none=True) if overrides is not None else {}


class Decision(BaseModel):
    """What the agent does next. Every planner (LLM, local, policy) produces exactly this."""

    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="generate | train | evaluate | submit | stop")
    targets: dict[str, int] = Field(
        default_factory=dict,
        description="for generate: synthetic examples to add per category, e.g. {'join': 20, 'nested': 10}",
    )
    strategies: dict[str, str] = Field(
        default_factory=dict,
        description="for generate: the generation strategy per target category (a missing one: the task's default)",
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
        decision = self.decision
        return {"action": decision.action, "targets": decision.targets, "strategies": decision.strategies,
                "train_overrides": override_values(decision.train_overrides),
                "rationale": decision.rationale, "source": self.source, "guardrail": self.guardrail,
                "rationale_placeholder": placeholder_rationale(decision.rationale)}

    @classmethod
    def from_trace(cls, event: TraceEvent) -> DecisionRecord:
        """The decision a ``decision`` trace event records (the planner's raw output is not traced with it)."""
        data = event.data
        decision = Decision(action=data["action"], targets=dict(data.get("targets") or {}),
                            strategies=dict(data.get("strategies") or {}),
                            train_overrides=TrainOverrides(**data["train_overrides"])
                            if data.get("train_overrides") else None,
                            rationale=data.get("rationale", ""))
        return cls(iteration=event.iteration, decision=decision, source=data["source"],
                   guardrail=data.get("guardrail", "ok"))

    @property
    def replay_key(self) -> tuple[int, str, dict[str, int], str]:
        """What a replay must reproduce: iteration, action, targets and source (and :attr:`replay_detail`)."""
        return self.iteration, self.decision.action, self.decision.targets, self.source

    @property
    def replay_detail(self) -> tuple[dict[str, str], dict[str, Any]]:
        """The rest of what a replay must reproduce: the strategies and the training overrides."""
        return self.decision.strategies, override_values(self.decision.train_overrides)


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
    task_metric_examples: int | None = Field(default=None, description="examples the task metric was decoded on "
                                                                       "(a fixed sample when the split did not fit)")
    seconds: float | None = Field(default=None, description="how long scoring took (BPC; decoding is separate)")
    task_metric_seconds: float | None = Field(default=None, description="how long decoding for the task metric took")


class AdapterInfo(BaseModel):
    adapter_id: str
    iteration: int
    dataset_version: str
    path: str
    train_tokens: int
    final_loss: float | None = None
    loss_curve: list[float] = Field(default_factory=list, description="logged training losses (at most 200 points)")
    seconds: float = 0.0
    overrides: dict[str, Any] = Field(default_factory=dict, description="the planner's overrides it was trained with")
    synthetic_weight: float = Field(default=1.0, description="loss weight of its synthetic rows")
    original_epochs: int = Field(default=1, description="passes over the original rows per pass over the synthetic")
    refit_of: str | None = Field(default=None, description="for a final refit: the adapter whose recipe it repeats "
                                                           "on every original row")
    examples: int | None = Field(default=None, description="rows trained on (originals repeated per original_epochs)")

    def recipe_overrides(self) -> TrainOverrides | None:
        """The overrides that repeat this adapter's recipe (its planner overrides and data mix)."""
        values = {**self.overrides, "synthetic_weight": self.synthetic_weight, "original_epochs": self.original_epochs}
        return TrainOverrides(**values)


class DatasetInfo(BaseModel):
    """A dataset version: original training data plus the accepted synthetic rows so far."""

    version: str
    original_per_category: dict[str, int]
    synthetic_per_category: dict[str, int]
    synthetic_per_strategy: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="synthetic rows per category and generation strategy")
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
    strategies: list[str] = Field(default_factory=list, description="generation strategies, the default first")
    validation_examples: int = Field(default=0, description="rows of the held-out file this machine scores after a "
                                                            "submission (a local task's simulator); 0 for live FLock")


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
    note: str | None = Field(default=None, description="what was left out to stay within the time given, and why")


class ArmValue(BaseModel):
    """What one round's synthetic rows of one category and strategy (an arm) did to that category on dev."""

    category: str
    strategy: str
    rows: int
    gain: float = Field(description="relative dev-BPC improvement of the category credited to the rows (> 0 helped)")
    seconds: float = Field(default=0.0, description="generation seconds spent on the rows (their share)")

    @property
    def gain_per_100_rows(self) -> float:
        return 100 * self.gain / max(1, self.rows)


class DataValue(BaseModel):
    """The marginal value of the synthetic rows an adapter added over the adapter (or base model) before it."""

    iteration: int
    adapter_id: str
    method: Literal["estimate", "with_without"]
    reference: str = Field(description="what the rows are compared against: 'base', an adapter id, or the "
                                       "adapter trained without them (with_without)")
    gain: float = Field(description="relative overall dev-BPC improvement credited to the rows (> 0 helped)")
    arms: list[ArmValue]
    estimate: list[ArmValue] | None = Field(default=None, description="with_without: the cheap estimate as well, "
                                                                      "to see whether it agrees")
    synthetic_weight: float = 1.0
    seconds: float = Field(default=0.0, description="what measuring took (with_without: training and scoring)")


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
    data_values: Annotated[list[dict[str, Any]], operator.add]  # DataValue of each evaluated round with new rows
    memory: list[dict[str, Any]]  # memory.lessons.ArmStats of this task type, as read at the start
    refit: dict[str, Any] | None  # AdapterInfo of the final refit (submitted instead of its recipe's adapter)
    cassette_len: int  # recorded calls covered by this checkpoint (resume truncates the cassette to it)
    error: str | None
