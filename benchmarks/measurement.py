"""What every speed benchmark records beside its figures: alternating timed rounds, machine load, the measured
matmul peak and the software versions.

On a shared machine the load changes while a benchmark runs, so a baseline and a candidate are timed in the same
process, alternating (round 1: a then b, round 2: b then a, ...), and ratios are taken of the medians. Load
averages are sampled every few seconds through the whole run and written with the figures.
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timed:
    """One timed call: wall seconds, CPU seconds of this process (all threads) and what the call returned."""

    seconds: float
    cpu_seconds: float
    result: Any = None


def timed(fn: Callable[[], Any]) -> Timed:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return Timed(time.perf_counter() - wall, time.process_time() - cpu, result)


def alternating_rounds(candidates: dict[str, Callable[[], Any]], rounds: int,
                       report: Callable[[int, str, Timed], None] | None = None) -> dict[str, list[Timed]]:
    """Run each candidate once per round, the order reversed every other round; returns each one's timings."""
    names = list(candidates)
    out: dict[str, list[Timed]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            result = timed(candidates[name])
            out[name].append(result)
            if report is not None:
                report(index, name, result)
    return out


def median_seconds(timings: Sequence[Timed]) -> float:
    return statistics.median(t.seconds for t in timings)


@dataclass
class LoadSamples:
    """1-minute load averages sampled every ``interval_s`` seconds (and the CPU count they compare with)."""

    interval_s: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since start, 1-minute load average)"""

    def summary(self) -> dict[str, Any]:
        loads = [load for _, load in self.samples]
        return {"cpus": os.cpu_count(), "interval_s": self.interval_s, "count": len(loads),
                "min": round(min(loads), 2) if loads else None,
                "median": round(statistics.median(loads), 2) if loads else None,
                "max": round(max(loads), 2) if loads else None,
                "samples": [[round(t, 1), round(load, 2)] for t, load in self.samples]}


@contextmanager
def sample_load(interval_s: float = 10.0) -> Iterator[LoadSamples]:
    """Sample the machine's load average in a background thread for the duration of the block."""
    samples = LoadSamples(interval_s)
    start = time.perf_counter()
    stop = threading.Event()

    def run() -> None:
        while True:
            samples.samples.append((time.perf_counter() - start, os.getloadavg()[0]))
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=run, name="load-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.samples.append((time.perf_counter() - start, os.getloadavg()[0]))


def matmul_peak_gflops(dtype_name: str, n: int = 1024, seconds: float = 2.0) -> float:
    """Best sustained ``n x n`` matmul rate in GFLOP/s over short bursts, at the current torch thread count."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return round(best, 1)


def environment() -> dict[str, Any]:
    """Versions, CPU and thread settings, for the results file."""
    import torch
    import transformers

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cpu": cpu, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def machine_record(load: LoadSamples, peak_seconds: float = 2.0) -> dict[str, Any]:
    """The results file's ``machine`` entry: environment, the measured matmul peaks and the load samples."""
    return {**environment(),
            "matmul_peak_gflops": {"float32": matmul_peak_gflops("float32", seconds=peak_seconds),
                                   "bfloat16": matmul_peak_gflops("bfloat16", seconds=peak_seconds)},
            "load": load.summary()}


__all__ = ["LoadSamples", "Timed", "alternating_rounds", "environment", "machine_record", "matmul_peak_gflops",
           "median_seconds", "sample_load", "timed"]
