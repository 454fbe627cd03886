"""FLock integration: the FedLedger client, the submission ledger and (in ``simulator``) a local FLock."""

from tools.flock.client import PRODUCTION_BASE_URL, FedLedgerClient, RetryPolicy
from tools.flock.errors import (
    FlockAPIError,
    FlockAuthError,
    FlockDownloadError,
    FlockError,
    FlockNotFoundError,
    FlockRateLimitError,
    FlockServerError,
    FlockSubmissionLimitError,
    FlockSubmissionUncertainError,
    FlockTransportError,
)
from tools.flock.ledger import SubmissionLedger, SubmissionReceipt, submit_once
from tools.flock.schemas import FlockTask, ValidationAssignment, WalletSubmission

__all__ = [
    "PRODUCTION_BASE_URL",
    "FedLedgerClient",
    "FlockAPIError",
    "FlockAuthError",
    "FlockDownloadError",
    "FlockError",
    "FlockNotFoundError",
    "FlockRateLimitError",
    "FlockServerError",
    "FlockSubmissionLimitError",
    "FlockSubmissionUncertainError",
    "FlockTask",
    "FlockTransportError",
    "RetryPolicy",
    "SubmissionLedger",
    "SubmissionReceipt",
    "ValidationAssignment",
    "WalletSubmission",
    "submit_once",
]
