import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from emulator.checkpoint import load_model, read_checkpoint
from emulator.cli import main
from emulator.config import GenerationSettings, TrainConfig
from emulator.data import read_pair_box
from emulator.generate import generate_tiles
from emulator.schedule import LinearSchedule
from emulator.train import (ema_decay, example_noise, learning_rate_at, open_run, spectra_summary, train,
                            update_ema)
from sims.errors import InputError
from sims.mesh import resample
from sims.pairfile import write_pair
from sims.stats import correlation, power_spectrum

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_HR, N_LR, BOX = 16, 8, 32.0


def write_pairs(directory, count=2):
    """Paired boxes: HR a lognormal field, LR its large scales on a coarser grid."""
    directory.mkdir(exist_ok=True)
    for seed in range(count):
        rng = np.random.default_rng(seed)
        hr = (np.exp(0.7 * rng.normal(size=(N_HR,) * 3) - 0.245) - 1).astype(np.float32)
        lr = np.maximum(resample(hr, N_LR), -1)
        write_pair(directory / f"pair{seed}.h5", lr, hr, box_size=BOX, redshift=0.0, cosmology={})
    return str(directory)


def tiny_config(data, **changes):
    base = dict(data=data, preset="tiny", tile=16, core=8, batch=2, steps=6, learning_rate=2e-3, ema=0.99,
                p_mask=0.5, val_every=0, save_every=1000, log_every=1, seed=3)
    return TrainConfig(**{**base, **changes})


def read_metrics(run_dir, kind="train"):
    with open(run_dir / "metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs"))


def test_loss_decreases_on_tiny_dataset(data_dir, tmp_path):
    train(tiny_config(data_dir, steps=40, batch=4, learning_rate=3e-3, formulation="palette", lr_band=0.0,
                      prediction="eps"),
          str(tmp_path), progress=False)
    losses = np.array([r["loss"] for r in read_metrics(tmp_path)])
    assert len(losses) == 40 and np.isfinite(losses).all()
    # zero-initialised output, no projection: the eps loss starts at E[eps^2] = 1; per-step scatter ~0.2
    assert losses[:5].mean() > 0.8
    assert losses[-15:].mean() < 0.65 * losses[:5].mean()


def checkpoint_tensors(path):
    state = torch.load(path, weights_only=True)
    flat = {f"net.{k}": v for k, v in state["net"].items()}
    flat.update({f"ema.{k}": v for k, v in state["ema"].items()})
    for pid, s in state["optimizer"]["state"].items():
        flat.update({f"opt.{pid}.{k}": v for k, v in s.items()})
    return state["step"], flat


def test_resume_is_bitwise_identical(data_dir, tmp_path):
    config = tiny_config(data_dir, model_overrides={"dropout": 0.2})   # dropout uses the global RNG
    train(config, str(tmp_path / "straight"), progress=False)
    train(config.replace(steps=3), str(tmp_path / "split"), progress=False)
    train(config, str(tmp_path / "split"), resume=True, progress=False)
    step_a, a = checkpoint_tensors(tmp_path / "straight" / "checkpoint.pt")
    step_b, b = checkpoint_tensors(tmp_path / "split" / "checkpoint.pt")
    assert step_a == step_b == 6 and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert read_metrics(tmp_path / "straight") == [
        {**r, "seconds": s["seconds"]} for r, s in zip(read_metrics(tmp_path / "split"),
                                                        read_metrics(tmp_path / "straight"))]


