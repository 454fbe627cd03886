"""The FLock simulator's state: tasks, staked API keys, submissions, validation assignments, download links.

Everything lives in one SQLite file (WAL), so a restarted simulator loses nothing. Each operation opens its own
connection; writes run in ``BEGIN IMMEDIATE`` transactions, so check-then-insert rules (two submissions a day,
one assignment lookup per interval) hold exactly under concurrent clients and across processes.

Refusals raise :class:`Refusal` with the HTTP status and the ``detail`` text the API sends (FLOCK_API.md
section 4; exact strings where the spec gives them, [INF] status codes otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import sqlite3
import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.flock.errors import (
    ASSIGNMENT_RATE_LIMIT_DETAIL,
    NO_SUBMISSIONS_DETAIL,
    NOT_VALIDATING_DETAIL,
    SUBMISSION_LIMIT_DETAIL,
)
from tools.flock.simulator.tasks import OBJECT_KINDS, TaskFolder
from tools.sqlite import connect, transaction

Role = Literal["node", "validator"]
NOT_ACCEPTED_NOTE = ("scored by the simulator only: FLock's validators would mark this submission failed, since its "
                     "adapter's base model is not in their SUPPORTED_BASE_MODELS")
Clock = Callable[[], datetime]
ROLE_NAMES = {"node": "a training node", "validator": "a validator"}


def utc_now() -> datetime:
    """Naive UTC, the form FLock's timestamps take."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


class SimulatorConfig(BaseModel):
    """Rules of the simulated network. Defaults follow the spec; tests shorten the waits."""

    model_config = ConfigDict(frozen=True)

    link_ttl_s: float = Field(3600.0, gt=0, description="lifetime of presigned download links (S3: 1 h)")
    assignment_interval_s: float = Field(180.0, ge=0, description="min seconds between a validator's assignments")
    submissions_per_day: int = Field(2, ge=1, description="per wallet, task and UTC day")
    validations_per_submission: int = Field(1, ge=1, description="validator results that make a score")
    assignment_timeout_s: float = Field(3600.0, gt=0, description="a validating assignment older than this lapses")
    submission_phase_s: int = Field(7 * 86400, gt=0, description="when task.json gives no duration")
    final_validation_s: int = Field(2 * 86400, ge=0, description="final-validation phase after submissions end")


class Refusal(Exception):
    """An API refusal: HTTP status, the ``detail`` text and extra headers (Retry-After)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"HTTP {status}: {detail}")


def _wallet_of(api_key: str) -> str:
    return "0x" + hashlib.sha256(b"wallet:" + api_key.encode()).hexdigest()[:40]


def _key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY, directory TEXT NOT NULL, task_json TEXT NOT NULL,
    initialized_at TEXT NOT NULL, submission_phase_ends_at TEXT NOT NULL, final_validation_ends_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, wallet TEXT NOT NULL UNIQUE, label TEXT,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stakes (wallet TEXT NOT NULL, task_id INTEGER NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY (wallet, task_id));
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task_id INTEGER NOT NULL, wallet TEXT NOT NULL,
    hg_repo_id TEXT NOT NULL, base_model TEXT, gpu_type TEXT, revision TEXT, data_json TEXT NOT NULL,
    submitted_at TEXT NOT NULL, day TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS submissions_by_wallet_day ON submissions (wallet, task_id, day);
CREATE TABLE IF NOT EXISTS assignments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, submission_id INTEGER NOT NULL, task_id INTEGER NOT NULL,
    validator_wallet TEXT NOT NULL, status TEXT NOT NULL, assigned_at TEXT NOT NULL, finished_at TEXT,
    loss REAL, result_json TEXT);
CREATE INDEX IF NOT EXISTS assignments_by_submission ON assignments (submission_id);
"""


