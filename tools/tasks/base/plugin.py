"""The task-plugin interface: one object per task type holds everything that differs between task types.

The stages never name a task type; they ask the task's plugin:

- profiling, splits and the agent: :meth:`TaskPlugin.detect`, :meth:`~TaskPlugin.fit`,
  :meth:`~TaskPlugin.categorize`, :meth:`~TaskPlugin.categories`, :meth:`~TaskPlugin.category_counts`,
  :meth:`~TaskPlugin.primary_counts`;
- generation (:mod:`tools.generate`): :attr:`~TaskPlugin.strategies`, :meth:`~TaskPlugin.strategy_names`,
  :meth:`~TaskPlugin.strategy_class`, :meth:`~TaskPlugin.make_strategy`;
- quality gates (:mod:`tools.quality`): :meth:`~TaskPlugin.check_validity`, :meth:`~TaskPlugin.content_text`;
- evaluation (:mod:`tools.evaluate`): :attr:`~TaskPlugin.metrics`, :attr:`~TaskPlugin.headline_metric`,
  :meth:`~TaskPlugin.metric`, :meth:`~TaskPlugin.metric_references`, :meth:`~TaskPlugin.probes`.

A task type is one package under ``tools/tasks/``: its plugin, its generation strategies, its checks and its
task-specific metric modules (``metrics/<name>/<name>.py``); the registry in :mod:`tools.tasks` lists its plugin.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

from tools.data import FlockRecord

if TYPE_CHECKING:
    from tools.tasks.base.strategy import GenerationStrategy


@dataclass(frozen=True)
class Categorization:
    """The categories of one example: ``primary`` drives balancing and targeting; ``tags`` lists all that apply."""

    primary: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class GateCheck:
    """The verdict of one check (a plugin's validity check or a quality gate). ``record`` is set when the check
    rewrote the example (the privacy scrub)."""

    passed: bool
    reason: str = ""
    detail: str = ""
    record: FlockRecord | None = None


def ok(detail: str = "", record: FlockRecord | None = None) -> GateCheck:
    return GateCheck(True, "", detail, record)


def fail(reason: str, detail: str = "") -> GateCheck:
    return GateCheck(False, reason, detail)


@dataclass(frozen=True)
class TaskMetric:
    """A generation metric a task type reports: a local ``evaluate`` module (:mod:`tools.metrics` finds it in
    ``tools/metrics/`` or in a plugin's ``metrics/`` folder)."""

    name: str
    #: The key of the reported number in the module's result (the other keys are details); None: ``name``.
    result_key: str | None = None
    #: Scored on the plugin's :meth:`TaskPlugin.probes` instead of each record's last assistant answer.
    on_probes: bool = False

    @property
    def key(self) -> str:
        return self.result_key or self.name


class Probe(NamedTuple):
    """One point of a record where a metric asks the model for an answer: the conversation up to there with the
    expected turn as its last assistant answer, and the gold the metric compares with."""

    record: FlockRecord
    gold: str


class TaskPlugin(ABC):
    """A task type. Subclasses are stateless unless :meth:`fit` learns data-dependent categories.

    Subclasses set the class attributes and implement :meth:`detect`, :meth:`categorize`, :meth:`categories` and
    :meth:`check_validity`; the other methods have defaults that suit most task types.
    """

    #: The task type's name, as the registry, task files and traces spell it.
    name: ClassVar[str]
    description: ClassVar[str]
    #: Generation strategies, the default first; each is offered under its ``name``.
    strategies: ClassVar[tuple[type[GenerationStrategy], ...]]
    #: Metrics :func:`tools.evaluate.task_metrics` reports for this task type.
    metrics: ClassVar[tuple[TaskMetric, ...]]
    #: The one metric the report and the policy's task-metric gap use.
    headline_metric: ClassVar[str]
    #: Hugging Face Hub tags an adapter trained for this task type carries on its model card.
    hub_tags: ClassVar[tuple[str, ...]] = ()

    # ----- detection and categories ---------------------------------------------------------------------------
    @abstractmethod
    def detect(self, records: Sequence[FlockRecord]) -> float:
        """Confidence in [0, 1] that these records belong to this task type."""

    def fit(self, records: Sequence[FlockRecord]) -> Self:
        """Learn data-dependent categories (e.g. personas). Returns self; the default learns nothing."""
        return self

    @abstractmethod
    def categorize(self, record: FlockRecord) -> Categorization:
        """The categories of one record."""

    @abstractmethod
    def categories(self) -> dict[str, str]:
        """Category name -> one-line description, for every primary category this plugin can assign."""

    def category_counts(self, records: Sequence[FlockRecord]) -> dict[str, int]:
        """Records per primary category, sorted by category name; categories without records are left out."""
        return dict(sorted(Counter(self.categorize(r).primary for r in records).items()))

    def primary_counts(self, records: Sequence[FlockRecord]) -> dict[str, int]:
        """:meth:`category_counts` over every category of :meth:`categories` in its order (zeros included), then
        any other category the records fall in (e.g. ``unparsable``)."""
        counts = self.category_counts(records)
        known = self.categories()
        return {**{name: counts.get(name, 0) for name in known},
                **{name: count for name, count in counts.items() if name not in known}}

    # ----- generation -----------------------------------------------------------------------------------------
    @classmethod
    def strategy_names(cls) -> tuple[str, ...]:
        return tuple(strategy.name for strategy in cls.strategies)

    @classmethod
    def strategy_class(cls, name: str | None = None) -> type[GenerationStrategy]:
        """The strategy called ``name``; the default strategy when ``name`` is None."""
        if name is None:
            return cls.strategies[0]
        for strategy in cls.strategies:
            if strategy.name == name:
                return strategy
        raise ValueError(f"task type {cls.name!r} has no generation strategy {name!r}; "
                         f"known: {', '.join(cls.strategy_names())}")

    def make_strategy(self, seeds: Sequence[FlockRecord], name: str | None = None) -> GenerationStrategy:
        """The strategy called ``name`` (default: the first), anchored on the task's real ``seeds``."""
        return self.strategy_class(name)(self, seeds)

    # ----- quality --------------------------------------------------------------------------------------------
    @abstractmethod
    def check_validity(self, record: FlockRecord) -> GateCheck:
        """Whether a generated record is a valid example of this task type (the query runs, the call matches
        its tool's schema, the dialogue alternates); a failure's reason is a machine-readable code."""

    def content_text(self, record: FlockRecord) -> str:
        """The text that makes an example itself, compared for dedup and decontamination; by default every turn
        (no system prompt, no tool list)."""
        return "\n".join(t.content for t in record.conversations)

    # ----- evaluation -----------------------------------------------------------------------------------------
    def metric(self, name: str) -> TaskMetric:
        """This task type's spec of the metric ``name``; a metric it does not list is scored on the last
        answers and reports the number under its own name."""
        return next((m for m in self.metrics if m.name == name), TaskMetric(name))

    def metric_references(self, metric: str, records: Sequence[FlockRecord], golds: Sequence[str]) -> list[Any]:
        """What the metric module ``metric`` takes as references for these records and their gold answers; by
        default the gold answers themselves."""
        return list(golds)

    def probes(self, record: FlockRecord) -> list[Probe]:
        """The points of a record the ``on_probes`` metrics score (e.g. each function call); none by default."""
        return []