def test_two_ranks_match_one_process_with_the_same_global_batch(data_dir, tmp_path):
    flags = ["-m", "emulator.cli", "train", "--data", data_dir, "--preset", "tiny", "--tile", "16",
             "--core", "8", "--steps", "3", "--val-every", "0", "--p-mask", "0", "--learning-rate", "1e-3",
             "--ema", "0.99", "--seed", "0", "--no-bf16"]      # float32: bf16 would round at 1e-2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                    "2", *flags, "--batch", "2", "--out", str(tmp_path / "ddp")], check=True, env=env,
                   capture_output=True)
    train(tiny_config(data_dir, steps=3, batch=4, p_mask=0.0, learning_rate=1e-3, seed=0, bf16=False),
          str(tmp_path / "one"), progress=False)
    _, a = checkpoint_tensors(tmp_path / "ddp" / "checkpoint.pt")
    _, b = checkpoint_tensors(tmp_path / "one" / "checkpoint.pt")
    # same data, noise and initial weights; gradients differ only in float summation order
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_resume_trims_metrics_written_after_the_checkpoint(data_dir, tmp_path):
    config = tiny_config(data_dir, steps=2)
    train(config, str(tmp_path), progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as f:     # as if killed after step 3's log line
        f.write(json.dumps({"kind": "train", "step": 3, "loss": 0.0}) + "\n")
    train(config.replace(steps=4), str(tmp_path), resume=True, progress=False)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    assert read_metrics(tmp_path)[2]["loss"] != 0.0


def test_mismatched_config_and_overwrite_are_refused(data_dir, tmp_path):
    config = tiny_config(data_dir, steps=1)
    train(config, str(tmp_path), progress=False)
    with pytest.raises(InputError, match="checkpoint.pt.*different configuration.*learning_rate: 0.002 -> 0.001"):
        train(config.replace(learning_rate=1e-3), str(tmp_path), resume=True, progress=False)
    with pytest.raises(InputError, match="already holds checkpoint.pt"):
        train(config, str(tmp_path), progress=False)


def test_two_channel_network_refuses_masks(data_dir, tmp_path):
    config = tiny_config(data_dir, model_overrides={"in_channels": 2})
    with pytest.raises(InputError, match="p-mask"):
        train(config, str(tmp_path), progress=False)


def test_validation_pass_logs_spectra(data_dir, tmp_path):
    config = tiny_config(data_dir, steps=2, val_every=2, val_samples=2, val_steps=3)
    train(config, str(tmp_path), progress=False)
    (val,) = read_metrics(tmp_path, "val")
    assert val["step"] == 2
    # held-out 32 Mpc/h crops: shell 1 <= |n| < 2 has mean |n| = (6 + 12 sqrt2 + 8 sqrt3) / 26,
    # k = 0.278 h/Mpc, the only one below half the LR Nyquist pi / (2 * 4 Mpc/h) = 0.39 h/Mpc
    k = np.array(val["k"])
    assert k[0] == pytest.approx((6 + 12 * 2**0.5 + 8 * 3**0.5) / 26 * 2 * np.pi / 32, rel=1e-6)
    assert k[0] < np.pi / 8 < k[1]
    for key in ("pk_ratio_low", "r_low", "r_lr_low", "pk_ratio_all", "r_all", "pk_maxdev_all"):
        assert np.isfinite(val[key]), key
    assert -1 <= val["r_low"] <= 1 and val["r_lr_low"] > 0.5


def test_ema_decay_and_update():
    assert ema_decay(0.9999, 0) == pytest.approx(0.1)
    assert ema_decay(0.9999, 90) == pytest.approx(0.91)
    assert ema_decay(0.99, 10**6) == 0.99
    net, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expected = 0.75 * ema.weight.detach() + 0.25 * net.weight.detach()
    update_ema(ema, net, 0.75)
    torch.testing.assert_close(ema.weight, expected)


def test_example_noise_keyed_by_example():
    sigmas = torch.as_tensor(LinearSchedule().sigmas(), dtype=torch.float32)
    s_all, n_all = example_noise(1, 5, range(4), sigmas, (1, 4, 4, 4))
    s_hi, n_hi = example_noise(1, 5, range(2, 4), sigmas, (1, 4, 4, 4))
    assert torch.equal(s_all[2:], s_hi) and torch.equal(n_all[2:], n_hi)
    assert set(s_all.tolist()) <= set(sigmas.tolist())
    assert not torch.equal(example_noise(1, 6, range(4), sigmas, (1, 4, 4, 4))[1], n_all)


def test_spectra_summary_against_sims_stats():
    rng = np.random.default_rng(0)
    hr = rng.normal(size=(2, 16, 16, 16))
    lr = hr + rng.normal(size=hr.shape)
    out = spectra_summary(hr * 1.5, hr, lr, box_size=BOX, k_split=0.3)
    np.testing.assert_allclose(out["pk_ratio"], 2.25)
    np.testing.assert_allclose(out["r"], 1.0)
    assert out["pk_maxdev_all"] == pytest.approx(1.25)
    single = spectra_summary(hr[:1], hr[:1], lr[:1], box_size=BOX, k_split=0.3)
    np.testing.assert_allclose(single["r_lr"], correlation(lr[0], hr[0], BOX)[1], rtol=1e-12)
    k = np.array(single["k"])
    np.testing.assert_allclose(k, power_spectrum(hr[0], BOX).k)
    low = k < 0.3
    assert single["r_lr_low"] == pytest.approx(np.mean(np.array(single["r_lr"])[low]))


def test_cli_trains_and_writes_run_directory(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"preset": "tiny", "tile": 16, "core": 8, "batch": 1, "steps": 5,
                               "val_every": 0}))
    code = main(["train", "--data", data_dir, "--out", str(out), "--config", str(cfg),
                 "--steps", "2", "--log-every", "1"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl",
                                                     "model.pt"]
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["steps"] == 2 and resolved["preset"] == "tiny" and resolved["data"] == data_dir
    # --resume reads RUN_DIR/config.json, so only the new length is needed
    assert main(["train", "--out", str(out), "--resume", "--steps", "3"]) == 0
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3]