class SimulatorStore:
    """All simulator state and rules, over one SQLite file."""

    def __init__(self, path: str | Path, config: SimulatorConfig | None = None, clock: Clock = utc_now):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.config = config or SimulatorConfig()
        self.clock = clock
        with closing(self._open()) as db:
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('link_secret', ?)", (secrets.token_hex(32),))
            db.commit()
        self._folders: dict[int, TaskFolder] = {}

    # ----- connections ---------------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        return connect(self.path, timeout_s=60, synchronous="NORMAL")

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path, timeout_s=60, synchronous="NORMAL")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self.path, timeout_s=60, synchronous="NORMAL", write=False)

    # ----- tasks ---------------------------------------------------------------------------------------------
    def register_task(self, folder: TaskFolder) -> None:
        """Serve a task folder. A task seen before keeps its timestamps (and so its phase) across restarts."""
        raw = folder.task_json
        now = self.clock()
        initialized = _parse_time(raw.get("initialized_at")) or now
        duration = int(raw.get("duration_in_seconds") or self.config.submission_phase_s)
        submission_end = _parse_time(raw.get("submission_phase_ends_at")) or initialized + timedelta(seconds=duration)
        final_end = _parse_time(raw.get("final_validation_ends_at")) or \
            submission_end + timedelta(seconds=self.config.final_validation_s)
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO tasks VALUES (?,?,?,?,?,?)",
                       (folder.id, str(folder.directory), json.dumps(raw), iso(initialized), iso(submission_end),
                        iso(final_end)))
            db.execute("UPDATE tasks SET directory=?, task_json=? WHERE id=?",
                       (str(folder.directory), json.dumps(raw), folder.id))
        self._folders[folder.id] = folder

    def task_ids(self) -> list[int]:
        return sorted(self._folders)

    def folder(self, task_id: int) -> TaskFolder:
        try:
            return self._folders[task_id]
        except KeyError:
            raise Refusal(404, "Task not found") from None

    def set_phase_deadlines(self, task_id: int, submission_phase_ends_at: datetime,
                            final_validation_ends_at: datetime) -> None:
        self.folder(task_id)
        with self._write() as db:
            db.execute("UPDATE tasks SET submission_phase_ends_at=?, final_validation_ends_at=? WHERE id=?",
                       (iso(submission_phase_ends_at), iso(final_validation_ends_at), task_id))

    def _task_row(self, db: sqlite3.Connection, task_id: int) -> sqlite3.Row:
        self.folder(task_id)
        row = db.execute("SELECT * FROM tasks WHERE id=?", (task_id,)).fetchone()
        if row is None:
            raise Refusal(404, "Task not found")
        return row

    def _status(self, row: sqlite3.Row, now: datetime) -> str:
        if now < datetime.fromisoformat(row["submission_phase_ends_at"]):
            return "submission_phase"
        if now < datetime.fromisoformat(row["final_validation_ends_at"]):
            return "final_validation"
        return "finalized"

    def task_object(self, task_id: int, *, link_base: str | None) -> dict[str, Any]:
        """The section-5 task object. With ``link_base`` (``/tasks/get``): a presigned training-set URL in place
        of the storage keys; without (``/tasks/list``): the raw keys."""
        with self._read() as db:
            row = self._task_row(db, task_id)
        raw = json.loads(row["task_json"])
        data = dict(raw.get("data") or {})
        if link_base is not None:
            data = {k: v for k, v in data.items() if not k.endswith("_key")}
            data = {"training_set_url": self.sign_link(link_base, task_id, "training_set"), **data}
        now = self.clock()
        initialized = datetime.fromisoformat(row["initialized_at"])
        submission_end = datetime.fromisoformat(row["submission_phase_ends_at"])
        return {
            "title": raw.get("title", f"Task {task_id}"),
            "description": raw.get("description", ""),
            "task_type": raw.get("task_type", "training"),
            "data": data,
            "duration_in_seconds": int((submission_end - initialized).total_seconds()),
            "id": task_id,
            "status": self._status(row, now),
            "initialized_at": row["initialized_at"],
            "submission_phase_ends_at": row["submission_phase_ends_at"],
            "final_validation_ends_at": row["final_validation_ends_at"],
            "final_link": self._final_link(task_id) if self._status(row, now) == "finalized" else None,
        }

    def list_tasks(self, status: str | None) -> list[dict[str, Any]]:
        tasks = [self.task_object(task_id, link_base=None) for task_id in self.task_ids()]
        return [t for t in tasks if status is None or t["status"] == status]

    def _final_link(self, task_id: int) -> str | None:
        board = self.leaderboard(task_id, 1, 1)["items"]
        return f"https://huggingface.co/{board[0]['hg_repo_id']}" if board else None

    # ----- presigned links -----------------------------------------------------------------------------------
    def _secret(self) -> bytes:
        with self._read() as db:
            return bytes.fromhex(db.execute("SELECT value FROM meta WHERE key='link_secret'").fetchone()[0])

    def _signature(self, task_id: int, kind: str, expires: int) -> str:
        return hmac.new(self._secret(), f"{task_id}/{kind}:{expires}".encode(), hashlib.sha256).hexdigest()

    def sign_link(self, link_base: str, task_id: int, kind: str) -> str:
        expires = int(epoch(self.clock()) + self.config.link_ttl_s)
        signature = self._signature(task_id, kind, expires)
        return (f"{link_base.rstrip('/')}/storage/{task_id}/{kind}.jsonl"
                f"?X-Flock-Expires={expires}&X-Flock-Signature={signature}")

    def open_link(self, task_id: int, kind: str, expires: str | None, signature: str | None) -> Path:
        """The file a presigned link names, or a 403 like S3's for a bad or expired signature."""
        if kind not in OBJECT_KINDS or task_id not in self._folders:
            raise Refusal(404, "NoSuchKey: The specified key does not exist.")
        if not expires or not signature or not expires.isdigit():
            raise Refusal(403, "AccessDenied: Query-string authentication requires the signature and expiry")
        if not hmac.compare_digest(self._signature(task_id, kind, int(expires)), signature):
            raise Refusal(403, "SignatureDoesNotMatch: The request signature we calculated does not match")
        if epoch(self.clock()) > int(expires):
            raise Refusal(403, "AccessDenied: Request has expired")
        path = self._folders[task_id].files.get(kind)
        if path is None:
            raise Refusal(404, "NoSuchKey: The specified key does not exist.")
        return path

    # ----- keys and stakes -----------------------------------------------------------------------------------
    def default_api_key(self, label: str) -> str:
        """A key derived from this simulator's own secret: the same state gives the same default keys (and so the
        same wallets) after a restart, so a resumed client still sees its earlier submissions."""
        digest = hmac.new(self._secret(), f"default-key:{label}".encode(), hashlib.sha256).hexdigest()
        return "flk_" + digest[:32]

    def create_api_key(self, role: Role, task_ids: list[int] | None = None, *, label: str | None = None,
                       api_key: str | None = None) -> tuple[str, str]:
        """Register an API key staked as ``role`` on the tasks (default: all served). Returns (key, wallet)."""
        key = api_key or "flk_" + secrets.token_urlsafe(24)
        wallet = _wallet_of(key)
        tasks = self.task_ids() if task_ids is None else task_ids
        for task_id in tasks:
            self.folder(task_id)
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO api_keys VALUES (?,?,?,?)", (_key_hash(key), wallet, label,
                                                                           iso(self.clock())))
            for task_id in tasks:
                held = db.execute("SELECT role FROM stakes WHERE wallet=? AND task_id=?",
                                  (wallet, task_id)).fetchone()
                if held and held["role"] != role:
                    raise ValueError(f"wallet {wallet} is already staked on task {task_id} as {held['role']}; "
                                     "a wallet stakes on a task as exactly one role")
                db.execute("INSERT OR IGNORE INTO stakes VALUES (?,?,?)", (wallet, task_id, role))
        return key, wallet

    def _wallet(self, db: sqlite3.Connection, api_key: str | None) -> str:
        if not api_key:
            raise Refusal(401, "Missing flock-api-key header")
        row = db.execute("SELECT wallet FROM api_keys WHERE key_hash=?", (_key_hash(api_key),)).fetchone()
        if row is None:
            raise Refusal(401, "Invalid API key")
        return str(row["wallet"])

    def wallet_for(self, api_key: str | None) -> str:
        with self._read() as db:
            return self._wallet(db, api_key)

    def _require_stake(self, db: sqlite3.Connection, wallet: str, task_id: int, role: Role) -> None:
        row = db.execute("SELECT role FROM stakes WHERE wallet=? AND task_id=?", (wallet, task_id)).fetchone()
        if row is None or row["role"] != role:
            raise Refusal(403, f"API key is not staked as {ROLE_NAMES[role]} on task {task_id}")

    # ----- training nodes ------------------------------------------------------------------------------------
    def submit(self, api_key: str | None, task_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """``submit-result``: checks stake, phase and the daily limit, then records the submission."""
        now = self.clock()
        with self._write() as db:
            wallet = self._wallet(db, api_key)
            row = self._task_row(db, task_id)
            self._require_stake(db, wallet, task_id, "node")
            status = self._status(row, now)
            if status != "submission_phase":
                raise Refusal(400, f"Task {task_id} is not in submission phase (status: {status})")
            day = now.date().isoformat()
            (used,) = db.execute("SELECT COUNT(*) FROM submissions WHERE wallet=? AND task_id=? AND day=?",
                                 (wallet, task_id, day)).fetchone()
            if used >= self.config.submissions_per_day:
                midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
                raise Refusal(429, SUBMISSION_LIMIT_DETAIL,
                              {"Retry-After": str(math.ceil((midnight - now).total_seconds()))})
            cursor = db.execute(
                "INSERT INTO submissions (task_id, wallet, hg_repo_id, base_model, gpu_type, revision, data_json,"
                " submitted_at, day) VALUES (?,?,?,?,?,?,?,?,?)",
                (task_id, wallet, data["hg_repo_id"], data.get("base_model"), data.get("gpu_type"),
                 data.get("revision"), json.dumps(data), iso(now), day))
            submission_id = cursor.lastrowid
        return {"id": submission_id, "task_id": task_id, "data": data, "submitted_at": iso(now)}

    def _scores(self, db: sqlite3.Connection, submission_ids: list[int]) -> dict[int, dict[str, Any]]:
        """Per submission: the median completed loss (the score), its validation state, and whether FLock's own
        validators would accept it (None until a validator that knows has said so)."""
        out: dict[int, dict[str, Any]] = {}
        for sid in submission_ids:
            rows = db.execute("SELECT status, loss, result_json FROM assignments WHERE submission_id=?",
                              (sid,)).fetchall()
            losses = [r["loss"] for r in rows if r["status"] == "completed"]
            verdicts = [json.loads(r["result_json"]).get("accepted_by_flock_validators")
                        for r in rows if r["status"] == "completed" and r["result_json"]]
            known = [v for v in verdicts if isinstance(v, bool)]
            closed = sum(1 for r in rows if r["status"] in ("completed", "failed"))
            if closed >= self.config.validations_per_submission:  # no longer offered to validators
                state = "validated" if losses else "failed"
            elif any(r["status"] == "validating" for r in rows):
                state = "validating"
            else:
                state = "pending"
            out[sid] = {"score": statistics.median(losses) if losses else None, "validation_status": state,
                        "validations": len(losses), "accepted": all(known) if known else None}
        return out

    def _submission_item(self, row: sqlite3.Row, score: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"], "task_id": row["task_id"], "wallet": row["wallet"],
            "link": f"https://huggingface.co/{row['hg_repo_id']}",
            "hg_repo_id": row["hg_repo_id"], "revision": row["revision"], "base_model": row["base_model"],
            "gpu_type": row["gpu_type"], "submitted_at": row["submitted_at"],
            "submission_phase_score": score["score"], "final_validation_score": None,
            "validation_status": score["validation_status"],
            # A simulator extension: False when the score exists only here (FLOCK_API.md 10.2).
            "accepted_by_flock_validators": score["accepted"],
            **({"note": NOT_ACCEPTED_NOTE} if score["accepted"] is False else {}),
        }

    def wallet_submissions(self, api_key: str | None, task_id: int, page: int, size: int) -> dict[str, Any]:
        with self._read() as db:
            wallet = self._wallet(db, api_key)
            self._task_row(db, task_id)
            rows = db.execute("SELECT * FROM submissions WHERE wallet=? AND task_id=? ORDER BY id DESC",
                              (wallet, task_id)).fetchall()
            scores = self._scores(db, [r["id"] for r in rows])
        items = [self._submission_item(r, scores[r["id"]]) for r in rows]
        return _paginate(items, page, size)

    def submissions(self, task_id: int | None = None) -> list[dict[str, Any]]:
        """Every submission (for tests and the admin view), oldest first."""
        with self._read() as db:
            rows = db.execute("SELECT * FROM submissions WHERE ?1 IS NULL OR task_id=?1 ORDER BY id",
                              (task_id,)).fetchall()
            scores = self._scores(db, [r["id"] for r in rows])
        return [self._submission_item(r, scores[r["id"]]) for r in rows]

    def leaderboard(self, task_id: int, page: int, size: int) -> dict[str, Any]:
        """``/stats/models``: each wallet's best scored submission, ranked by score ascending (lower is better)."""
        best: dict[str, dict[str, Any]] = {}
        for item in self.submissions(task_id):
            score = item["submission_phase_score"]
            if score is None:
                continue
            held = best.get(item["wallet"])
            if held is None or score < held["submission_phase_score"]:
                best[item["wallet"]] = item
        ranked = sorted(best.values(), key=lambda i: (i["submission_phase_score"], i["submitted_at"]))
        items = [{"wallet": i["wallet"], "rank": n, "task_id": task_id,
                  "submission_phase_score": i["submission_phase_score"], "final_validation_score": None,
                  "hg_repo_id": i["hg_repo_id"], "revision": i["revision"], "submitted_at": i["submitted_at"],
                  "finalized_at": None, "accepted_by_flock_validators": i["accepted_by_flock_validators"]}
                 for n, i in enumerate(ranked, start=1)]
        return _paginate(items, page, size)

    # ----- validators ----------------------------------------------------------------------------------------
    def request_assignment(self, api_key: str | None, task_id: int, link_base: str) -> dict[str, Any]:
        """Hand the oldest submission this validator has not seen, as the section-6 assignment object."""
        now = self.clock()
        with self._write() as db:
            wallet = self._wallet(db, api_key)
            row = self._task_row(db, task_id)
            self._require_stake(db, wallet, task_id, "validator")
            lapse = iso(now - timedelta(seconds=self.config.assignment_timeout_s))
            db.execute("UPDATE assignments SET status='expired', finished_at=? "
                       "WHERE status='validating' AND assigned_at < ?", (iso(now), lapse))
            last = db.execute("SELECT MAX(assigned_at) FROM assignments WHERE validator_wallet=? AND task_id=?",
                              (wallet, task_id)).fetchone()[0]
            if last is not None:
                waited = (now - datetime.fromisoformat(last)).total_seconds()
                if waited < self.config.assignment_interval_s:
                    raise Refusal(429, ASSIGNMENT_RATE_LIMIT_DETAIL,
                                  {"Retry-After": str(math.ceil(self.config.assignment_interval_s - waited))})
            if self._status(row, now) == "finalized":
                raise Refusal(400, NO_SUBMISSIONS_DETAIL)
            candidate = db.execute(
                """SELECT s.* FROM submissions s WHERE s.task_id=? AND s.wallet != ?
                   AND (SELECT COUNT(*) FROM assignments a WHERE a.submission_id=s.id
                        AND a.status IN ('validating','completed','failed')) < ?
                   AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.submission_id=s.id AND a.validator_wallet=?)
                   ORDER BY s.id LIMIT 1""",
                (task_id, wallet, self.config.validations_per_submission, wallet)).fetchone()
            if candidate is None:
                raise Refusal(400, NO_SUBMISSIONS_DETAIL)
            cursor = db.execute("INSERT INTO assignments (submission_id, task_id, validator_wallet, status,"
                                " assigned_at) VALUES (?,?,?,?,?)",
                                (candidate["id"], task_id, wallet, "validating", iso(now)))
            assignment_id = cursor.lastrowid
        task_data = json.loads(row["task_json"]).get("data") or {}
        submission_data = json.loads(candidate["data_json"])
        return {
            "id": assignment_id,
            "task_submission": {"task_id": task_id, "data": submission_data, "id": candidate["id"]},
            "assigned_at": iso(now),
            "status": "validating",
            "data": {"base_model": submission_data.get("base_model"),
                     "context_length": task_data.get("context_length"),
                     "max_params": task_data.get("max_params"),
                     "validation_set_url": self.sign_link(link_base, task_id, "validation_set")},
        }

    def update_assignment(self, api_key: str | None, assignment_id: int, status: str,
                          data: dict[str, Any] | None) -> dict[str, Any]:
        now = self.clock()
        with self._write() as db:
            wallet = self._wallet(db, api_key)
            row = db.execute("SELECT * FROM assignments WHERE id=?", (assignment_id,)).fetchone()
            if row is None:
                raise Refusal(404, "Validation assignment not found")
            if row["validator_wallet"] != wallet:
                raise Refusal(403, "Validation assignment belongs to another validator")
            lapsed = (now - datetime.fromisoformat(row["assigned_at"])).total_seconds() > \
                self.config.assignment_timeout_s
            if row["status"] != "validating" or lapsed:
                raise Refusal(400, NOT_VALIDATING_DETAIL)
            loss: float | None = None
            if status == "completed":
                value = (data or {}).get("loss")
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise Refusal(400, f"data.loss must be a finite number, got {value!r}")
                loss = float(value)
            db.execute("UPDATE assignments SET status=?, finished_at=?, loss=?, result_json=? WHERE id=?",
                       (status, iso(now), loss, json.dumps(data) if data is not None else None, assignment_id))
        return {"id": assignment_id, "status": status, "loss": loss}


def _paginate(items: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
    start = (page - 1) * size
    return {"items": items[start:start + size], "total": len(items), "page": page, "size": size,
            "pages": math.ceil(len(items) / size) if items else 0}


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
