"""A typed view of the run's state: everything a planner, the guardrail or the policy may look at."""

from __future__ import annotations

from dataclasses import dataclass

from agent.state import (
    AdapterInfo,
    AgentState,
    BudgetUsage,
    DatasetInfo,
    DataValue,
    EvalSummary,
    LearningSettings,
    RunBudget,
    SubmissionInfo,
    TaskInfo,
)
from memory.lessons import ArmStats


@dataclass(frozen=True)
class PlanView:
    """Everything a planner or guardrail may look at, typed, read from the state."""

    task: TaskInfo
    budget: RunBudget
    usage: BudgetUsage
    iteration: int
    dataset: DatasetInfo
    datasets: list[DatasetInfo]
    baseline: EvalSummary
    evaluations: list[EvalSummary]
    adapters: list[AdapterInfo]
    best_adapter: str | None
    submissions: list[SubmissionInfo]
    no_gain_streak: int
    elapsed_seconds: float
    learning: LearningSettings
    data_values: list[DataValue]
    memory: list[ArmStats]
    refit: AdapterInfo | None
    #: Whether the test comparison decodes for the task metric (``eval.task_metric``); when not, no time is kept
    #: for it.
    decodes_task_metric: bool = True

    @classmethod
    def from_state(cls, state: AgentState, budget: RunBudget, learning: LearningSettings | None = None,
                   decodes_task_metric: bool = True) -> PlanView:
        """Wall time is the run's active time (recorded node durations), so downtime between a crash and
        its resume does not count and a replay sees the same figures."""
        usage = BudgetUsage.model_validate(state.get("usage") or {})
        refit = state.get("refit")
        return cls(
            task=TaskInfo.model_validate(state["task"]),
            budget=budget,
            usage=usage,
            iteration=state.get("iteration", 0),
            dataset=DatasetInfo.model_validate(state["dataset"]),
            datasets=[DatasetInfo.model_validate(d) for d in state.get("datasets", [])],
            baseline=EvalSummary.model_validate(state["baseline"]),
            evaluations=[EvalSummary.model_validate(e) for e in state.get("evaluations", [])],
            adapters=[AdapterInfo.model_validate(a) for a in state.get("adapters", [])],
            best_adapter=state.get("best_adapter"),
            submissions=[SubmissionInfo.model_validate(s) for s in state.get("submissions", [])],
            no_gain_streak=state.get("no_gain_streak", 0),
            elapsed_seconds=usage.wall_seconds,
            learning=learning or LearningSettings(),
            data_values=[DataValue.model_validate(v) for v in state.get("data_values", [])],
            memory=[ArmStats.model_validate(a) for a in state.get("memory", [])],
            refit=AdapterInfo.model_validate(refit) if refit else None,
            decodes_task_metric=decodes_task_metric,
        )

    # ----- derived facts ---------------------------------------------------------------------------------------
    def evaluation_of(self, adapter_id: str) -> EvalSummary | None:
        return next((e for e in self.evaluations if e.adapter_id == adapter_id), None)

    def adapter(self, adapter_id: str) -> AdapterInfo | None:
        return next((a for a in self.adapters if a.adapter_id == adapter_id), None)

    @property
    def unevaluated_adapter(self) -> AdapterInfo | None:
        return next((a for a in self.adapters if self.evaluation_of(a.adapter_id) is None), None)

    @property
    def untrained_data(self) -> bool:
        """The current dataset version has synthetic rows no adapter was trained on yet."""
        trained = {a.dataset_version for a in self.adapters}
        return sum(self.dataset.synthetic_per_category.values()) > 0 and self.dataset.version not in trained

    @property
    def reference(self) -> EvalSummary:
        """The model whose weaknesses drive targeting: the best adapter so far, else the base model."""
        if self.best_adapter:
            found = self.evaluation_of(self.best_adapter)
            if found is not None:
                return found
        return self.baseline

    @property
    def best_beats_base(self) -> bool:
        best = self.evaluation_of(self.best_adapter) if self.best_adapter else None
        return best is not None and best.bpc < self.baseline.bpc

    @property
    def submitted_adapters(self) -> set[str]:
        return {s.adapter_id for s in self.submissions}

    @property
    def refit_of_best(self) -> AdapterInfo | None:
        """The final refit of the best adapter's recipe, when there is one."""
        refit = self.refit
        return refit if refit is not None and refit.refit_of == self.best_adapter else None

    @property
    def submission_candidate(self) -> str | None:
        """What a submission sends: the refit of the best adapter's recipe when there is one, else the best."""
        refit = self.refit_of_best
        return refit.adapter_id if refit is not None else self.best_adapter

    def remaining(self) -> dict[str, float]:
        b, u = self.budget, self.usage
        return {
            "iterations": b.max_iterations - u.iterations,
            "synthetic_examples": b.max_synthetic_examples - u.synthetic_examples,
            "generation_tokens": b.max_generation_tokens - u.generation_tokens,
            "train_tokens": b.max_train_tokens - u.train_tokens,
            "wall_seconds": b.max_wall_seconds - self.elapsed_seconds,
            "submissions": b.max_submissions - u.submissions,
        }
