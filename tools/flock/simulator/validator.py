"""The simulator's own validator: FLock's validator loop (FLOCK_API.md 9.1/9.2) over real HTTP.

For each assignment it downloads the validation set through the presigned link, fetches the adapter from the
publisher (``hg_repo_id`` + ``revision``), checks ``base_model_name_or_path`` against the task's supported
models, scores it with the FLock-exact BPC (:func:`tools.evaluate.score_adapter_for_validation`, which applies
the max_params and NaN rules with their 999.0 penalty) and posts the BPC as ``loss``, or ``{"status": "failed"}`` in the
cases where LV marks an assignment failed (not LoRA, unsupported base, unknown template, load errors).

One difference, said aloud: an adapter whose base model is outside FLock's validators' ``SUPPORTED_BASE_MODELS``
(the offline demo's SmolLM2, for one) is scored all the same, so local runs can be compared; the result carries
``accepted_by_flock_validators: false``, and the simulator's answers say real validators would mark it failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tools.flock.client import FedLedgerClient
from tools.flock.errors import (
    FlockAssignmentNotValidatingError,
    FlockAssignmentRateLimitError,
    FlockError,
    FlockNoAssignmentError,
)
from tools.flock.schemas import FlockTask, ValidationAssignment
from tools.models import accepted_by_flock_validators
from tools.publish import ADAPTER_CONFIG, Publisher, PublishError

logger = logging.getLogger(__name__)

#: ``(hub_id, adapter_dir, validation_file, template, context_length, max_params, *, base_model=None)`` returning
#: a score with ``bpc`` (:class:`tools.evaluate.FlockScore`).
Scorer = Callable[..., Any]


class ValidationOutcome(BaseModel):
    """What the validator did with one assignment."""

    model_config = ConfigDict(frozen=True)

    assignment_id: int
    submission_id: int
    task_id: int
    hg_repo_id: str
    revision: str
    status: Literal["completed", "failed"]
    loss: float | None = None
    reason: str | None = None
    accepted_by_flock_validators: bool | None = None
    """False: scored here, but FLock's validators would mark it failed (base model outside their list)."""


class _Rejected(Exception):
    """The submission cannot be scored; the assignment is marked failed with this reason."""


def default_scorer() -> Scorer:
    from tools.evaluate import score_adapter_for_validation

    return score_adapter_for_validation


class SimulatorValidator:
    """A validator node. ``client`` carries a key staked as validator; ``publisher`` resolves submitted repos."""

    def __init__(self, client: FedLedgerClient, publisher: Publisher, *, workdir: str | Path | None = None,
                 scorer: Scorer | None = None, gpu_type: str = "CPU",
                 base_model_paths: dict[str, str | Path] | None = None):
        self.client = client
        self.publisher = publisher
        self.base_model_paths = dict(base_model_paths or {})
        self.workdir = Path(workdir) if workdir else None
        self._scorer = scorer
        self.gpu_type = gpu_type
        self._tasks: dict[int, FlockTask] = {}

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = default_scorer()
        return self._scorer

    def validate_pending(self, task_ids: Iterable[int], *, limit: int | None = None) -> list[ValidationOutcome]:
        """Validate submissions until none is left (or the lookup rate limit, or ``limit``, stops it)."""
        outcomes: list[ValidationOutcome] = []
        for task_id in task_ids:
            while limit is None or len(outcomes) < limit:
                try:
                    assignment = self.client.request_validation_assignment(task_id)
                except FlockNoAssignmentError:
                    break
                except FlockAssignmentRateLimitError as exc:
                    logger.info("task %s: assignment lookup rate-limited (retry after %ss)", task_id,
                                exc.retry_after)
                    break
                outcomes.append(self.validate(assignment))
        return outcomes

    def validate(self, assignment: ValidationAssignment) -> ValidationOutcome:
        submission = assignment.task_submission
        work = Path(tempfile.mkdtemp(prefix=f"assignment-{assignment.id}-", dir=self.workdir))
        accepted: bool | None = None
        try:
            loss, base = self._score(assignment, work)
            status: Literal["completed", "failed"] = "completed"
            reason = None
            accepted = accepted_by_flock_validators(base)
        except _Rejected as exc:
            status, loss, reason = "failed", None, str(exc)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        data: dict[str, Any] | None
        if status == "completed":
            logger.info("assignment %s: %s@%s scored %.6f", assignment.id, submission.data.hg_repo_id,
                        submission.data.revision, loss)
            if not accepted:
                logger.warning("assignment %s: %s@%s scored, but FLock's validators would mark it failed: its base "
                               "model %s is not in their supported list", assignment.id, submission.data.hg_repo_id,
                               submission.data.revision, base)
            data = {"loss": loss, "gpu_type": self.gpu_type, "accepted_by_flock_validators": accepted}
        else:
            logger.warning("assignment %s: %s@%s failed: %s", assignment.id, submission.data.hg_repo_id,
                           submission.data.revision, reason)
            data = None
        try:
            self.client.update_validation_assignment(assignment.id, status, data)
        except FlockAssignmentNotValidatingError:
            # LV's answer: mark it failed. The server keeps whatever closed it first (a lapse, or an earlier
            # attempt of this very update whose response was lost).
            with contextlib.suppress(FlockAssignmentNotValidatingError):
                self.client.update_validation_assignment(assignment.id, "failed")
            status, reason = "failed", "assignment was no longer validating when the result was posted"
        return ValidationOutcome(assignment_id=assignment.id, submission_id=submission.id,
                                 task_id=submission.task_id, hg_repo_id=submission.data.hg_repo_id,
                                 revision=submission.data.revision, status=status,
                                 loss=loss if status == "completed" else None, reason=reason,
                                 accepted_by_flock_validators=accepted)

    def _task(self, task_id: int) -> FlockTask:
        if task_id not in self._tasks:
            self._tasks[task_id] = self.client.get_task(task_id)
        return self._tasks[task_id]

    def _score(self, assignment: ValidationAssignment, work: Path) -> tuple[float, str]:
        """The submission's BPC and the base model its adapter names."""
        submission = assignment.task_submission
        try:
            eval_file = self.client.download_validation_set(assignment, work / "validation_set.jsonl")
            adapter_dir = self.publisher.fetch(submission.data.hg_repo_id, submission.data.revision, work / "lora")
            supported = self._task(submission.task_id).data.supported_base_models
        except (FlockError, PublishError, OSError) as exc:
            raise _Rejected(f"cannot fetch the submission: {exc}") from exc
        config_path = adapter_dir / ADAPTER_CONFIG
        if not config_path.is_file():
            raise _Rejected("not a LoRA adapter (no adapter_config.json) and the task accepts LoRA only")
        try:
            config = json.loads(config_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Rejected(f"adapter_config.json is not valid JSON: {exc}") from None
        base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
        if not isinstance(base, str) or not base:
            raise _Rejected("adapter_config.json has no base_model_name_or_path")
        if supported and base not in supported:
            raise _Rejected(f"base model {base!r} is not supported by this task")
        data = assignment.data
        weights = {"base_model": self.base_model_paths[base]} if base in self.base_model_paths else {}
        try:
            score = self.scorer(base, adapter_dir, eval_file.path, data.base_model, data.context_length,
                                data.max_params if data.max_params is not None else 2**63 - 1, **weights)
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            # LV marks the assignment failed on these (unknown template, unloadable repo, out of memory).
            raise _Rejected(f"{type(exc).__name__}: {exc}") from exc
        # Since May 2025 validators post BPC as "loss" (999.0 when a penalty applies).
        return float(score.bpc), base
