"""The generate stage: synthetic rows for per-category targets, each category with its strategy (assembled by
tools.generation_setup), gated, and stored as the next dataset version. Keyed by targets, strategies, iteration
and the previous version, so it runs once."""

from __future__ import annotations

from collections import Counter, defaultdict

from agent import progress
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import content_digest, read_result, write_result
from agent.state import DatasetInfo
from agent.toolbox import GenerateOutcome
from tools.backends import Backend, BackendSpec, LocalBackend, SamplingSettings, make_backend
from tools.datastore import DatasetVersion
from tools.generate import BatchProgress, Budget, GenerationResult
from tools.generation_setup import assemble_generation
from tools.quality import LengthGate


def strategy_counts(version: DatasetVersion) -> dict[str, dict[str, int]]:
    """Synthetic rows of a dataset version per category and strategy (from the rows' provenance)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for kind, provenance in zip(version.kinds, version.provenance, strict=True):
        if kind == "synthetic" and provenance:
            counts[str(provenance.get("category", ""))][str(provenance.get("strategy", ""))] += 1
    return {c: dict(sorted(by.items())) for c, by in sorted(counts.items())}


class Generator:
    def __init__(self, run: PipelineRun):
        self.run = run
        self._backend: Backend | None = None

    def generate(self, targets: dict[str, int], strategies: dict[str, str], iteration: int,
                 max_generation_tokens: int, max_seconds: float | None = None) -> GenerateOutcome:
        run, versions = self.run, self.run.versions
        previous_name = versions.latest()
        previous = versions.load(previous_name)
        plugin = run.task.plugin
        default = plugin.strategy_names()[0]
        chosen = {c: strategies.get(c, default) for c in targets}
        # The identity of the default-only request is what it was before strategies were chosen per category.
        identity = {"targets": targets, "iteration": iteration, "previous": previous_name}
        if any(s != default for s in chosen.values()):
            identity["strategies"] = chosen
        done = run.paths.data_dir / f"generate-{iteration}-{content_digest(identity)}.json"
        stored = read_result(done, GenerateOutcome)
        if stored is not None:
            return stored
        groups: dict[str, dict[str, int]] = defaultdict(dict)
        for category, count in targets.items():
            groups[chosen[category]][category] = count
        started = run.clock()
        shards = list(previous.manifest.shards)
        results: list[GenerationResult] = []
        accepted: dict[str, dict[str, int]] = {}
        tokens_left = max_generation_tokens
        for name in [n for n in plugin.strategy_names() if n in groups]:
            seconds_left = None if max_seconds is None else max_seconds - (run.clock() - started)
            if tokens_left <= 0 or (seconds_left is not None and seconds_left <= 0):
                break
            result = self._run_strategy(name, groups[name], iteration, tokens_left, seconds_left, previous)
            results.append(result)
            accepted.update({c: {name: p.accepted} for c, p in result.per_category.items()})
            tokens_left -= result.completion_tokens
            if result.accepted:
                provenance = [row.provenance.model_dump(mode="json") for row in result.accepted]
                shards.append(versions.store.put_shard(result.records(), kind="synthetic", provenance=provenance))
        version = versions.save(iteration, shards)
        saved = versions.load(version)
        rejected = Counter(r.reason for result in results for r in result.rejected if r.reason)
        accepted_rows = [row for result in results for row in result.accepted]
        outcome = GenerateOutcome(
            dataset=DatasetInfo(version=version,
                                original_per_category=plugin.category_counts(run.task.split("train")),
                                synthetic_per_category=plugin.category_counts(saved.synthetic()),
                                synthetic_per_strategy=strategy_counts(saved),
                                acceptance=_gate_pass_rates(results)),
            accepted_per_category={c: sum(by.values()) for c, by in sorted(accepted.items())},
            accepted_per_strategy=dict(sorted(accepted.items())),
            rejected_per_reason=dict(sorted(rejected.items())),
            generation_tokens=sum(r.completion_tokens for r in results),
            seconds=round(run.clock() - started, 3),
            stop_reason=",".join(dict.fromkeys(r.stop_reason for r in results)) or "max_seconds",
            writers=dict(Counter(row.provenance.writer or "unknown" for row in accepted_rows)),
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

    def _run_strategy(self, name: str, targets: dict[str, int], iteration: int, max_tokens: int,
                      max_seconds: float | None, previous: DatasetVersion) -> GenerationResult:
        """One strategy's rows for its categories, gated against everything generated so far."""
        run, versions = self.run, self.run.versions
        plugin, info, settings = run.task.plugin, run.task.info, run.config.generator
        _, tokenizer = run.models.load()
        writers_only = settings.backend == "none"
        spec = BackendSpec(kind="openai" if settings.backend == "openai" else "local", model=settings.model,
                           base_url=settings.base_url, api_key_env=settings.api_key_env,
                           max_concurrency=settings.concurrency, batch_size=settings.batch_size)
        job = assemble_generation(
            plugin, targets, run.task.split("train"), backend=spec,
            sampling=SamplingSettings(temperature=settings.temperature, max_new_tokens=settings.max_new_tokens),
            budget=Budget(max_generated_tokens=max(1, max_tokens), max_seconds=max_seconds), seed=run.config.seed,
            iteration=iteration, batch_size=settings.batch_size,
            existing=previous.records, held_out=run.task.split("dev") + run.task.split("test"),
            length=LengthGate(tokenizer, info.template, info.context_length),
            store=versions.store, dedup_index_path=run.paths.data_dir / "dedup_index.npz",
            writers_only=writers_only, loaded_backend=None if writers_only else self._generator_backend(spec),
            strategy_name=name)
        total = sum(targets.values())
        with progress.step(f"generate {total} rows ({name})", total) as advance:
            seen = [0]

            def on_batch(batch: BatchProgress) -> None:
                advance(batch.accepted - seen[0])
                seen[0] = batch.accepted

            return job.run(progress=on_batch)

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


def _gate_pass_rates(results: list[GenerationResult]) -> dict[str, float]:
    """Share of gated candidates that passed each gate (from the rows' provenance)."""
    passed: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for row in [row for result in results for row in [*result.accepted, *result.rejected]]:
        for gate in row.provenance.gates:
            seen[gate.gate] += 1
            passed[gate.gate] += int(gate.passed)
    return {gate: round(passed[gate] / seen[gate], 4) for gate in sorted(seen)}
