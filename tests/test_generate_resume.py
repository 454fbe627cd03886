"""A generation killed with SIGKILL at a random point resumes to byte-identical accepted rows."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parent.parent
CHILD = r'''
import sys
from pathlib import Path
from tools.backends import BackendSpec, LocalBackend, SamplingSettings
from tools.data import load_jsonl, write_jsonl
from tools.datastore import DataStore
from tools.generate import GenerationRequest, generate
from tools.quality import default_gates
from tools.tasks.function_calling.strategy import FunctionCallingStrategy
from tools.tasks.function_calling import FunctionCallingPlugin

import time

model_dir, store_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
seeds = load_jsonl(Path("tools/demo_tasks/function_calling/training_set.jsonl")).records
request = GenerationRequest(
    task="function_calling", targets={"single_call": 3, "multi_call": 2, "no_call": 3}, seed_pool=seeds[:120],
    backend=BackendSpec(model=model_dir, batch_size=8, precision="float32"),
    sampling=SamplingSettings(temperature=0.8, max_new_tokens=4), seed=11, iteration=0, batch_size=2)
plugin = FunctionCallingPlugin()
gates = default_gates(plugin, existing=seeds[:120], held_out=seeds[120:])
backend = LocalBackend.from_pretrained(model_dir, batch_size=8, precision="float32")

def report(progress):
    print(f"batch {progress.batch}", flush=True)
    if store_dir != "-":
        time.sleep(1.0)  # the victim must still be running when the kill lands, however fast the machine

result = generate(request, FunctionCallingStrategy(plugin, request.seed_pool), backend, gates,
                  store=DataStore(store_dir) if store_dir != "-" else None, progress=report)
write_jsonl(result.records(), out)
print(f"done resumed={result.resumed_batches} batches={result.batches}", flush=True)
'''


def child(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_mid_generation_then_resume_gives_identical_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    reference = child(str(tiny_model_dir), "-", str(tmp_path / "reference.jsonl"))
    out, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err[-2000:]
    store = tmp_path / "store"

    victim = child(str(tiny_model_dir), str(store), str(tmp_path / "never.jsonl"))
    assert victim.stdout is not None
    line = victim.stdout.readline()  # the first batch is journaled; kill somewhere in the next ones
    assert line.startswith("batch 0"), victim.stderr.read() if victim.stderr else ""
    time.sleep(random.Random(20261128).uniform(0.0, 1.5))
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "never.jsonl").exists()

    resumed = child(str(tiny_model_dir), str(store), str(tmp_path / "resumed.jsonl"))
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("done resumed=") and not summary.startswith("done resumed=0 ")
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
    assert (tmp_path / "resumed.jsonl").stat().st_size > 0
    assert not list(store.rglob("*.tmp"))  # a write cut short by the kill leaves nothing behind after resume
