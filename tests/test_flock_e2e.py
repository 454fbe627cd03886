"""End to end against the simulator: fetch the demo task, download, publish, submit, validate for real, rank."""

from __future__ import annotations

import math

import pytest

from tools.data import load_jsonl
from tools.evaluate import score_adapter_for_validation
from tools.flock.errors import BaseModelRejectedError, FlockSubmissionLimitError
from tools.flock.ledger import SubmissionLedger, submit_once
from tools.flock.simulator import FaultRule, SimulatorServer
from tools.flock.simulator.testing import FAST_RETRY, make_lora_adapter, write_task_folder
from tools.flock.submit import publish_and_submit
from tools.publish import repo_name

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return [make_lora_adapter(tiny_model_dir, root / f"a{seed}", seed=seed, base_model_name_or_path=SMOL)
            for seed in range(3)]


def test_demo_task_round_trip(tiny_model_dir, adapters, tmp_path):
    run = tmp_path / "run"
    # The validator scores SmolLM2 adapters with the tiny model's weights standing in for the Hub download.
    # (Ranking several wallets' best scores is covered in test_flock_simulator on posted losses.)
    with SimulatorServer(base_model_paths={SMOL: tiny_model_dir}) as sim, sim.client(retry=FAST_RETRY) as client:
        (task_id,) = sim.task_ids
        task = client.get_task(task_id)
        assert task.status == "submission_phase" and SMOL in (task.data.supported_base_models or [])
        download = client.download_training_set(task_id, run / "training_set.jsonl")
        assert len(load_jsonl(download.path).records) > 100

        ledger = SubmissionLedger.in_run_dir(run)
        repo = repo_name("local", task_id, SMOL)
        first = publish_and_submit(client, ledger, sim.publisher, task, adapters[0], SMOL, repo, gpu_type="CPU")
        assert (first.source, first.base_model, first.hg_repo_id) == ("sent", "qwen1.5", repo)

        (outcome,) = sim.validate_pending()
        assert outcome.status == "completed" and outcome.revision == first.revision
        assert outcome.loss is not None and math.isfinite(outcome.loss) and 0 < outcome.loss < 999
        # The validator posted exactly what the FLock-exact evaluator computes for this adapter.
        validation_file = sim.store.folder(task_id).files["validation_set"]
        expected = score_adapter_for_validation(SMOL, adapters[0], validation_file, "qwen1.5",
                                                task.data.context_length or 0, task.data.max_params or 0,
                                                base_model=tiny_model_dir)
        assert outcome.loss == pytest.approx(expected.bpc, rel=1e-6)

        (leader,) = client.leaderboard(task_id)
        assert (leader.rank, leader.revision, leader.submission_phase_score) == (1, first.revision, outcome.loss)
        (item,) = client.wallet_submissions(task_id)
        assert item.submission_phase_score == outcome.loss
        # Scored all the same, but said aloud: FLock's own validators do not accept a SmolLM2 base.
        assert outcome.accepted_by_flock_validators is False
        extra = item.model_extra or {}
        assert extra["accepted_by_flock_validators"] is False and "would mark this submission failed" in extra["note"]
        with pytest.raises(BaseModelRejectedError, match="not in FLock's validators' supported list"):
            publish_and_submit(client, ledger, sim.publisher, task, adapters[1], SMOL, repo, real_validators=True)

        second = publish_and_submit(client, ledger, sim.publisher, task, adapters[1], SMOL, repo, gpu_type="CPU")
        assert second.source == "sent" and second.revision != first.revision
        again = publish_and_submit(client, ledger, sim.publisher, task, adapters[0], SMOL, repo, gpu_type="CPU")
        assert again.source == "ledger"  # same content, same revision: not sent again
        with pytest.raises(FlockSubmissionLimitError, match="only allowed to submit models twice a day"):
            publish_and_submit(client, ledger, sim.publisher, task, adapters[2], SMOL, repo, gpu_type="CPU")
        assert len(sim.store.submissions(task_id)) == 2


def test_validator_penalties_and_failures(tiny_model_dir, adapters, tmp_path):
    folder = write_task_folder(tmp_path / "task", task_id=3,
                               data={"max_params": 1000, "supported_base_models": [SMOL]})
    with SimulatorServer([folder], base_model_paths={SMOL: tiny_model_dir}) as sim, \
            sim.client(retry=FAST_RETRY) as client:
        ledger = SubmissionLedger.in_run_dir(tmp_path / "run")
        too_big = sim.publisher.publish(adapters[0], "local/big")
        submit_once(client, ledger, 3, too_big.repo_id, "qwen1.5", "CPU", too_big.revision)
        wrong_base = make_lora_adapter(tiny_model_dir, tmp_path / "qwen", base_model_name_or_path="Qwen/Qwen2.5-7B")
        unsupported = sim.publisher.publish(wrong_base, "local/unsupported")
        submit_once(client, ledger, 3, unsupported.repo_id, "qwen1.5", "CPU", unsupported.revision)

        big, other = sim.validate_pending()
        assert (big.status, big.loss) == ("completed", 999.0)  # over max_params: the validator's penalty
        assert other.status == "failed" and "not supported" in (other.reason or "")
        statuses = {i.hg_repo_id: (i.submission_phase_score, i.model_extra and i.model_extra["validation_status"])
                    for i in client.wallet_submissions(3)}
        assert statuses == {"local/big": (999.0, "validated"), "local/unsupported": (None, "failed")}


def test_validator_survives_faults_on_its_own_calls(tiny_model_dir, adapters, tmp_path):
    folder = write_task_folder(tmp_path / "task", task_id=4, data={"supported_base_models": [SMOL]})
    lines = (folder / "validation_set.jsonl").read_text().splitlines(keepends=True)
    (folder / "validation_set.jsonl").write_text("".join(lines[:4]))  # a short set keeps scoring quick
    faults = [FaultRule(endpoint="request_assignment", kind="server_error", status=503),
              FaultRule(endpoint="storage", kind="truncate"),
              FaultRule(endpoint="update_assignment", kind="lose_response")]
    with SimulatorServer([folder], base_model_paths={SMOL: tiny_model_dir}) as sim, \
            sim.client(retry=FAST_RETRY) as client:
        published = sim.publisher.publish(adapters[0], "local/faults")
        submit_once(client, SubmissionLedger.in_run_dir(tmp_path / "run"), 4, published.repo_id, "qwen1.5", "CPU",
                    published.revision)
        sim.add_faults(*faults)
        (outcome,) = sim.validate_pending()
        assert sim.faults.pending() == []
        # The completed result landed before its response was lost; the retry found the assignment closed.
        assert outcome.status == "failed" and "no longer validating" in (outcome.reason or "")
        (item,) = client.wallet_submissions(4)
        assert item.submission_phase_score is not None and 0 < item.submission_phase_score < 999