def test_cli_bad_data(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "r"), "--preset", "tiny"]) == 2
    assert "no paired box files" in capsys.readouterr().err
    (empty / "x.h5").write_bytes(b"not hdf5")
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "x.h5: not an HDF5 file" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "r"), "--tile", "15"]) == 2
    assert "--tile" in capsys.readouterr().err


FORMULATIONS = [("palette", 0.0), ("residual", 0.0), ("residual", 0.5)]


@pytest.mark.parametrize("formulation, lr_band", FORMULATIONS)
def test_every_formulation_round_trips_and_refuses_another(data_dir, tmp_path, formulation, lr_band):
    """A run's formulation and its fitted residual statistics survive the inference checkpoint; a
    resume under another formulation is refused by name."""
    from emulator.checkpoint import load_model, read_checkpoint
    config = tiny_config(data_dir, steps=1, formulation=formulation, lr_band=lr_band)
    train(config, str(tmp_path), progress=False)
    model = load_model(tmp_path / "model.pt")
    assert (model.formulation.kind, model.formulation.lr_band) == (formulation, lr_band)
    if formulation == "residual":        # fitted: not the unfitted 0 / 1
        assert model.formulation.shift != 0.0 and model.formulation.scale != 1.0
    assert model.lr_transfer is not None and len(model.lr_transfer["k"]) == len(model.lr_transfer["t"])
    other = "palette" if formulation == "residual" else "residual"
    with pytest.raises(InputError, match=f"formulation: '{formulation}' -> '{other}'"):
        train(config.replace(formulation=other, steps=2), str(tmp_path), resume=True, progress=False)


def test_a_checkpoint_whose_formulation_disagrees_with_its_configuration_is_refused(data_dir, tmp_path):
    from emulator.checkpoint import load_model, read_checkpoint
    train(tiny_config(data_dir, steps=1, formulation="residual"), str(tmp_path), progress=False)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    state["formulation"]["kind"] = "palette"
    state["formulation"].update(shift=0.0, scale=1.0)
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(InputError, match="edited.pt.*disagrees"):
        load_model(tmp_path / "edited.pt")


def test_a_checkpoint_from_before_formulations_is_a_palette_model(data_dir, tmp_path):
    from emulator.checkpoint import load_model, read_checkpoint
    train(tiny_config(data_dir, steps=1, formulation="palette", lr_band=0.0), str(tmp_path), progress=False)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    for key in ("formulation", "lr_transfer"):
        del state[key]
    for key in ("formulation", "lr_band"):
        del state["config"][key]
    torch.save(state, tmp_path / "old.pt")
    model = load_model(tmp_path / "old.pt")
    assert model.formulation.kind == "palette" and model.formulation.lr_band == 0.0
    assert model.lr_transfer is None


