import copy
import dataclasses
import json
import random

import numpy as np
import pytest
import torch

import unet3d
from emulator.checkpoint import (ModelMeta, atomic_save, build_net, load_model, load_weights,
                                 read_checkpoint, rng_state, save_inference_model, save_training,
                                 set_rng_state)
from emulator.config import TrainConfig
from emulator.normalization import Normalization
from emulator.schedule import CosineSchedule
from sims.errors import InputError


def make_meta(**changes):
    config = TrainConfig(data="d", preset="tiny", tile=16, core=8, prediction="v",
                         schedule=CosineSchedule(steps=100).to_dict(), **changes)
    return ModelMeta(config=config, spacing=1.5, lr_spacing=3.0,
                     normalization=Normalization(shift=0.2, scale=0.7, upper=4.0))


def trained_modules(meta):
    """A net, a distinct EMA and an optimiser that has taken one step."""
    torch.manual_seed(0)
    net = build_net(meta.config)
    ema = copy.deepcopy(net).eval()
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(1, 4, 16, 16, 16), torch.zeros(1)).square().mean().backward()
    opt.step()
    return net, ema, opt


def test_training_checkpoint_contents(tmp_path):
    meta = make_meta()
    net, ema, opt = trained_modules(meta)
    path = tmp_path / "checkpoint.pt"
    save_training(path, meta, net, ema, opt, step=7)
    state = read_checkpoint(path)
    assert state["kind"] == "training" and state["step"] == 7
    assert TrainConfig.from_dict(state["config"]) == meta.config
    assert state["unet"] == unet3d.PRESETS["tiny"].to_dict()
    assert state["spacing"] == 1.5 and state["lr_spacing"] == 3.0
    assert Normalization.from_dict(state["normalization"]) == meta.normalization
    assert state["config"]["schedule"] == CosineSchedule(steps=100).to_dict()
    assert "schedule" not in state and "prediction" not in state           # stored once, in config
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}
    for k, v in net.state_dict().items():
        assert torch.equal(state["net"][k], v)
        assert torch.equal(state["ema"][k], ema.state_dict()[k])
    assert state["optimizer"]["state"][0]["step"] == 1
    assert ModelMeta.from_dict(state, "x") == meta
    json.dumps(state["config"])                            # plain values only


def test_load_model_gives_ema_in_eval_mode(tmp_path):
    meta = make_meta()
    net, ema, opt = trained_modules(meta)
    save_training(tmp_path / "c.pt", meta, net, ema, opt, step=1)
    model = load_model(tmp_path / "c.pt")
    assert not model.net.training and not any(p.requires_grad for p in model.net.parameters())
    for k, v in ema.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v)
    assert model.device == torch.device("cpu") and model.tile == 16 and model.core == 8
    assert model.prediction == "v" and model.schedule == CosineSchedule(steps=100)
    assert model.spacing == 1.5 and model.lr_spacing == 3.0
    assert model.normalization == meta.normalization
    assert model.formulation == meta.formulation and model.denoiser().prediction == "v"


def test_inference_model_is_float16_ema_and_loads(tmp_path):
    meta = make_meta()
    net, ema, opt = trained_modules(meta)
    save_inference_model(tmp_path / "m.pt", meta, ema)
    state = read_checkpoint(tmp_path / "m.pt")
    assert state["kind"] == "inference" and set(state) >= {"ema", "config", "normalization"}
    assert "net" not in state and "optimizer" not in state
    assert all(v.dtype == torch.float16 for v in state["ema"].values() if v.is_floating_point())
    model = load_model(tmp_path / "m.pt")
    x, level = torch.randn(1, 4, 16, 16, 16), torch.full((1,), 0.3)
    for k, v in ema.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v.half().float())
    with torch.no_grad():
        out, ref = model.net(x, level), ema(x, level)
    assert out.dtype == torch.float32
    # float16 weights: relative error ~1e-3 of the output scale
    assert (out - ref).abs().max() < 1e-2 * ref.abs().max() + 1e-6


def test_small_preset_inference_model_under_20_mb(tmp_path):
    meta = ModelMeta(config=TrainConfig(data="d"), spacing=1.0, lr_spacing=2.0,
                     normalization=Normalization(shift=0.0, scale=1.0))
    save_inference_model(tmp_path / "m.pt", meta, build_net(meta.config))
    assert (tmp_path / "m.pt").stat().st_size < 20e6


