"""FedLedger API client (FLOCK_API.md sections 2-6) on httpx with tenacity retries.

- The API key comes from ``FLOCK_API_KEY`` (or the constructor), is sent only as the ``flock-api-key`` header
  to the API host and only on calls that need it, and never appears in a repr, a log line or an error message.
- Errors with a ``{"detail": ...}`` body become typed :mod:`tools.flock.errors` exceptions carrying the message.
- 429, 5xx, timeouts and connection errors are retried with exponential backoff and jitter, honouring
  ``Retry-After``; other 4xx are not. submit-result, which creates a submission, is resent only when the
  request provably never reached the server; :func:`tools.flock.ledger.submit_once` reconciles the rest.
- Downloads stream to a temporary file next to the caller's destination, check size, content type and JSONL
  shape, and are renamed into place only when complete. An expired presigned link (403 from the storage host)
  is replaced by fetching the task again.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from tools.flock.errors import (
    FlockAPIError,
    FlockAssignmentRateLimitError,
    FlockAuthError,
    FlockDownloadError,
    FlockError,
    FlockRateLimitError,
    FlockServerError,
    FlockSubmissionLimitError,
    FlockTransportError,
    api_error_for,
    detail_text,
)
from tools.flock.schemas import (
    DownloadedFile,
    FlockTask,
    LeaderboardEntry,
    Page,
    ValidationAssignment,
    WalletSubmission,
)

logger = logging.getLogger(__name__)

PRODUCTION_BASE_URL = "https://fed-ledger-prod.flock.io/api/v1"
#: Overrides the default base URL (e.g. a local simulator) without code changes.
BASE_URL_ENV = "FLOCK_API_BASE_URL"
API_KEY_ENV = "FLOCK_API_KEY"
#: Training sets are a few MB to a few hundred MB; anything past this is refused before it fills the disk.
DEFAULT_MAX_DOWNLOAD_BYTES = 2 * 1024**3
#: Content types a JSONL dataset may arrive with (S3 sends binary/octet-stream for unknown types).
JSONL_CONTENT_TYPES = frozenset({
    "application/octet-stream", "binary/octet-stream", "application/json", "application/jsonl",
    "application/x-jsonl", "application/x-ndjson", "application/x-jsonlines", "application/jsonlines",
    "text/plain", "text/jsonl",
})
_SANITY_PROBE_BYTES = 4 * 1024 * 1024

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """Backoff for retried calls: ``initial_wait_s * 2**n`` capped at ``max_wait_s``, plus up to ``jitter_s``."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(5, ge=1)
    initial_wait_s: float = Field(1.0, ge=0)
    max_wait_s: float = Field(30.0, ge=0)
    jitter_s: float = Field(1.0, ge=0)
    #: A Retry-After longer than this is not waited out: the rate-limit error is raised to the caller.
    max_retry_after_s: float = Field(120.0, ge=0)