def test_a_briefly_trained_residual_band_model_keeps_what_the_lr_knows(data_dir, tmp_path):
    """After a short training on one pair, the emulated held-out box correlates with its HR below
    half the LR Nyquist at least as well as the LR does (the fidelity goal's r(SR) >= r(LR) -
    0.005): the residual formulation starts from the LR and the band projection holds its large
    scales. At the same budget a palette model reaches r = 0.05 there, a residual one without the
    band 0.27."""
    train(tiny_config(data_dir, steps=60, batch=4, p_mask=0.0, formulation="residual", lr_band=0.5),
          str(tmp_path), progress=False)
    model = load_model(tmp_path / "model.pt")
    held_out = read_pair_box(os.path.join(data_dir, "pair1.h5"))     # the validation pair
    sr = generate_tiles(model, GenerationSettings("dpmpp-2m", 10), held_out.lr[None], None, None, [7])[0]
    k, r_sr = correlation(sr, held_out.hr, BOX)
    _, r_lr = correlation(held_out.lr, held_out.hr, BOX)
    low = k < 0.5 * np.pi / model.lr_spacing
    assert low.sum() >= 1 and np.all(r_sr[low] >= r_lr[low] - 0.005), (r_sr[low], r_lr[low])


def test_cosine_learning_rate_runs_from_the_peak_to_zero(data_dir, tmp_path):
    config = tiny_config(data_dir, steps=4, lr_schedule="cosine")
    # Loshchilov & Hutter eq. 5: eta_max (1 + cos(pi t / T)) / 2
    expected = [2e-3, 2e-3 * (1 + np.cos(np.pi / 4)) / 2, 1e-3, 2e-3 * (1 + np.cos(3 * np.pi / 4)) / 2]
    assert [learning_rate_at(config, t) for t in range(4)] == pytest.approx(expected)
    assert learning_rate_at(config, 4) == pytest.approx(0.0, abs=1e-18)
    assert learning_rate_at(config.replace(lr_schedule="constant"), 3) == 2e-3
    train(config, str(tmp_path), progress=False)
    assert train(config, str(tmp_path), resume=True, progress=False) == 4   # its checkpoint loads
    # the metrics line of step n is written after step n - 1 ran at learning_rate_at(n - 1)
    assert [r["lr"] for r in read_metrics(tmp_path)] == pytest.approx(expected)
    assert all(type(g["lr"]) is float for g in read_checkpoint(tmp_path / "checkpoint.pt")["optimizer"]["param_groups"])


def test_warm_start_takes_the_models_weights_and_statistics(data_dir, tmp_path):
    train(tiny_config(data_dir, steps=3), str(tmp_path / "a"), progress=False)
    source = load_model(tmp_path / "a" / "model.pt")
    config = tiny_config(data_dir, init_from=str(tmp_path / "a"), seed=11, learning_rate=1e-3)
    run = open_run(config, str(tmp_path / "b"), False, [read_pair_box(f) for f in
                                                        sorted(glob.glob(data_dir + "/*.h5"))[:1]], "cpu")
    for name, value in source.net.state_dict().items():
        assert torch.equal(run.net.state_dict()[name], value), name
        assert torch.equal(run.ema.state_dict()[name], value), name
    assert run.meta.normalization == source.normalization and run.meta.formulation == source.formulation
    assert run.step == 0 and not run.optimizer.state
    # a fresh start from seed 11 has other weights
    fresh = open_run(config.replace(init_from=""), str(tmp_path / "c"), False,
                     [read_pair_box(f) for f in sorted(glob.glob(data_dir + "/*.h5"))[:1]], "cpu")
    assert not torch.equal(next(iter(fresh.net.parameters())), next(iter(run.net.parameters())))


