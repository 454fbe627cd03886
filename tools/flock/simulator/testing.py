"""Helpers for tests and local runs against the simulator: fast retries, task folders, a manual clock, adapters."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.flock.client import FedLedgerClient, RetryPolicy
from tools.flock.simulator.store import utc_now
from tools.flock.simulator.tasks import DEMO_TASK_DIR, TASK_FILE

if TYPE_CHECKING:
    from tools.flock.simulator.server import SimulatorServer

#: Retries that finish in tens of milliseconds, for tests that inject faults.
FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait_s=0.01, max_wait_s=0.05, jitter_s=0.01,
                         max_retry_after_s=5.0)


@contextmanager
def fresh_node_client(sim: SimulatorServer) -> Iterator[FedLedgerClient]:
    """A client with a new staked wallet, so daily limits and submissions never leak between tests; the
    simulator's faults are cleared before and after."""
    sim.faults.clear()
    with FedLedgerClient(sim.base_url, sim.create_api_key("node"), timeout=2.0, retry=FAST_RETRY) as client:
        yield client
    sim.faults.clear()


class ManualClock:
    """A clock for ``SimulatorServer(clock=...)`` that moves only when told to."""

    def __init__(self, start: datetime | None = None):
        self.now = start or utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def write_task_folder(dest: str | Path, *, task_id: int = 7, source: str | Path = DEMO_TASK_DIR,
                      data: dict[str, Any] | None = None, **fields: Any) -> Path:
    """A task folder at ``dest`` with the source folder's JSONL files and a task.json (``data`` overrides)."""
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("training_set.jsonl", "validation_set.jsonl"):
        shutil.copyfile(Path(source) / name, folder / name)
    task_data: dict[str, Any] = {"training_set_key": "training_set.jsonl",
                                 "validation_set_key": "validation_set.jsonl",
                                 "max_params": 1_000_000_000, "context_length": 1024}
    task_data.update(data or {})
    task = {"id": task_id, "title": f"Test task {task_id}", "description": "<p>test</p>",
            "task_type": "training", "data": task_data, **fields}
    (folder / TASK_FILE).write_text(json.dumps(task, indent=1))
    return folder


def make_lora_adapter(base_model_dir: str | Path, dest: str | Path, *, seed: int = 0, rank: int = 4,
                      base_model_name_or_path: str | None = None) -> Path:
    """Save a LoRA adapter with random (non-zero) weights on ``base_model_dir``; seeds give distinct adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_model_dir))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM",
                        init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    out = Path(dest)
    peft_model.save_pretrained(str(out))
    if base_model_name_or_path is not None:
        config_path = out / "adapter_config.json"
        adapter_config = json.loads(config_path.read_text())
        adapter_config["base_model_name_or_path"] = base_model_name_or_path
        config_path.write_text(json.dumps(adapter_config, indent=2))
    return out
