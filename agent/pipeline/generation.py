"""The generate stage: synthetic rows for per-category targets (assembled by tools.generation_setup), gated, and
stored as the next dataset version. Keyed by targets, iteration and the previous version, so it runs once."""

from __future__ import annotations

from collections import Counter

from agent import progress
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import content_digest, read_result, write_result
from agent.state import DatasetInfo
from agent.toolbox import GenerateOutcome
from tools.backends import Backend, BackendSpec, LocalBackend, SamplingSettings, make_backend
from tools.generate import BatchProgress, Budget, GenerationResult
from tools.generation_setup import assemble_generation
from tools.quality import LengthGate


class Generator:
    def __init__(self, run: PipelineRun):
        self.run = run
        self._backend: Backend | None = None

    def generate(self, targets: dict[str, int], iteration: int, max_generation_tokens: int) -> GenerateOutcome:
        run, versions = self.run, self.run.versions
        previous_name = versions.latest()
        previous = versions.load(previous_name)
        key = content_digest({"targets": targets, "iteration": iteration, "previous": previous_name})
        done = run.paths.data_dir / f"generate-{iteration}-{key}.json"
        stored = read_result(done, GenerateOutcome)
        if stored is not None:
            return stored
        plugin, info, settings = run.task.plugin, run.task.info, run.config.generator
        _, tokenizer = run.models.load()
        writers_only = settings.backend == "none"
        spec = BackendSpec(kind="openai" if settings.backend == "openai" else "local", model=settings.model,
                           base_url=settings.base_url, api_key_env=settings.api_key_env,
                           max_concurrency=settings.concurrency, batch_size=settings.batch_size)
        job = assemble_generation(
            plugin, targets, run.task.split("train"), backend=spec,
            sampling=SamplingSettings(temperature=settings.temperature, max_new_tokens=settings.max_new_tokens),
            budget=Budget(max_generated_tokens=max(1, max_generation_tokens)), seed=run.config.seed,
            iteration=iteration, batch_size=settings.batch_size,
            existing=previous.records, held_out=run.task.split("dev") + run.task.split("test"),
            length=LengthGate(tokenizer, info.template, info.context_length),
            store=versions.store, dedup_index_path=run.paths.data_dir / "dedup_index.npz",
            writers_only=writers_only, loaded_backend=None if writers_only else self._generator_backend(spec))
        total = sum(targets.values())
        with progress.step(f"generate {total} rows", total) as advance:
            seen = [0]

            def on_batch(batch: BatchProgress) -> None:
                advance(batch.accepted - seen[0])
                seen[0] = batch.accepted

            result = job.run(progress=on_batch)
        shards = list(previous.manifest.shards)
        if result.accepted:
            provenance = [row.provenance.model_dump(mode="json") for row in result.accepted]
            shards.append(versions.store.put_shard(result.records(), kind="synthetic", provenance=provenance))
        version = versions.save(iteration, shards)
        synthetic = plugin.category_counts(versions.load(version).synthetic())
        outcome = GenerateOutcome(
            dataset=DatasetInfo(version=version,
                                original_per_category=plugin.category_counts(run.task.split("train")),
                                synthetic_per_category=synthetic, acceptance=_gate_pass_rates(result)),
            accepted_per_category={c: p.accepted for c, p in result.per_category.items()},
            rejected_per_reason=dict(sorted(Counter(r.reason for r in result.rejected if r.reason).items())),
            generation_tokens=result.completion_tokens, seconds=result.seconds, stop_reason=result.stop_reason,
            writers=dict(Counter(row.provenance.writer or "unknown" for row in result.accepted)),
        )
        write_result(done, outcome)
        run.tracker.log({"generation/accepted": sum(outcome.accepted_per_category.values()),
                         "generation/rejected": sum(outcome.rejected_per_reason.values()),
                         "generation/tokens": outcome.generation_tokens, "generation/seconds": outcome.seconds,
                         **{f"generation/accepted/{c}": n for c, n in outcome.accepted_per_category.items()},
                         **{f"generation/rejected/{r}": n for r, n in outcome.rejected_per_reason.items()},
                         **{f"generation/gate_pass_rate/{g}": r for g, r in outcome.dataset.acceptance.items()}},
                        iteration)
        return outcome

    def _generator_backend(self, spec: BackendSpec) -> Backend:
        """The generator, built once per run: the loaded base model itself when it is the generator."""
        if self._backend is None:
            if spec.kind == "local" and spec.model in (self.run.config.base_model, self.run.models.weights):
                model, tokenizer = self.run.models.load()
                self._backend = LocalBackend(model, tokenizer, model_name=spec.model, batch_size=spec.batch_size)
            else:
                self._backend = make_backend(spec)
        return self._backend

    def close(self) -> None:
        self._backend = None


def _gate_pass_rates(result: GenerationResult) -> dict[str, float]:
    """Share of gated candidates that passed each gate (from the rows' provenance)."""
    passed: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for row in [*result.accepted, *result.rejected]:
        for gate in row.provenance.gates:
            seen[gate.gate] += 1
            passed[gate.gate] += int(gate.passed)
    return {gate: round(passed[gate] / seen[gate], 4) for gate in sorted(seen)}
