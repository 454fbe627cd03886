"""Publishing and submission: an adapter goes to the publisher and is submitted to FLock at most once per
repository and revision (the run folder's ledger is written before each send). For a local task, the simulator's
validator then scores it, next to the base model's score on the same validation file."""

from __future__ import annotations

from agent import progress
from agent.pipeline.cards import HubArtifacts
from agent.pipeline.evaluation import Evaluator
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import adapter_folder
from agent.pipeline.training import adapter_iteration
from agent.state import SubmissionInfo
from tools.data import load_jsonl
from tools.flock.ledger import SubmissionLedger
from tools.flock.submit import publish_and_submit
from tools.publish import repo_name

#: Seconds a validation spends besides scoring (the simulator's validator loads the model, merges the adapter).
VALIDATION_OVERHEAD_S = 10.0


class Submitter:
    def __init__(self, run: PipelineRun, evaluator: Evaluator):
        self.run = run
        self.env = run.env
        self.evaluator = evaluator

    def validation_seconds(self, examples: int) -> float | None:
        """What scoring ``examples`` validation rows will take at this run's measured pace (None: not measured)."""
        pace = self.evaluator.pace()
        return None if pace is None else examples * pace + VALIDATION_OVERHEAD_S

    def submit(self, adapter_id: str, max_seconds: float | None = None,
               refit_of: str | None = None) -> SubmissionInfo:
        """Publish and submit; for a local task the simulator scores the submission and the base model scores the
        same file, each only when its estimate fits in what is left of ``max_seconds`` (the note says what was
        left out). The card's dev scores are the adapter's, or for a refit its recipe's (``refit_of``): a refit
        learned from dev, and is not scored on it."""
        config, paths, env = self.run.config, self.run.paths, self.env
        started = self.evaluator.clock()
        adapter_dir = adapter_folder(paths.adapters_dir, adapter_id)
        task = env.client.get_task(env.task_id)
        artifacts = HubArtifacts(self.run)
        repo_id = repo_name(artifacts.owner(), task.id, config.base_model)
        artifacts.write_publish_card(adapter_id, adapter_dir, repo_id,
                                     self.evaluator.evaluate(refit_of or adapter_id, "dev"),
                                     self.evaluator.evaluate(None, "dev"), refit_of)
        ledger = SubmissionLedger.in_run_dir(paths.root)
        with progress.step(f"publish and submit {adapter_id}", None):
            receipt = publish_and_submit(env.client, ledger, env.publisher, task, adapter_dir, config.base_model,
                                         repo_id, real_validators=not env.local)
        validation_bpc = base_bpc = accepted = None
        note = None
        validation_file = env.validation_file
        if env.local and validation_file is not None:
            estimate = self.validation_seconds(len(load_jsonl(validation_file).records))

            def fits() -> bool:
                left = None if max_seconds is None else max_seconds - (self.evaluator.clock() - started)
                return left is None or estimate is None or estimate <= left

            skipped = []
            if fits():
                validation_bpc, accepted = self.simulator_score(receipt.hg_repo_id, receipt.revision)
            else:
                skipped.append("the simulator's validation")
            if fits():
                base_bpc = self.evaluator.base_validation_bpc(validation_file)
            else:
                skipped.append("the base model's validation score")
            if skipped:
                note = f"left out to end within {max_seconds or 0:.0f} s: {' and '.join(skipped)} " \
                       f"(about {estimate or 0:.0f} s each)"
        artifacts.record_submission(adapter_id, receipt.hg_repo_id, receipt.revision, validation_bpc, base_bpc)
        scores = {"submission/validation_bpc": validation_bpc, "submission/base_validation_bpc": base_bpc}
        self.run.tracker.log({"submission/count": 1, **{k: v for k, v in scores.items() if v is not None}},
                             adapter_iteration(adapter_id))
        return SubmissionInfo(adapter_id=adapter_id, repo_id=receipt.hg_repo_id, revision=receipt.revision,
                              task_id=task.id, validation_bpc=validation_bpc, base_validation_bpc=base_bpc,
                              accepted_by_flock_validators=accepted, note=note)

    def simulator_score(self, repo_id: str, revision: str) -> tuple[float | None, bool | None]:
        """Let the simulator's validator score pending submissions, then read this one's score, and whether
        FLock's own validators would accept it."""
        assert self.env.simulator is not None
        with progress.step("FLock simulator validates the submission", None):
            self.env.simulator.validate_pending()
        for item in self.env.client.wallet_submissions(self.env.task_id):
            if item.hg_repo_id == repo_id and item.revision == revision:
                score = item.submission_phase_score
                accepted = (item.model_extra or {}).get("accepted_by_flock_validators")
                return (float(score) if score is not None else None,
                        accepted if isinstance(accepted, bool) else None)
        return None, None