def test_read_checkpoint_errors(tmp_path):
    with pytest.raises(InputError, match="missing.pt: checkpoint file does not exist"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="junk.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="foreign.pt: not an emulator checkpoint"):
        read_checkpoint(tmp_path / "foreign.pt")
    meta = make_meta()
    net, ema, _ = trained_modules(meta)
    save_inference_model(tmp_path / "m.pt", meta, ema)
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    torch.save({**state, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(InputError, match="future.pt: checkpoint version 99"):
        read_checkpoint(tmp_path / "future.pt")


def test_weights_into_mismatched_network_name_the_file(tmp_path):
    meta = make_meta()
    _, ema, _ = trained_modules(meta)
    wider = unet3d.build("tiny", channels=16)
    with pytest.raises(InputError, match="run/c.pt: EMA weights do not fit the configured network"):
        load_weights(wider, ema.state_dict(), "run/c.pt", "EMA")


def test_rng_state_round_trip():
    state = rng_state()
    first = (torch.rand(3), np.random.random(3), random.random())
    set_rng_state(state)
    second = (torch.rand(3), np.random.random(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "c.pt"
    atomic_save({"a": torch.ones(1)}, path)
    with pytest.raises(Exception):
        atomic_save({"bad": lambda: None}, path)           # unpicklable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(1))


@pytest.mark.parametrize("key", ["config", "spacing", "normalization"])
def test_a_checkpoint_missing_its_metadata_is_one_input_error(tmp_path, key):
    meta = make_meta()
    net, ema, opt = trained_modules(meta)
    save_inference_model(tmp_path / "m.pt", meta, ema)
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    del state[key]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(InputError, match=f"cut.pt.*lacks '{key}'"):
        load_model(tmp_path / "cut.pt")


@pytest.mark.parametrize("changes,source", [({"preset": "huge"}, "^preset: "),
                                            ({"model_overrides": {"norm_groups": 5}}, "norm_groups")])
def test_a_bad_network_setting_is_an_input_error_naming_it(changes, source):
    """unet3d raises its own ConfigError; the checkpoint module maps it to the user's setting."""
    with pytest.raises(InputError, match=source):
        build_net(make_meta().config.replace(**changes))


def test_void_map_round_trips_and_a_broken_one_names_the_file(tmp_path):
    meta = make_meta()
    _, ema, _ = trained_modules(meta)
    void_map = {"x": [-1.0, -0.5, 0.0], "y": [-1.0, -0.7, -0.02], "source": "test"}
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    save_inference_model(good, dataclasses.replace(meta, void_map=void_map), ema)
    assert load_model(good).void_map == void_map
    save_inference_model(tmp_path / "none.pt", meta, ema)
    assert load_model(tmp_path / "none.pt").void_map is None
    save_inference_model(bad, dataclasses.replace(meta, void_map={"x": [-1.0, -0.5], "y": [-0.5, -1.0]}), ema)
    with pytest.raises(InputError, match="bad.pt") as err:
        load_model(bad)
    assert "non-decreasing" in str(err.value)


@pytest.mark.parametrize("broken", [{"k": [1.0, 2.0], "t": [1.0, 1.5]}, {"k": [2.0, 1.0], "t": [1.0, 0.5]},
                                    {"k": [1.0, 2.0]}, {"k": [1.0, 2.0], "t": [1.0, float("nan")]}])
def test_corner_transfer_round_trips_and_a_broken_one_names_the_file(tmp_path, broken):
    meta = make_meta()
    _, ema, _ = trained_modules(meta)
    transfer = {"k": [4.0, 5.0, 6.9], "t": [1.0, 0.8, 0.3], "source": "test"}
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    save_inference_model(good, dataclasses.replace(meta, corner_transfer=transfer), ema)
    assert load_model(good).corner_transfer == transfer
    save_inference_model(tmp_path / "none.pt", meta, ema)
    assert load_model(tmp_path / "none.pt").corner_transfer is None
    save_inference_model(bad, dataclasses.replace(meta, corner_transfer=broken), ema)
    with pytest.raises(InputError, match="bad.pt.*corner_transfer"):
        load_model(bad)