def test_a_warm_start_may_move_the_band_of_a_diffusion_model_but_not_of_a_student(data_dir, tmp_path):
    """The band is a projection of the network's estimate, not a weight: a fine-tune from a model of
    band 0.5 at band 0.7 keeps its weights and residual statistics and trains and saves at 0.7; a
    student must keep its teacher's band."""
    source_config = tiny_config(data_dir, steps=1, formulation="residual", lr_band=0.5)
    train(source_config, str(tmp_path / "a"), progress=False)
    source = load_model(tmp_path / "a" / "model.pt")
    config = source_config.replace(init_from=str(tmp_path / "a" / "model.pt"), lr_band=0.7)
    run = open_run(config, str(tmp_path / "b"), False, [read_pair_box(f) for f in
                                                        sorted(glob.glob(data_dir + "/*.h5"))[:1]], "cpu")
    for name, value in source.net.state_dict().items():
        assert torch.equal(run.net.state_dict()[name], value), name
    assert (run.meta.formulation.shift, run.meta.formulation.scale) == (source.formulation.shift,
                                                                       source.formulation.scale)
    assert run.meta.formulation.lr_band == 0.7 != source.formulation.lr_band
    train(config, str(tmp_path / "b"), progress=False)
    assert load_model(tmp_path / "b" / "model.pt").formulation.lr_band == 0.7
    with pytest.raises(InputError, match="model.pt.*lr_band: 0.5 -> 0.7"):
        train(config.replace(distill_steps=1, teacher_steps=2), str(tmp_path / "c"), progress=False)


@pytest.mark.parametrize("change", [{"core": 10}, {"prediction": "eps"}, {"norm_eps": 0.2}])
def test_warm_start_from_another_kind_of_model_is_refused(data_dir, tmp_path, change):
    train(tiny_config(data_dir, steps=1), str(tmp_path / "a"), progress=False)
    config = tiny_config(data_dir, init_from=str(tmp_path / "a" / "model.pt"), **change)
    with pytest.raises(InputError, match=f"model.pt.*{next(iter(change))}"):
        train(config, str(tmp_path / "b"), progress=False)
    with pytest.raises(InputError, match="init_from: .*missing.pt does not exist"):
        train(config.replace(init_from=str(tmp_path / "missing.pt")), str(tmp_path / "c"), progress=False)


def test_density_weight_is_the_lr_mass_per_unknown_voxel():
    """alpha = 1 weighs an unknown voxel by 1 + delta_LR + eps, which is d(delta)/dy / scale of
    the normalisation (autograd of its inverse, an independent route); known voxels weigh 0;
    alpha = 0 is the plain mask."""
    from emulator.normalization import Normalization
    from emulator.train import voxel_weights
    norm = Normalization(shift=-0.8, scale=1.3, eps=0.1, upper=6.0)
    y = torch.linspace(-2.0, 3.0, 64).reshape(1, 1, 4, 4, 4).requires_grad_(True)
    mask = (torch.arange(64).reshape(1, 1, 4, 4, 4) % 3 == 0).float()
    jacobian, = torch.autograd.grad(norm.inverse(y).sum(), y)
    weights = voxel_weights(mask, y.detach(), norm, 1.0)
    torch.testing.assert_close(weights, (1 - mask) * jacobian / norm.scale)
    torch.testing.assert_close(voxel_weights(mask, y.detach(), norm, 2.0), weights ** 2)
    assert torch.equal(voxel_weights(mask, y.detach(), norm, 0.0), 1 - mask)


def test_density_weighted_loss_is_the_weighted_mean(data_dir, tmp_path):
    """The loss with weights is sum(w e^2) / sum(w), checked against numpy on one step's errors;
    a run with the weight trains and records it; students refuse it."""
    from emulator.denoiser import masked_mean
    errors, weights = torch.rand(2, 1, 4, 4, 4), torch.rand(2, 1, 4, 4, 4)
    expected = np.average(errors.numpy(), weights=weights.numpy())
    assert abs(float(masked_mean(errors, weights)) - expected) < 1e-6
    train(tiny_config(data_dir, steps=3, density_weight=1.0), str(tmp_path), progress=False)
    train(tiny_config(data_dir, steps=3), str(tmp_path / "uniform"), progress=False)
    losses = [r["loss"] for r in read_metrics(tmp_path)]
    assert len(losses) == 3 and np.isfinite(losses).all()
    # same crops, noise and weights at step 1: only the weighting differs, and it reaches the loss
    assert abs(losses[0] - read_metrics(tmp_path / "uniform")[0]["loss"]) > 1e-4 * losses[0]
    assert load_model(str(tmp_path / "model.pt")).config.density_weight == 1.0
    with pytest.raises(InputError, match="^density_weight: "):
        TrainConfig(init_from="t.pt", distill_steps=2, density_weight=1.0)
    with pytest.raises(InputError, match="^density_weight: "):
        TrainConfig(density_weight=-1.0)
