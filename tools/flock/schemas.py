"""Typed FedLedger objects (FLOCK_API.md sections 5 and 6).

The models accept extra fields and tolerate missing optional ones: the server's shapes changed over time and are
partly undocumented, so the client reads what it needs and keeps the rest in ``model_extra``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def utc_naive(value: datetime) -> datetime:
    """FLock timestamps are naive UTC; aware values are converted so comparisons never mix the two."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


#: A FLock timestamp as read: naive UTC whatever the server sent.
NaiveUTC = Annotated[datetime, AfterValidator(utc_naive)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TaskData(_Tolerant):
    """``task.data``: the training-set link (``/tasks/get``) or raw storage keys (``/tasks/list``), and limits."""

    training_set_url: str | None = None
    context_length: int | None = None
    max_params: int | None = None
    recommended_vram: str | None = None
    training_set_key: str | None = None
    validation_set_key: str | None = None
    final_validation_set_key: str | None = None
    dataset_s3_key: str | None = None
    #: Simulator extension: the base models its validator accepts (FLOCK_API.md 10.2 on the real network).
    supported_base_models: list[str] | None = None


class FlockTask(_Tolerant):
    """A task as ``/tasks/get`` or ``/tasks/list`` returns it."""

    id: int
    title: str = ""
    description: str = ""
    task_type: str = "training"
    status: str = ""
    duration_in_seconds: int | None = None
    initialized_at: NaiveUTC | None = None
    submission_phase_ends_at: NaiveUTC | None = None
    final_validation_ends_at: NaiveUTC | None = None
    final_link: str | None = None
    data: TaskData = Field(default_factory=TaskData)

    @property
    def in_submission_phase(self) -> bool:
        return self.status == "submission_phase"


class SubmissionData(_Tolerant):
    """What a training node submits (``data`` of submit-result)."""

    hg_repo_id: str
    base_model: str | None = None
    gpu_type: str | None = None
    #: LV defaults a missing revision to "main".
    revision: str = "main"


class TaskSubmission(_Tolerant):
    id: int
    task_id: int
    data: SubmissionData


class AssignmentData(_Tolerant):
    validation_set_url: str
    base_model: str
    context_length: int
    max_params: int | None = None
    eval_args: dict[str, Any] | None = None


class ValidationAssignment(_Tolerant):
    """The object ``request-validation-assignment`` returns (section 6)."""

    id: int
    status: str = "validating"
    assigned_at: datetime | None = None
    task_submission: TaskSubmission
    data: AssignmentData


class WalletSubmission(_Tolerant):
    """One of the caller's submissions from ``/tasks/wallet-submissions``.

    The real API documents only ``link`` (``https://huggingface.co/<repo>``), the scores and ``submitted_at``;
    the simulator also sends ``hg_repo_id`` and ``revision`` so reconciliation can be exact.
    """

    id: int | None = None
    task_id: int | None = None
    link: str | None = None
    hg_repo_id: str | None = None
    revision: str | None = None
    submission_phase_score: float | None = None
    final_validation_score: float | None = None
    submitted_at: NaiveUTC | None = None

    @property
    def repo_id(self) -> str | None:
        """The submitted repo: ``hg_repo_id`` when sent, else parsed from the link."""
        if self.hg_repo_id:
            return self.hg_repo_id
        if self.link:
            path = self.link.split("://", 1)[-1].split("/", 1)[-1]
            parts = [p for p in path.split("/") if p]
            if len(parts) >= 2:
                return f"{parts[0]}/{parts[1]}"
        return None


class Page(_Tolerant):
    """FastAPI-style pagination wrapper."""

    items: list[dict[str, Any]] = Field(default_factory=list)
    total: int | None = None
    page: int = 1
    size: int | None = None
    pages: int | None = None


class LeaderboardEntry(_Tolerant):
    wallet: str
    rank: int
    submission_phase_score: float | None = None
    final_validation_score: float | None = None
    hg_repo_id: str | None = None
    revision: str | None = None


class DownloadedFile(BaseModel):
    """A completed download: where it is, how big, and its sha256 (also written next to it as ``<name>.sha256``)."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str
    size: int
    attempts: int
