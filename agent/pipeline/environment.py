"""Where a run's task lives: the live FedLedger API, or the in-process FLock simulator for local tasks, with the
publisher its submissions go through."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agent.config import RunConfig
from agent.trace import Redactor
from memory.runs import RunPaths
from tools.demo_tasks import DEMO_TASKS
from tools.flock.client import FedLedgerClient, RetryPolicy
from tools.flock.simulator.faults import FaultRule
from tools.flock.simulator.server import SimulatorServer
from tools.publish import HubPublisher, LocalPublisher, Publisher

#: Fault rules (a JSON list of :class:`tools.flock.simulator.faults.FaultRule` objects) injected into the
#: in-process simulator of a local run, for reliability tests; off unless set, refused with the live API.
SIM_FAULTS_ENV = "SYNTHGEN_SIM_FAULTS"


class PipelineError(RuntimeError):
    """A stage failed in a way the user must fix (bad task, refused model, unreachable endpoint)."""


@dataclass
class TaskEnvironment:
    """A FedLedger client, the publisher adapters go through, and for local tasks the simulator and its folder."""

    client: FedLedgerClient
    publisher: Publisher
    task_id: int
    simulator: SimulatorServer | None = None
    task_dir: Path | None = None

    @property
    def local(self) -> bool:
        return self.simulator is not None

    @property
    def validation_file(self) -> Path | None:
        """The held-back file a local task's simulator validates submissions on (None for the live API)."""
        if self.task_dir is None:
            return None
        task_json = json.loads((self.task_dir / "task.json").read_text(encoding="utf-8"))
        key = task_json.get("data", {}).get("validation_set_key", "validation_set.jsonl")
        return self.task_dir / Path(key).name


def simulator_faults() -> list[FaultRule]:
    """The fault rules named by ``$SYNTHGEN_SIM_FAULTS`` (none when unset)."""
    raw = os.environ.get(SIM_FAULTS_ENV, "").strip()
    if not raw:
        return []
    try:
        return TypeAdapter(list[FaultRule]).validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PipelineError(f"${SIM_FAULTS_ENV}: {where}: {first['msg']}") from None


def local_adapter_store(paths: RunPaths) -> Path:
    """The folder a local task's adapters are published to (``<repo owner>/<repo name>/<revision>/``), inside the
    simulator's folder of the run."""
    return paths.root / "flock-sim" / "publisher"


@contextlib.contextmanager
def open_environment(config: RunConfig, paths: RunPaths, redactor: Redactor) -> Iterator[TaskEnvironment]:
    """Start the in-process simulator for local tasks (state kept in the run folder, so a resumed run finds its
    submissions), or connect to the live FedLedger API."""
    settings = config.task
    http: dict[str, Any] = {"timeout": settings.timeout_s,
                            "retry": RetryPolicy(max_attempts=settings.retry_attempts,
                                                 initial_wait_s=settings.retry_wait_s,
                                                 jitter_s=min(1.0, settings.retry_wait_s))}
    faults = simulator_faults()
    if settings.kind == "flock":
        if faults:
            raise PipelineError(f"${SIM_FAULTS_ENV} injects faults into the local simulator only; unset it to run "
                                "against the live FLock API")
        api_key = os.environ.get(settings.api_key_env, "")
        redactor.add(api_key)
        redactor.add(os.environ.get("HF_TOKEN"))
        with FedLedgerClient(settings.api_base_url, api_key, **http) as client:
            yield TaskEnvironment(client=client, publisher=HubPublisher(), task_id=int(settings.task_id or 0))
        return
    task_dir = settings.task_dir if settings.kind == "dir" else DEMO_TASKS[settings.kind]
    assert task_dir is not None
    store = local_adapter_store(paths)
    # The simulator's validator loads the base model like FLock's does, from the Hub id, unless weights are given.
    weights: dict[str, str | Path] | None = (
        {config.base_model: config.base_model_weights} if config.base_model_weights else None)
    server = SimulatorServer([task_dir], state_path=store.parent / "state.sqlite", publisher_root=store,
                             base_model_paths=weights, faults=faults)
    redactor.add(server.node_api_key)
    redactor.add(server.validator_api_key)
    redactor.add(server.builtin_validator_api_key)
    redactor.add(server.admin_token)
    with server, server.client(**http) as client:
        publisher: Publisher = HubPublisher() if config.publishes_to_hub else LocalPublisher(store)
        yield TaskEnvironment(client=client, publisher=publisher, task_id=server.task_ids[0], simulator=server,
                              task_dir=Path(task_dir))
