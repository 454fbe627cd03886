"""Typed errors for FedLedger calls.

A server error body ``{"detail": "..."}`` becomes the exception's ``detail``; the message names the method, the
path and the status. The API key is never part of any message.
"""

from __future__ import annotations

from typing import Any

# Exact detail strings FLock's reference validator compares against (FLOCK_API.md section 4.3/4.4).
NO_SUBMISSIONS_DETAIL = "No task submissions available to validate"
ASSIGNMENT_RATE_LIMIT_DETAIL = "Rate limit reached for validation assignment lookup: 1 per 3 minutes"
NOT_VALIDATING_DETAIL = "Validation assignment is not in validating status"
#: The simulator's text for the two-a-day rule; the real server's wording is unknown (section 4.2).
SUBMISSION_LIMIT_DETAIL = "Submission limit reached: you are only allowed to submit models twice a day"


class FlockError(Exception):
    """Base class of every FLock integration error."""


class FlockAPIError(FlockError):
    """The FedLedger API answered with an error status."""

    def __init__(self, method: str, path: str, status_code: int, detail: str, retry_after: float | None = None):
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"{method} {path} failed with HTTP {status_code}: {detail}")


class FlockBadRequestError(FlockAPIError):
    """400/422: the request was refused as invalid (not retried)."""


class FlockAuthError(FlockAPIError):
    """401/403 from the API: missing, unknown or unstaked API key."""


class FlockNotFoundError(FlockAPIError):
    """404: unknown task, assignment or route."""


class FlockRateLimitError(FlockAPIError):
    """429: too many requests; ``retry_after`` holds the server's Retry-After in seconds when it sent one."""


class FlockSubmissionLimitError(FlockRateLimitError):
    """The node already submitted twice today; retrying before the next UTC day cannot succeed."""


class FlockAssignmentRateLimitError(FlockRateLimitError):
    """The validator asked for assignments more often than once per 3 minutes."""


class FlockNoAssignmentError(FlockAPIError):
    """No submission is waiting for validation."""


class FlockAssignmentNotValidatingError(FlockAPIError):
    """The assignment was already completed, failed or timed out."""


class FlockServerError(FlockAPIError):
    """5xx: the server or a proxy in front of it failed (retried)."""


class FlockTransportError(FlockError):
    """No usable HTTP response: connection refused or reset, timeout, truncated body."""

    def __init__(self, method: str, path: str, cause: BaseException):
        self.method = method
        self.path = path
        self.cause_type = type(cause).__name__
        super().__init__(f"{method} {path}: {self.cause_type}: {cause}".rstrip(": "))


class FlockDownloadError(FlockError):
    """A dataset download failed or produced a file that is not usable JSONL; nothing was written at the target."""


class FlockSubmissionUncertainError(FlockError):
    """A submission may or may not have reached the server; the ledger keeps it as "sending" for reconciliation."""


class BaseModelRejectedError(FlockError, ValueError):
    """A base model cannot be used for a task (too large, unknown template, not supported)."""


def detail_text(body: Any) -> str:
    """A readable message from an error body: FastAPI's ``detail`` (string or validation list) or raw text."""
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    loc = ".".join(str(p) for p in item.get("loc", []))
                    parts.append(f"{loc}: {item.get('msg', item)}" if loc else str(item.get("msg", item)))
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        return str(detail)
    return str(body)


def api_error_for(method: str, path: str, status: int, detail: str, retry_after: float | None) -> FlockAPIError:
    """Map a status and detail to the most specific error class; detail strings win over status codes."""
    cls: type[FlockAPIError]
    lowered = detail.lower()
    if detail == ASSIGNMENT_RATE_LIMIT_DETAIL or "validation assignment lookup" in lowered:
        cls = FlockAssignmentRateLimitError
    elif detail == NO_SUBMISSIONS_DETAIL:
        cls = FlockNoAssignmentError
    elif detail == NOT_VALIDATING_DETAIL:
        cls = FlockAssignmentNotValidatingError
    elif "twice a day" in lowered or "submission limit" in lowered:
        cls = FlockSubmissionLimitError
    elif status == 429:
        cls = FlockRateLimitError
    elif status in (401, 403):
        cls = FlockAuthError
    elif status == 404:
        cls = FlockNotFoundError
    elif status >= 500:
        cls = FlockServerError
    else:
        cls = FlockBadRequestError
    return cls(method, path, status, detail, retry_after)
