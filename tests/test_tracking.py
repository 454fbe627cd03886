"""Trackers (tools/tracking.py): metrics written to TensorBoard offline and read back from the event files, the
trainer's step loss reaching the current tracker, W&B offline, and a missing tracker package as one clear error."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tools.data import FlockRecord
from tools.tracking import Trackers, TrackingConfig, TrackingError, current, log_metrics, open_trackers
from tools.train import TrainConfig, train_adapter


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard log folder, as (step, value) per tag: what `tensorboard --logdir` shows."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_metrics_go_to_tensorboard_event_files(tmp_path):
    trackers = open_trackers(TrackingConfig(report_to=["tensorboard"]), tmp_path, "run-1", {"seed": 0})
    trackers.log({"dev/adapter/bpc": 0.5, "generation/accepted": 8, "skipped": float("nan")}, 1)
    trackers.log({"dev/adapter/bpc": 0.25}, 2)
    with current(trackers, prefix="a1-xyz/"):
        log_metrics({"train/loss": 2.0}, 1)
    log_metrics({"train/loss": 9.0}, 9)  # no current tracker: goes nowhere
    trackers.close()
    scalars = read_scalars(tmp_path / "tensorboard")
    assert scalars == {"dev/adapter/bpc": [(1, 0.5), (2, 0.25)], "generation/accepted": [(1, 8.0)],
                       "a1-xyz/train/loss": [(1, 2.0)]}


def test_the_trainer_logs_every_step_loss_to_the_current_tracker(tiny_model_dir, tmp_path):
    records = [FlockRecord.model_validate({"conversations": [{"role": "user", "content": f"q{i}"},
                                                             {"role": "assistant", "content": f"answer {i}"}]})
               for i in range(6)]
    trackers = open_trackers(TrackingConfig(report_to=["tensorboard"]), tmp_path / "tracking", "run-2")
    with current(trackers, prefix="a1-test/"):
        result = train_adapter(str(tiny_model_dir), records, tmp_path / "adapter",
                               TrainConfig(learning_rate=5e-3, max_steps=4, batch_tokens=256, checkpoint_every=0),
                               template="qwen1.5", context_length=256, hub_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    trackers.close()
    scalars = read_scalars(tmp_path / "tracking" / "tensorboard")
    assert [step for step, _ in scalars["a1-test/train/loss"]] == [1, 2, 3, 4]
    assert [value for _, value in scalars["a1-test/train/loss"]] == pytest.approx(result.loss_curve, rel=1e-6)
    assert len(scalars["a1-test/train/learning_rate"]) == 4


def test_nothing_is_tracked_by_default(tmp_path):
    trackers = open_trackers(TrackingConfig(), tmp_path, "run-3")
    assert not trackers and not any(tmp_path.iterdir())


def test_a_failing_tracker_is_dropped_not_fatal():
    class Broken:
        def log(self, metrics, step):
            raise OSError("disk full")

        def close(self):
            pass

    trackers = Trackers([Broken()])
    trackers.log({"x": 1.0}, 1)
    assert not trackers


def test_wandb_runs_offline_in_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    trackers = open_trackers(TrackingConfig(report_to=["wandb"], project="synthgen-test"), tmp_path, "run-4")
    trackers.log({"dev/adapter/bpc": 0.5}, 1)
    trackers.log({"train/loss": 1.5}, 1)
    trackers.close()
    (run_file,) = (tmp_path / "wandb").rglob("offline-run-*/run-*.wandb")
    assert run_file.stat().st_size > 0


@pytest.mark.skipif(importlib.util.find_spec("trackio") is not None, reason="trackio is installed here")
def test_a_tracker_whose_package_is_missing_is_one_clear_error(tmp_path):
    with pytest.raises(TrackingError, match=r"report_to 'trackio' needs the trackio package: pip install "
                                            r"'synthgen-agent\[trackio\]'"):
        open_trackers(TrackingConfig(report_to=["tensorboard", "trackio"]), tmp_path, "run-5")
