"""One training configuration: tools.train.TrainConfig is the config's ``train:`` section (with the agent's one
epoch per round and the old ``lora_rank`` key), and the planner's overrides are a partial of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, build_config, describe_fields
from agent.pipeline.training import data_mix, mixed_rows, training_settings
from agent.state import Decision, LearningSettings, TrainOverrides
from tools.data import FlockRecord
from tools.train import TrainConfig


def test_the_train_section_is_the_trainers_config_with_the_agents_defaults(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("train: {lora_rank: 8, learning_rate: 0.001}\n")
    config = build_config(path)
    assert isinstance(config.train, TrainConfig)
    assert (config.train.lora_r, config.train.learning_rate, config.train.epochs) == (8, 0.001, 1)
    assert build_config().train.epochs == 1 and TrainConfig().epochs == 2
    assert build_config(path, {"train": {"lora_rank": 32}}).train.lora_r == 32  # a flag beats the file
    assert {name: default for name, default, _ in describe_fields()}["train.epochs"] == "1"


@pytest.mark.parametrize(("train", "message"), [
    ({"seed": 3}, "train: 'seed' is set for every training from 'seed'"),
    ({"max_train_tokens": 10}, "'max_train_tokens' is set for every training from 'budget.max_train_tokens'"),
    ({"epochs": 50}, "train.epochs: Input should be less than or equal to 20"),
    ({"lora_rnk": 4}, "unknown key 'train.lora_rnk' (did you mean 'lora_r'?)"),
])
def test_bad_train_settings_give_one_clear_line(train: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(None, {"train": train})
    assert message in str(info.value)


def test_planner_overrides_are_a_partial_of_the_training_config_and_the_data_mix() -> None:
    assert set(TrainOverrides.model_fields) <= set(TrainConfig.model_fields) | set(LearningSettings.model_fields)
    for name, field in TrainOverrides.model_fields.items():
        source = TrainConfig if name in TrainConfig.model_fields else LearningSettings
        assert field.default is None
        assert field.description == source.model_fields[name].description
    decision = Decision.model_validate({"action": "train", "train_overrides": {"lora_r": 8, "epochs": 3}})
    configured = build_config(None, {"train": {"lora_rank": 4, "lora_alpha": 8, "batch_tokens": 2048}}).train
    settings = training_settings(configured, decision.train_overrides, seed=5, max_train_tokens=0, max_seconds=60)
    assert (settings.lora_r, settings.lora_alpha, settings.epochs, settings.batch_tokens) == (8, 16, 3, 2048)
    assert (settings.seed, settings.max_train_tokens, settings.max_seconds) == (5, 1, 60)
    unchanged = training_settings(configured, None, seed=0, max_train_tokens=100, max_seconds=None)
    assert (unchanged.lora_r, unchanged.lora_alpha, unchanged.epochs) == (4, 8, 1)


def test_the_data_mix_repeats_the_originals_and_weighs_the_synthetic_rows() -> None:
    learning = LearningSettings(synthetic_weight=0.5)
    assert data_mix(learning, None) == (0.5, 1)
    assert data_mix(learning, TrainOverrides(original_epochs=3)) == (0.5, 3)
    assert data_mix(learning, TrainOverrides(synthetic_weight=0.25)) == (0.25, 1)

    def record(text: str) -> FlockRecord:
        return FlockRecord.model_validate({"conversations": [{"role": "user", "content": text},
                                                             {"role": "assistant", "content": text.upper()}]})

    originals, synthetic = [record("a"), record("b")], [record("s")]
    rows, weights = mixed_rows(originals, synthetic, 0.25, 2)
    assert rows == [*originals, *originals, *synthetic]
    assert weights == [1.0, 1.0, 1.0, 1.0, 0.25]
    settings = training_settings(TrainConfig(), TrainOverrides(synthetic_weight=0.5, original_epochs=2, epochs=3),
                                 seed=0, max_train_tokens=10, max_seconds=None)
    assert settings.epochs == 3  # the mix is the stage's business, not a trainer setting
