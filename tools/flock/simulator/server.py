"""Run the simulator in-process: uvicorn in a background thread on a free loopback port (tools/threaded_server.py).

``SimulatorServer`` is what the agent embeds by default and what tests use: it serves the given task folders
(default: the bundled demo task), creates a staked node key and a validator key, and runs the simulator's own
validator on demand (:meth:`validate_pending`) or in a background loop.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.flock.client import FedLedgerClient, RetryPolicy
from tools.flock.simulator.app import API_PREFIX, create_app
from tools.flock.simulator.faults import FaultPlan, FaultRule
from tools.flock.simulator.store import Clock, SimulatorConfig, SimulatorStore, utc_now
from tools.flock.simulator.tasks import DEMO_TASK_DIR, load_task_folders
from tools.flock.simulator.validator import Scorer, SimulatorValidator, ValidationOutcome
from tools.publish import LocalPublisher
from tools.threaded_server import ThreadedServer

logger = logging.getLogger(__name__)


class SimulatorServer:
    """A running simulator. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    ``state_path`` (SQLite) and ``publisher_root`` default to a temporary folder removed on stop; pass paths to
    keep state across restarts. ``base_model_paths`` maps a Hub id to a local folder or GGUF holding its weights
    (offline scoring; the adapter still names the Hub id, as validators require). ``config`` defaults to the
    spec's rules except that the validator may take assignments back to back (``assignment_interval_s=0``), so
    local validation is immediate.

    Keys: ``node_api_key`` (a staked training node), ``validator_api_key`` (for validators run outside, e.g. FLock's
    own), and the built-in validator's own key, so the two never share a lookup rate limit.
    """

    def __init__(
        self,
        task_dirs: Sequence[str | Path] | None = None,
        *,
        state_path: str | Path | None = None,
        publisher_root: str | Path | None = None,
        config: SimulatorConfig | None = None,
        clock: Clock = utc_now,
        scorer: Scorer | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        validate_every_s: float | None = None,
        admin_token: str | None = None,
        base_model_paths: dict[str, str | Path] | None = None,
        faults: Sequence[FaultRule] = (),
    ):
        self._tmp = Path(tempfile.mkdtemp(prefix="flock-sim-")) if state_path is None or publisher_root is None \
            else None
        base = self._tmp or Path(".")
        self.state_path = Path(state_path) if state_path is not None else base / "state.sqlite"
        self.publisher = LocalPublisher(publisher_root if publisher_root is not None else base / "publisher")
        self.store = SimulatorStore(self.state_path, config or SimulatorConfig(assignment_interval_s=0), clock)
        for folder in load_task_folders([Path(d) for d in (task_dirs or [DEMO_TASK_DIR])]):
            self.store.register_task(folder)
        self.faults = FaultPlan()
        self.faults.add(*faults)
        self.admin_token = admin_token or secrets.token_urlsafe(16)
        self.app = create_app(self.store, self.faults, self.admin_token)
        self.node_api_key, self.node_wallet = self.store.create_api_key(
            "node", label="default-node", api_key=self.store.default_api_key("default-node"))
        #: For a validator outside this process (printed by ``flock-sim serve``); the built-in validator has a
        #: wallet of its own, so its assignments never count against this key's lookup rate limit.
        self.validator_api_key, self.validator_wallet = self.store.create_api_key(
            "validator", label="default-validator", api_key=self.store.default_api_key("default-validator"))
        self.builtin_validator_api_key, _ = self.store.create_api_key(
            "validator", label="builtin-validator", api_key=self.store.default_api_key("builtin-validator"))
        self._scorer = scorer
        self.base_model_paths = dict(base_model_paths or {})
        self._host = host
        self._port = port
        self._validate_every_s = validate_every_s
        self._http: ThreadedServer | None = None
        self._validator_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._validate_lock = threading.Lock()
        self.port = 0

    def __repr__(self) -> str:
        return f"SimulatorServer(url={self.url!r}, tasks={self.store.task_ids()})"

    # ----- lifecycle -----------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 15.0) -> SimulatorServer:
        self._http = ThreadedServer(self.app, host=self._host, port=self._port, name="flock-sim",
                                    label="the simulator")
        try:
            self._http.start(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.port = self._http.port
        if self._validate_every_s:
            self._validator_thread = threading.Thread(target=self._validate_loop, name="flock-sim-validator",
                                                      daemon=True)
            self._validator_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.stop()
        if self._validator_thread is not None:
            self._validator_thread.join(timeout=60)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- addresses and keys --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server root (storage and admin routes live here)."""
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The FedLedger API base, as ``FLOCK_API_BASE_URL`` expects it."""
        return self.url + API_PREFIX

    @property
    def task_ids(self) -> list[int]:
        return self.store.task_ids()

    def create_api_key(self, role: str = "node", task_ids: list[int] | None = None) -> str:
        """A fresh key (a new wallet) staked as ``role`` ("node" or "validator") on the tasks (default all)."""
        if role not in ("node", "validator"):
            raise ValueError(f"role must be 'node' or 'validator', got {role!r}")
        key, _ = self.store.create_api_key("node" if role == "node" else "validator", task_ids)
        return key

    def client(self, api_key: str | None = None, **kwargs: Any) -> FedLedgerClient:
        """A FedLedger client for this server (default: the node key)."""
        return FedLedgerClient(self.base_url, api_key or self.node_api_key, **kwargs)

    def add_faults(self, *rules: FaultRule) -> None:
        self.faults.add(*rules)

    # ----- validation ----------------------------------------------------------------------------------------
    def validate_pending(self, task_ids: Sequence[int] | None = None) -> list[ValidationOutcome]:
        """Run the simulator's validator over HTTP until no submission waits (synchronous)."""
        with self._validate_lock, FedLedgerClient(self.base_url, self.builtin_validator_api_key, timeout=60,
                                                  retry=RetryPolicy(max_attempts=3, initial_wait_s=0.2,
                                                                    jitter_s=0.2)) as client:
            validator = SimulatorValidator(client, self.publisher, scorer=self._scorer,
                                           base_model_paths=self.base_model_paths)
            return validator.validate_pending(task_ids or self.task_ids)

    def _validate_loop(self) -> None:
        assert self._validate_every_s
        while not self._stopping.wait(self._validate_every_s):
            try:
                for outcome in self.validate_pending():
                    logger.info("validated %s@%s: %s %s", outcome.hg_repo_id, outcome.revision, outcome.status,
                                outcome.loss if outcome.loss is not None else outcome.reason)
            except Exception:  # the background validator must survive one bad round
                logger.exception("simulator validator round failed")
