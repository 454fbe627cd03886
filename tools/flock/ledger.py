"""Submission ledger: a submission is sent at most once per repo and revision, across crashes and resumes.

The ledger is a small SQLite file in the run folder. ``submit_once`` writes the entry as ``sending`` (synced to
disk) before the request leaves and ``sent`` after the server's answer. A ``sending`` entry found on resume, or
left by an answer that never arrived, is reconciled with ``/tasks/wallet-submissions`` before anything is sent
again: exactly by repo and revision where the server lists revisions (the simulator), else by the repo in the
link and the submission time (the real API lists only ``link`` and ``submitted_at``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from tools.flock.client import FedLedgerClient
from tools.flock.errors import (
    FlockAPIError,
    FlockError,
    FlockServerError,
    FlockSubmissionUncertainError,
    FlockTransportError,
)
from tools.flock.schemas import WalletSubmission
from tools.sqlite import transaction

logger = logging.getLogger(__name__)

LEDGER_FILE = "submissions.sqlite"
#: Clock skew allowed when matching a wallet item by time (real API: no revision in the items).
RECONCILE_SLACK = timedelta(seconds=120)


class SubmissionState(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    REFUSED = "refused"


class LedgerEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    task_id: int
    hg_repo_id: str
    revision: str
    base_model: str
    gpu_type: str
    state: SubmissionState
    created_at: datetime
    updated_at: datetime
    response: dict[str, Any] | None = None
    error: str | None = None


class SubmissionReceipt(BaseModel):
    """The outcome of :func:`submit_once`. ``source`` says how it is known the server has the submission."""

    model_config = ConfigDict(frozen=True)

    task_id: int
    hg_repo_id: str
    revision: str
    base_model: str
    source: Literal["sent", "ledger", "reconciled"]
    response: dict[str, Any] | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class SubmissionLedger:
    """SQLite-backed record of submissions, keyed by (hg_repo_id, revision)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("""CREATE TABLE IF NOT EXISTS submissions (
                hg_repo_id TEXT NOT NULL, revision TEXT NOT NULL, task_id INTEGER NOT NULL,
                base_model TEXT NOT NULL, gpu_type TEXT NOT NULL, state TEXT NOT NULL,
                created_at TEXT NOT NULL, updated_at TEXT NOT NULL, response TEXT, error TEXT,
                PRIMARY KEY (hg_repo_id, revision))""")

    @classmethod
    def in_run_dir(cls, run_dir: str | Path) -> SubmissionLedger:
        return cls(Path(run_dir) / LEDGER_FILE)

    @contextmanager
    def exclusive(self, timeout_s: float = 600.0) -> Iterator[None]:
        """Hold the ledger's lock file: one submitter at a time, across threads and processes.

        The operating system releases the lock when its holder dies, so a ``sending`` entry seen under the lock
        was left by a process that crashed or gave up, never by one still sending.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        with lock_path.open("a") as handle:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise FlockSubmissionUncertainError(
                            f"another process has held the submission ledger {self.path} for {timeout_s:.0f}s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        # synchronous=FULL: "sending" must be on disk before the request leaves
        return transaction(self.path, timeout_s=30, synchronous="FULL")

    @staticmethod
    def _entry(row: sqlite3.Row) -> LedgerEntry:
        return LedgerEntry(
            task_id=row["task_id"], hg_repo_id=row["hg_repo_id"], revision=row["revision"],
            base_model=row["base_model"], gpu_type=row["gpu_type"], state=SubmissionState(row["state"]),
            created_at=datetime.fromisoformat(row["created_at"]), updated_at=datetime.fromisoformat(row["updated_at"]),
            response=json.loads(row["response"]) if row["response"] else None, error=row["error"],
        )

    def get(self, hg_repo_id: str, revision: str) -> LedgerEntry | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM submissions WHERE hg_repo_id=? AND revision=?",
                             (hg_repo_id, revision)).fetchone()
        return self._entry(row) if row else None

    def entries(self) -> list[LedgerEntry]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM submissions ORDER BY created_at").fetchall()
        return [self._entry(r) for r in rows]

    def mark_sending(self, task_id: int, hg_repo_id: str, revision: str, base_model: str,
                     gpu_type: str) -> LedgerEntry:
        """Record the intent to send. Refuses when the pair is already sending or sent (another process)."""
        now = _now().isoformat()
        with self._connect() as db:
            row = db.execute("SELECT state FROM submissions WHERE hg_repo_id=? AND revision=?",
                             (hg_repo_id, revision)).fetchone()
            if row and row["state"] != SubmissionState.REFUSED:
                raise FlockSubmissionUncertainError(
                    f"{hg_repo_id}@{revision} is already {row['state']} in the ledger {self.path}")
            db.execute("""INSERT OR REPLACE INTO submissions VALUES (?,?,?,?,?,?,?,?,NULL,NULL)""",
                       (hg_repo_id, revision, task_id, base_model, gpu_type, SubmissionState.SENDING, now, now))
        entry = self.get(hg_repo_id, revision)
        assert entry is not None
        return entry

    def _update(self, hg_repo_id: str, revision: str, state: SubmissionState, *,
                response: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self._connect() as db:
            db.execute("UPDATE submissions SET state=?, updated_at=?, response=?, error=? "
                       "WHERE hg_repo_id=? AND revision=?",
                       (state, _now().isoformat(), json.dumps(response) if response is not None else None, error,
                        hg_repo_id, revision))

    def mark_sent(self, hg_repo_id: str, revision: str, response: dict[str, Any] | None) -> None:
        self._update(hg_repo_id, revision, SubmissionState.SENT, response=response)

    def mark_refused(self, hg_repo_id: str, revision: str, error: str) -> None:
        """The server refused it (e.g. the daily limit): nothing is on the server, a later attempt may send."""
        self._update(hg_repo_id, revision, SubmissionState.REFUSED, error=error)


def match_submission(items: list[WalletSubmission], hg_repo_id: str, revision: str,
                     since: datetime) -> WalletSubmission | None:
    """The wallet item for this repo and revision, if any.

    When the server's items carry revisions the match is exact. Otherwise an item for the same repo submitted
    after ``since`` (minus clock slack) counts: the real API shows only the link and the time.
    """
    if any(item.revision for item in items):
        return next((i for i in items if i.repo_id == hg_repo_id and i.revision == revision), None)
    recent = [i for i in items if i.repo_id == hg_repo_id and i.submitted_at is not None
              and i.submitted_at >= since - RECONCILE_SLACK]
    return max(recent, key=lambda i: i.submitted_at or since) if recent else None


def _may_still_be_processing(exc: FlockError) -> bool:
    """Whether a send that failed may still complete on the server: the client stopped waiting for the answer
    (a read or write timeout), or a gateway answered that it stopped waiting (504). Sending again then could
    submit the revision twice, however long the submission list was watched."""
    if isinstance(exc, FlockServerError):
        return exc.status_code == 504
    return isinstance(exc, FlockTransportError) and exc.cause_type in ("ReadTimeout", "WriteTimeout")


def find_on_server(client: FedLedgerClient, task_id: int, hg_repo_id: str, revision: str,
                   since: datetime) -> WalletSubmission | None:
    """Look the submission up in ``/tasks/wallet-submissions`` (see :func:`match_submission`)."""
    return match_submission(client.wallet_submissions(task_id), hg_repo_id, revision, since)


def submit_once(client: FedLedgerClient, ledger: SubmissionLedger, task_id: int, hg_repo_id: str,
                base_model: str, gpu_type: str, revision: str, *, settle_s: float | None = None) -> SubmissionReceipt:
    """Submit ``hg_repo_id@revision`` to a task unless the ledger or the server shows it was already submitted.

    After a send whose outcome is unknown (timeout, dropped connection, 5xx) the server's list is polled for
    ``settle_s`` seconds (default: the client's timeout), since a request that timed out here may still be
    completing there, and only then is the submission sent again: never within this call after a timeout or a
    504, when the server may still be working on it (the next call checks again and sends if still absent).

    Raises the server's refusal (e.g. :class:`~tools.flock.errors.FlockSubmissionLimitError`) as is, and
    :class:`~tools.flock.errors.FlockSubmissionUncertainError` when the outcome cannot be established; the entry
    then stays ``sending`` and the next call reconciles it before sending anything.
    """
    settle = client.timeout if settle_s is None else settle_s
    with ledger.exclusive():
        return _submit_locked(client, ledger, int(task_id), hg_repo_id, base_model, gpu_type, revision, settle)


def _submit_locked(client: FedLedgerClient, ledger: SubmissionLedger, task_id: int, hg_repo_id: str,
                   base_model: str, gpu_type: str, revision: str, settle: float) -> SubmissionReceipt:
    """:func:`submit_once` under the ledger's lock."""

    def receipt(source: Literal["sent", "ledger", "reconciled"], response: dict[str, Any] | None) -> SubmissionReceipt:
        return SubmissionReceipt(task_id=task_id, hg_repo_id=hg_repo_id, revision=revision, base_model=base_model,
                                 source=source, response=response)

    def reconciled(since: datetime) -> SubmissionReceipt | None:
        found = find_on_server(client, task_id, hg_repo_id, revision, since)
        if found is None:
            return None
        response = found.model_dump(mode="json")
        ledger.mark_sent(hg_repo_id, revision, response)
        logger.info("%s@%s was already on the server (submission %s); not sending again",
                    hg_repo_id, revision, found.id)
        return receipt("reconciled", response)

    existing = ledger.get(hg_repo_id, revision)
    if existing is not None and existing.task_id != task_id:
        raise ValueError(f"{hg_repo_id}@{revision} is in the ledger for task {existing.task_id}, not {task_id}")
    if existing is not None and existing.state == SubmissionState.SENT:
        return receipt("ledger", existing.response)
    if existing is not None and existing.state == SubmissionState.SENDING:
        try:
            done = reconciled(existing.created_at)
        except FlockError as exc:
            raise FlockSubmissionUncertainError(
                f"{hg_repo_id}@{revision} may already be submitted and the server's submission list could not "
                f"be read ({exc}); not sending again until it can be checked") from exc
        if done is not None:
            return done
        ledger.mark_refused(hg_repo_id, revision, "not found on the server after an interrupted send")

    entry = ledger.mark_sending(task_id, hg_repo_id, revision, base_model, gpu_type)
    last: FlockError | None = None
    for attempt in range(1, client.retry.max_attempts + 1):
        try:
            response = client.submit_result(task_id, hg_repo_id, base_model, gpu_type, revision)
        except (FlockServerError, FlockTransportError) as exc:
            # The request may have been processed before the failure: check before sending again.
            last = exc
            logger.warning("submit %s@%s attempt %d: %s; checking the server before retrying",
                           hg_repo_id, revision, attempt, exc)
            deadline = time.monotonic() + settle
            check = 0
            absent = False  # only a successful look at the server's list that misses it allows a resend
            while True:
                check += 1
                time.sleep(min(client.backoff_seconds(check), max(0.0, deadline - time.monotonic())))
                try:
                    done = reconciled(entry.created_at)
                    absent = True
                except FlockError as check_exc:
                    last, done, absent = check_exc, None, False
                if done is not None:
                    return done
                if time.monotonic() >= deadline:
                    break
            if not absent:
                raise FlockSubmissionUncertainError(
                    f"the submission of {hg_repo_id}@{revision} to task {task_id} may have reached the server "
                    f"({exc}) and its submission list could not be read ({last}); the ledger keeps it as "
                    "'sending' and the next submit_once call checks the server before sending anything") from exc
            if _may_still_be_processing(exc):
                raise FlockSubmissionUncertainError(
                    f"the submission of {hg_repo_id}@{revision} to task {task_id} got no answer ({exc}) and is not "
                    f"in the server's submission list after {settle:g}s, but the server may still be working on it, "
                    "so it is not sent again now; the ledger keeps it as 'sending' and the next submit_once call "
                    "sends it only if the server still does not list it") from exc
            continue
        except FlockAPIError as exc:
            ledger.mark_refused(hg_repo_id, revision, str(exc))
            raise
        ledger.mark_sent(hg_repo_id, revision, response)
        return receipt("sent", response)
    raise FlockSubmissionUncertainError(
        f"could not confirm the submission of {hg_repo_id}@{revision} to task {task_id} after "
        f"{client.retry.max_attempts} attempts (last error: {last}); the ledger keeps it as 'sending' and the next "
        "submit_once call reconciles it with the server before sending anything") from last


__all__ = [
    "LEDGER_FILE",
    "LedgerEntry",
    "SubmissionLedger",
    "SubmissionReceipt",
    "SubmissionState",
    "find_on_server",
    "match_submission",
    "submit_once",
]
