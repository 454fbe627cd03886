"""Publishing and submission: an adapter goes to the publisher and is submitted to FLock at most once per
repository and revision (the run folder's ledger is written before each send). For a local task, the simulator's
validator then scores it, next to the base model's score on the same validation file."""

from __future__ import annotations

import os

from agent import progress
from agent.pipeline.evaluation import Evaluator
from agent.pipeline.run import PipelineRun
from agent.pipeline.store import adapter_folder
from agent.state import SubmissionInfo
from tools.data import load_jsonl
from tools.flock.ledger import SubmissionLedger
from tools.flock.submit import publish_and_submit
from tools.publish import repo_name

#: The repository owner adapters of a local task are published under (its simulator's publisher).
LOCAL_USER = "synthgen-local"


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

    def submit(self, adapter_id: str, max_seconds: float | None = None) -> SubmissionInfo:
        """Publish and submit; for a local task the simulator scores the submission and the base model scores the
        same file, each only when its estimate fits in what is left of ``max_seconds`` (the note says what was
        left out)."""
        config, paths, env = self.run.config, self.run.paths, self.env
        started = self.evaluator.clock()
        adapter_dir = adapter_folder(paths.adapters_dir, adapter_id)
        task = env.client.get_task(env.task_id)
        user = os.environ.get("HF_USERNAME", "") if config.publishes_to_hub else LOCAL_USER
        repo_id = repo_name(user, task.id, config.base_model)
        ledger = SubmissionLedger.in_run_dir(paths.root)
        with progress.step(f"publish and submit {adapter_id}", None):
            receipt = publish_and_submit(env.client, ledger, env.publisher, task, adapter_dir, config.base_model,
                                         repo_id)
        validation_bpc = base_bpc = None
        note = None
        validation_file = env.validation_file
        if env.local and validation_file is not None:
            estimate = self.validation_seconds(len(load_jsonl(validation_file).records))

            def fits() -> bool:
                left = None if max_seconds is None else max_seconds - (self.evaluator.clock() - started)
                return left is None or estimate is None or estimate <= left

            skipped = []
            if fits():
                validation_bpc = self.simulator_score(receipt.hg_repo_id, receipt.revision)
            else:
                skipped.append("the simulator's validation")
            if fits():
                base_bpc = self.evaluator.base_validation_bpc(validation_file)
            else:
                skipped.append("the base model's validation score")
            if skipped:
                note = f"left out to end within {max_seconds or 0:.0f} s: {' and '.join(skipped)} " \
                       f"(about {estimate or 0:.0f} s each)"
        return SubmissionInfo(adapter_id=adapter_id, repo_id=receipt.hg_repo_id, revision=receipt.revision,
                              task_id=task.id, validation_bpc=validation_bpc, base_validation_bpc=base_bpc,
                              note=note)

    def simulator_score(self, repo_id: str, revision: str) -> float | None:
        """Let the simulator's validator score pending submissions, then read this one's score."""
        assert self.env.simulator is not None
        with progress.step("FLock simulator validates the submission", None):
            self.env.simulator.validate_pending()
        for item in self.env.client.wallet_submissions(self.env.task_id):
            if item.hg_repo_id == repo_id and item.revision == revision:
                score = item.submission_phase_score
                return float(score) if score is not None else None
        return None