def redact_url(url: str) -> str:
    """scheme://host/path of a URL: presigned query strings carry signatures and stay out of messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number (fractions allowed) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _NotSent(Exception):
    """Marker: the transport failed before the request could reach the server (safe to resend anything)."""


def _was_not_sent(exc: BaseException) -> bool:
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


class FedLedgerClient:
    """Synchronous FedLedger client. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        download_timeout: float = 300.0,
        retry: RetryPolicy | None = None,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    ) -> None:
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or PRODUCTION_BASE_URL).rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_download_bytes = max_download_bytes
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, follow_redirects=False)
        # Storage links point at another host: a separate client that never carries the API key.
        self._storage = httpx.Client(timeout=httpx.Timeout(download_timeout, connect=min(timeout, 30.0)),
                                     follow_redirects=False)

    def __repr__(self) -> str:
        return f"FedLedgerClient(base_url={self.base_url!r}, api_key={'set' if self._api_key else 'unset'})"

    def __enter__(self) -> FedLedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._storage.close()

    @property
    def has_api_key(self) -> bool:
        return bool(self._api_key)

    # ----- retry machinery -----------------------------------------------------------------------------------
    def _retryable(self, exc: BaseException, *, creates: bool) -> bool:
        """Whether to try again. ``creates``: the call makes a server-side record, so only resend when unsent."""
        if isinstance(exc, FlockSubmissionLimitError | FlockAssignmentRateLimitError):
            return False
        if isinstance(exc, FlockRateLimitError):
            return exc.retry_after is None or exc.retry_after <= self.retry.max_retry_after_s
        if isinstance(exc, FlockServerError):
            return not creates
        if isinstance(exc, FlockTransportError):
            return not creates or isinstance(exc.__cause__, _NotSent)
        return False

    def _wait_seconds(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        return self.backoff_seconds(state.attempt_number)

    def backoff_seconds(self, attempt: int) -> float:
        """Wait after failed attempt ``attempt`` (1-based): exponential, capped, plus uniform jitter."""
        policy = self.retry
        return min(policy.max_wait_s, policy.initial_wait_s * 2 ** (attempt - 1)) + random.uniform(0, policy.jitter_s)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.warning("FedLedger attempt %d failed (%s); retrying in %.2fs", state.attempt_number, exc, wait)

    def _retrying(self, retry_if: Callable[[BaseException], bool]) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=self._wait_seconds,
            retry=retry_if_exception(retry_if),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _call(self, fn: Callable[[], T], *, creates: bool = False) -> T:
        return self._retrying(lambda exc: self._retryable(exc, creates=creates))(fn)

    # ----- one HTTP exchange ---------------------------------------------------------------------------------
    def _auth_headers(self, method: str, path: str) -> dict[str, str]:
        if not self._api_key:
            raise FlockAuthError(method, path, 0,
                                 f"no API key: set the {API_KEY_ENV} environment variable (the key of a wallet "
                                 "staked on this task)")
        return {"flock-api-key": self._api_key}

    def _request_once(self, method: str, path: str, *, auth: bool | None, params: dict[str, Any] | None = None,
                      body: Any = None) -> Any:
        """auth: True requires the key, None sends it when set, False never sends it."""
        headers: dict[str, str] = {}
        if auth or (auth is None and self._api_key):
            headers.update(self._auth_headers(method, path))
        try:
            response = self._http.request(method, path, params=params, json=body, headers=headers)
        except httpx.TransportError as exc:
            cause: BaseException = _NotSent(str(exc)) if _was_not_sent(exc) else exc
            raise FlockTransportError(method, path, exc) from cause
        if response.status_code >= 400:
            try:
                detail = detail_text(response.json())
            except ValueError:
                detail = response.text.strip()[:300] or response.reason_phrase
            raise api_error_for(method, path, response.status_code, detail,
                                parse_retry_after(response.headers.get("retry-after")))
        try:
            return response.json()
        except ValueError:
            raise FlockServerError(method, path, response.status_code,
                                   f"response is not JSON: {response.text[:200]!r}") from None

    # ----- API calls -----------------------------------------------------------------------------------------
    def health(self) -> bool:
        """Whether ``/health`` answers 2xx (one attempt, no retries)."""
        try:
            self._request_once("GET", "/health", auth=False)
        except FlockError:
            return False
        return True

    def get_task(self, task_id: int | str) -> FlockTask:
        """``GET /tasks/get``: sent without the API key, as FLock's reference node does."""
        raw = self._call(lambda: self._request_once("GET", "/tasks/get", auth=False, params={"task_id": task_id}))
        return FlockTask.model_validate(raw)

    def list_tasks(self, status: str | None = None) -> list[FlockTask]:
        params = {"status": status} if status else None
        raw = self._call(lambda: self._request_once("GET", "/tasks/list", auth=None, params=params))
        if not isinstance(raw, list):
            raise FlockServerError("GET", "/tasks/list", 200, f"expected a JSON array, got {type(raw).__name__}")
        return [FlockTask.model_validate(item) for item in raw]

    def submit_result(self, task_id: int, hg_repo_id: str, base_model: str, gpu_type: str,
                      revision: str) -> dict[str, Any]:
        """``POST /tasks/submit-result``. Resent only when the request never left; prefer ``submit_once``."""
        body = {"task_id": int(task_id), "data": {"hg_repo_id": hg_repo_id, "base_model": base_model,
                                                   "gpu_type": gpu_type, "revision": revision}}
        raw = self._call(lambda: self._request_once("POST", "/tasks/submit-result", auth=True, body=body),
                         creates=True)
        return raw if isinstance(raw, dict) else {"response": raw}

    def wallet_submissions_page(self, task_id: int, page: int = 1, size: int = 50) -> Page:
        params = {"task_id": task_id, "page": page, "size": size}
        raw = self._call(lambda: self._request_once("GET", "/tasks/wallet-submissions", auth=True, params=params))
        if isinstance(raw, list):  # tolerate a bare array
            return Page(items=raw, total=len(raw), page=1, size=len(raw), pages=1)
        return Page.model_validate(raw)

    def wallet_submissions(self, task_id: int, *, size: int = 50, max_pages: int = 100) -> list[WalletSubmission]:
        """All of this key's submissions for a task, across pages."""
        items: list[WalletSubmission] = []
        for number in range(1, max_pages + 1):
            page = self.wallet_submissions_page(task_id, number, size)
            items.extend(WalletSubmission.model_validate(item) for item in page.items)
            if not page.items or page.pages is None or number >= page.pages:
                break
        return items

    def request_validation_assignment(self, task_id: int | str) -> ValidationAssignment:
        """Ask for a submission to validate. Retried like a read, as LV does: an assignment whose answer was
        lost only lapses on the server (and a retry within the lookup interval gets the rate-limit error)."""
        path = f"/tasks/request-validation-assignment/{task_id}"
        raw = self._call(lambda: self._request_once("POST", path, auth=True))
        return ValidationAssignment.model_validate(raw)

    def update_validation_assignment(self, assignment_id: int, status: str,
                                     data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Post ``{"status": "completed", "data": {...}}`` or ``{"status": "failed"}``."""
        if status not in ("completed", "failed"):
            raise ValueError(f"status must be 'completed' or 'failed', got {status!r}")
        body: dict[str, Any] = {"status": status}
        if data is not None:
            body["data"] = data
        path = f"/tasks/update-validation-assignment/{assignment_id}"
        raw = self._call(lambda: self._request_once("POST", path, auth=True, body=body))
        return raw if isinstance(raw, dict) else {"response": raw}

    def leaderboard(self, task_id: int, *, page: int = 1, size: int = 50) -> list[LeaderboardEntry]:
        """``/stats/models``: ranked submissions, best (lowest score) first."""
        params = {"task_id": task_id, "page": page, "size": size}
        raw = self._call(lambda: self._request_once("GET", "/stats/models", auth=False, params=params))
        return [LeaderboardEntry.model_validate(item) for item in Page.model_validate(raw).items]

    # ----- downloads -----------------------------------------------------------------------------------------
    def download_training_set(self, task_id: int | str, dest: str | os.PathLike[str], *,
                              task: FlockTask | None = None, max_bytes: int | None = None) -> DownloadedFile:
        """Download a task's training set to ``dest`` (a path the caller chose). Expired links are refreshed."""
        current = {"task": task}

        def url(refresh: bool) -> str:
            if refresh or current["task"] is None:
                current["task"] = self.get_task(task_id)
            found = current["task"]
            assert found is not None
            if not found.data.training_set_url:
                raise FlockDownloadError(f"task {task_id} has no data.training_set_url")
            return found.data.training_set_url

        return self._download(f"training set of task {task_id}", url, Path(dest), max_bytes)

    def download_validation_set(self, assignment: ValidationAssignment, dest: str | os.PathLike[str], *,
                                max_bytes: int | None = None) -> DownloadedFile:
        """Download an assignment's validation set (its link cannot be refreshed: a 403 is final)."""
        return self._download(f"validation set of assignment {assignment.id}",
                              lambda refresh: assignment.data.validation_set_url, Path(dest), max_bytes,
                              can_refresh=False)

    def _download(self, what: str, url_for: Callable[[bool], str], dest: Path, max_bytes: int | None,
                  *, can_refresh: bool = True) -> DownloadedFile:
        cap = max_bytes if max_bytes is not None else self.max_download_bytes
        dest.parent.mkdir(parents=True, exist_ok=True)
        state = {"refresh": False, "expired": 0, "attempts": 0}

        def attempt() -> DownloadedFile:
            state["attempts"] += 1
            url = url_for(bool(state["refresh"]))
            state["refresh"] = False
            try:
                return self._fetch_to(url, dest, cap, int(state["attempts"]))
            except _LinkExpired as exc:
                state["expired"] += 1
                if not can_refresh or state["expired"] > 2:
                    raise FlockDownloadError(f"{what}: {exc}") from None
                logger.info("%s: download link refused (%s); fetching a fresh link", what, exc)
                state["refresh"] = True
                raise _RetryDownload(str(exc)) from None

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, _RetryDownload) or self._retryable(exc, creates=False)

        try:
            return self._retrying(retryable)(attempt)
        except _RetryDownload as exc:
            raise FlockDownloadError(f"{what}: gave up after {state['attempts']} attempts: {exc}") from None
        except (FlockAPIError, FlockTransportError) as exc:
            raise FlockDownloadError(f"{what}: gave up after {state['attempts']} attempts: {exc}") from exc

    def _fetch_to(self, url: str, dest: Path, cap: int, attempts: int) -> DownloadedFile:
        shown = redact_url(url)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out, self._stream(url) as response:
                declared = _check_response(response, shown, cap)
                for chunk in response.iter_bytes(1 << 16):
                    size += len(chunk)
                    if size > cap:
                        raise FlockDownloadError(f"{shown}: more than the {cap}-byte download cap")
                    digest.update(chunk)
                    out.write(chunk)
                if declared is not None and size != declared:
                    raise _RetryDownload(f"{shown}: truncated, got {size} of {declared} bytes")
                out.flush()
                os.fsync(out.fileno())
            problem = jsonl_sanity_problem(tmp, complete=declared is not None)
            if problem:
                raise _RetryDownload(f"{shown}: {problem}")
            os.replace(tmp, dest)
            sha = digest.hexdigest()
            dest.with_name(dest.name + ".sha256").write_text(f"{sha}  {dest.name}\n")
            return DownloadedFile(path=str(dest), sha256=sha, size=size, attempts=attempts)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _stream(self, url: str) -> Iterator[httpx.Response]:
        """Stream a storage URL; transport failures while connecting or reading become FlockTransportError."""
        try:
            with self._storage.stream("GET", url) as response:
                yield response
        except httpx.TransportError as exc:
            cause: BaseException = _NotSent(str(exc)) if _was_not_sent(exc) else exc
            raise FlockTransportError("GET", redact_url(url), exc) from cause


class _RetryDownload(Exception):
    """A download attempt failed in a way another attempt may fix (truncation, bad tail, refreshed link)."""


class _LinkExpired(Exception):
    """403 from the storage host: the presigned link expired (or was refused)."""


def _check_response(response: httpx.Response, shown: str, cap: int) -> int | None:
    """Status, content type and declared size of a storage response; returns the declared length."""
    status = response.status_code
    if status == 403:
        response.read()
        reason = "expired" if b"expired" in response.content.lower() else "access denied"
        raise _LinkExpired(f"{shown}: HTTP 403 from the storage host ({reason})")
    if status == 429 or status >= 500:
        raise api_error_for("GET", shown, status, f"storage host answered HTTP {status}",
                            parse_retry_after(response.headers.get("retry-after")))
    if status != 200:
        raise FlockDownloadError(f"{shown}: storage host answered HTTP {status}")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in JSONL_CONTENT_TYPES:
        raise FlockDownloadError(f"{shown}: content type {content_type!r} is not a JSONL dataset")
    declared = response.headers.get("content-length")
    length = int(declared) if declared and declared.isdigit() else None
    if length is not None and length > cap:
        raise FlockDownloadError(f"{shown}: {length} bytes is over the {cap}-byte download cap")
    return length


def jsonl_sanity_problem(path: Path, *, complete: bool = False) -> str | None:
    """A cheap shape check of a downloaded JSONL file: its first and last lines are JSON objects.

    Catches error pages saved as data and bodies cut off mid-line; full validation is ``tools.data``'s job.
    ``complete``: the body had the length the server declared, so it is the file as the server holds it, not a cut
    or an error page: a broken line in it is the loader's to judge, naming the line (a retry would fetch the same
    bytes again, and "cut off" would mislead).
    """
    if complete:
        return None
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with path.open("rb") as handle:
        head = handle.read(min(size, _SANITY_PROBE_BYTES))
        handle.seek(max(0, size - _SANITY_PROBE_BYTES))
        tail = handle.read()
    lines = [line for line in head.splitlines() if line.strip()]
    if not lines:
        return "the file holds only blank lines"
    first = _json_object_problem(lines[0]) if (b"\n" in head or size <= _SANITY_PROBE_BYTES) else None
    if first:
        return f"line 1 is not a JSON object ({first})"
    tail_lines = [line for line in tail.splitlines() if line.strip()]
    # The last line can be judged only when its start is inside the probe (a longer line is the loader's to judge).
    whole_last_line = size <= _SANITY_PROBE_BYTES or b"\n" in tail.rstrip(b"\r\n")
    last = _json_object_problem(tail_lines[-1]) if tail_lines and whole_last_line else None
    if last:
        return f"the last line is not a JSON object ({last}); the body was probably cut off"
    return None


def _json_object_problem(line: bytes) -> str | None:
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return type(exc).__name__ + ": " + str(exc)[:120]
    except RecursionError:
        return "JSON nested too deeply"
    return None if isinstance(value, dict) else f"got a JSON {type(value).__name__}"


__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "PRODUCTION_BASE_URL",
    "FedLedgerClient",
    "RetryPolicy",
    "jsonl_sanity_problem",
    "parse_retry_after",
    "redact_url",
]
