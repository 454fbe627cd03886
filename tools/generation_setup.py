"""One generation, assembled from plain settings: the task's strategy, the backend, the quality gates (with the
dedup index carried across iterations) and the request, ready to run with tools.generate.generate.

The agent's toolbox (agent/pipeline/generation.py) and ``synthgen generate`` both build their generation here, so
the two cannot drift apart. A run without a generator model (``writers_only``) completes every draft with the
strategy's deterministic writers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.backends import Backend, BackendError, BackendSpec, Generation, Message, SamplingSettings, make_backend
from tools.data import FlockRecord
from tools.datastore import DataStore
from tools.generate import BatchProgress, Budget, GenerationRequest, GenerationResult, generate
from tools.quality import DedupGate, DedupIndex, GateSuite, LengthGate, default_gates
from tools.tasks.base import Candidate, Draft, GenerationStrategy, Rejection, TaskPlugin


def without_model(inner: GenerationStrategy) -> GenerationStrategy:
    """``inner`` with its model calls removed: every draft is completed by the strategy's deterministic writers.
    The wrapper keeps the inner strategy's name, so provenance reads the same as with a model."""

    class WritersOnly(GenerationStrategy):
        name = inner.name

        def draft(self, category: str, rng: random.Random) -> Draft | Rejection:
            drafted = inner.draft(category, rng)
            if isinstance(drafted, Draft):
                drafted.messages = None
            return drafted

        def complete(self, draft: Draft, model_text: str | None) -> Candidate | Rejection:
            return inner.complete(draft, None)

    return WritersOnly(inner.plugin, inner.seeds)


class NoModelBackend:
    """The backend of a generation without a generator model; never asked for text (see without_model)."""

    model_name = "none"

    def generate(self, batch: Sequence[Sequence[Message]], sampling: SamplingSettings, seed: int) -> list[Generation]:
        raise BackendError("no generator model is configured, but a strategy asked for model text")


@dataclass
class AssembledGeneration:
    """A generation ready to run."""

    request: GenerationRequest
    strategy: GenerationStrategy
    backend: Backend
    gates: GateSuite
    store: DataStore | None = None
    #: Where the dedup gate's index (with this run's accepted rows) is saved after the run, for the next one.
    dedup_index_path: Path | None = None

    def run(self, progress: Callable[[BatchProgress], None] | None = None) -> GenerationResult:
        """Generate (resuming an interrupted run of the same request from the store's journal), then keep the
        dedup index with this run's accepted rows for the next iteration."""
        result = generate(self.request, self.strategy, self.backend, self.gates, store=self.store, progress=progress)
        dedup = next((g for g in self.gates.gates if isinstance(g, DedupGate)), None)
        if dedup is not None and self.dedup_index_path is not None:
            dedup.index.save(self.dedup_index_path)
        return result


def assemble_generation(
    plugin: TaskPlugin,
    targets: Mapping[str, int],
    seed_pool: Sequence[FlockRecord],
    *,
    backend: BackendSpec,
    sampling: SamplingSettings | None = None,
    budget: Budget | None = None,
    seed: int = 0,
    iteration: int = 0,
    batch_size: int = 16,
    existing: Iterable[FlockRecord] = (),
    held_out: Iterable[FlockRecord] = (),
    length: LengthGate | None = None,
    store: DataStore | None = None,
    dedup_index_path: Path | None = None,
    writers_only: bool = False,
    loaded_backend: Backend | None = None,
    strategy_name: str | None = None,
) -> AssembledGeneration:
    """Build a generation of ``targets`` (examples per category) for ``plugin``'s task, anchored on ``seed_pool``.

    ``backend`` names the generator (part of the request's identity, so of the journal's key); ``loaded_backend``
    is an already-built backend for it (e.g. on a model in memory), else one is made from the spec.
    ``batch_size`` is attempts per engine batch. The gates check against ``existing`` rows and the index at
    ``dedup_index_path`` (when it exists) for duplicates, against ``held_out`` rows for contamination, and with
    ``length`` (when given) for the context length. ``writers_only``: no generator model at all.
    ``strategy_name`` picks one of the plugin's strategies (default: its first).
    """
    index = DedupIndex.load(dedup_index_path) if dedup_index_path is not None and dedup_index_path.is_file() \
        else DedupIndex()
    gates = default_gates(plugin, existing=existing, held_out=held_out, dedup_index=index, length=length)
    strategy = plugin.make_strategy(seed_pool, name=strategy_name)
    request = GenerationRequest(
        task=plugin.name, targets=dict(targets), seed_pool=list(seed_pool), backend=backend,
        sampling=sampling or SamplingSettings(), budget=budget or Budget(), seed=seed, iteration=iteration,
        batch_size=batch_size,
    )
    generator: Backend
    if writers_only:
        strategy, generator = without_model(strategy), NoModelBackend()
    else:
        generator = loaded_backend or make_backend(backend)
    return AssembledGeneration(request=request, strategy=strategy, backend=generator, gates=gates, store=store,
                         dedup_index_path=dedup_index_path)
