"""The task-plugin interface: one object per task type, shared by profiling, generation, training and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from tools.data import FlockRecord


@dataclass(frozen=True)
class Categorization:
    """The categories of one example: ``primary`` drives balancing and targeting; ``tags`` lists all that apply."""

    primary: str
    tags: tuple[str, ...]


class TaskPlugin(ABC):
    """A task type. Subclasses are stateless unless :meth:`fit` learns data-dependent categories."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def detect(self, records: Sequence[FlockRecord]) -> float:
        """Confidence in [0, 1] that these records belong to this task type."""

    @abstractmethod
    def categorize(self, record: FlockRecord) -> Categorization:
        """The categories of one record."""

    @abstractmethod
    def categories(self) -> dict[str, str]:
        """Category name -> one-line description, for every primary category this plugin can assign."""

    def fit(self, records: Sequence[FlockRecord]) -> TaskPlugin:
        """Learn data-dependent categories (e.g. personas). Returns self; the default learns nothing."""
        return self

    def primary_counts(self, records: Sequence[FlockRecord]) -> dict[str, int]:
        counts = Counter(self.categorize(r).primary for r in records)
        names = [*self.categories(), *sorted(set(counts) - set(self.categories()))]
        return {name: counts.get(name, 0) for name in names}
