"""The settings objects (emulator.config): validation naming the setting, round trips, frozen
values, old configurations."""
import pytest

from emulator.config import GenerationSettings, TrainConfig
from emulator.schedule import CosineSchedule, LinearSchedule
from sims.errors import InputError


def test_train_config_validation_and_differences():
    config = TrainConfig(data="d")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.replace(steps=5, learning_rate=1e-3).differences(config) == ["learning_rate"]
    assert config.schedule == LinearSchedule()
    for changes, setting in (({"tile": 15}, "tile"), ({"core": 48}, "tile"), ({"learning_rate": 0}, "learning_rate"),
                             ({"ema": 1.0}, "ema"), ({"p_mask": 1.5}, "p_mask"),
                             ({"prediction": "x0"}, "prediction"), ({"batch": 0}, "batch"),
                             ({"steps": 2.5}, "steps"), ({"val_sampler": "euler9"}, "val_sampler")):
        with pytest.raises(InputError, match=f"^{setting}: "):
            config.replace(**changes)
    with pytest.raises(InputError, match="cfg.json: unknown training option"):
        TrainConfig.from_dict({"lr": 1}, "cfg.json")
    stored = {**config.to_dict(), "lr": 3e-4}
    del stored["learning_rate"]
    assert TrainConfig.from_stored(stored, "old.json").learning_rate == 3e-4     # the old name
    frozen = TrainConfig(model_overrides={"dropout": 0.1, "channels": 16})
    assert frozen.model_overrides == (("channels", 16), ("dropout", 0.1)) and hash(frozen)
    with pytest.raises(InputError, match="schedule"):
        config.replace(schedule={"kind": "quadratic"})


def test_train_config_schedule_is_parsed_once_and_round_trips():
    config = TrainConfig(schedule={"kind": "cosine", "steps": 100})
    assert config.schedule == CosineSchedule(steps=100)
    assert config.to_dict()["schedule"] == CosineSchedule(steps=100).to_dict()
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="schedule"):
        config.replace(schedule={"kind": "quadratic"})


def test_generation_settings_resolve_the_sampler_schedule_and_freeze_options():
    settings = GenerationSettings("heun", 3, sampler_options={"s_churn": 1.0, "s_noise": 1.003})
    assert settings.sigma_schedule == "karras" and hash(settings)
    assert settings.sampler_options == (("s_churn", 1.0), ("s_noise", 1.003))
    assert settings.to_dict()["sampler_options"] == {"s_churn": 1.0, "s_noise": 1.003}
    assert GenerationSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(InputError, match="^generation settings: unknown generation setting"):
        GenerationSettings.from_dict({"spacing": "karras"})
