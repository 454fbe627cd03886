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
from tools.flock.ledger import SubmissionLedger
from tools.flock.submit import publish_and_submit
from tools.publish import repo_name

#: The repository owner adapters of a local task are published under (its simulator's publisher).
LOCAL_USER = "synthgen-local"


class Submitter:
    def __init__(self, run: PipelineRun, evaluator: Evaluator):
        self.run = run
        self.env = run.env
        self.evaluator = evaluator

    def submit(self, adapter_id: str) -> SubmissionInfo:
        config, paths, env = self.run.config, self.run.paths, self.env
        adapter_dir = adapter_folder(paths.adapters_dir, adapter_id)
        task = env.client.get_task(env.task_id)
        user = os.environ.get("HF_USERNAME", "") if config.publishes_to_hub else LOCAL_USER
        repo_id = repo_name(user, task.id, config.base_model)
        ledger = SubmissionLedger.in_run_dir(paths.root)
        with progress.step(f"publish and submit {adapter_id}", None):
            receipt = publish_and_submit(env.client, ledger, env.publisher, task, adapter_dir, config.base_model,
                                         repo_id, real_validators=not env.local)
        validation_bpc = base_bpc = accepted = None
        if env.local:
            assert env.task_dir is not None  # a local task is served from its folder
            validation_bpc, accepted = self.simulator_score(receipt.hg_repo_id, receipt.revision)
            base_bpc = self.evaluator.base_validation_bpc(env.task_dir)
        return SubmissionInfo(adapter_id=adapter_id, repo_id=receipt.hg_repo_id, revision=receipt.revision,
                              task_id=task.id, validation_bpc=validation_bpc, base_validation_bpc=base_bpc,
                              accepted_by_flock_validators=accepted)

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
