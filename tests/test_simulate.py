"""Paired LR/HR simulations: agreement of the two resolutions on shared scales, the grid rule,
and ``emulator simulate`` end to end (file layout, attributes, snapshots, resume, bad input)."""
import json
import os

import h5py
import numpy as np
import pytest

from emulator.cli import main
from sims import pairs, stats
from sims.cosmology import PLANCK18, Cosmology
from sims.errors import InputError
from sims.pairfile import read_pair
from sims.snapshot import read_snapshot


def test_lr_and_hr_runs_of_one_seed_agree_below_a_quarter_of_the_lr_nyquist():
    """32^3 and 64^3 particles, 128 Mpc/h, z = 0, both painted on 64^3: r(k) > 0.99 and
    P_LR / P_HR within 3 % for k < k_Nyq,LR / 4 = pi 32 / (4 L)."""
    config = pairs.PairConfig(seed=7, box_size=128.0, lr_particles=32, hr_particles=64, grid=64,
                              redshift=0.0, steps=10)
    lr = pairs.paint_overdensity(pairs.run_particles(config, 32, PLANCK18)[0], 64, 128.0)
    hr = pairs.paint_overdensity(pairs.run_particles(config, 64, PLANCK18)[0], 64, 128.0)
    k, r = stats.correlation(lr, hr, 128.0)
    p_lr = stats.power_spectrum(lr, 128.0, mas="cic").power
    p_hr = stats.power_spectrum(hr, 128.0, mas="cic").power
    shared = k < np.pi * 32 / (4 * 128.0)
    assert shared.sum() >= 3
    assert np.all(r[shared] > 0.99)
    assert np.all(np.abs(p_lr[shared] / p_hr[shared] - 1) < 0.03)
    # mass conservation, the premise of emulator.generate.conserve_mass: the two runs hold the same
    # mass in cubes of 8 LR spacings (16 voxels, 32 Mpc/h); measured: scatter 0.9 %, worst 4.0 %
    blocks = lambda a: (1 + a).reshape(4, 16, 4, 16, 4, 16).sum(axis=(1, 3, 5))   # noqa: E731
    mass_ratio = blocks(lr) / blocks(hr)
    assert np.abs(mass_ratio - 1).max() < 0.06 and mass_ratio.std() < 0.02


@pytest.mark.parametrize("n,grid,fits", [(16, 16, True), (16, 32, True), (16, 8, True),
                                         (16, 48, True), (16, 24, False), (16, 12, False)])
def test_grid_must_divide_or_be_a_multiple_of_the_lattice(n, grid, fits):
    if fits:
        pairs.check_fits(n, grid, "grid")
    else:
        with pytest.raises(InputError, match="multiple"):
            pairs.check_fits(n, grid, "grid")


@pytest.mark.parametrize("field,kwargs", [
    ("lr_grid", dict(lr_grid=12)), ("grid", dict(grid=24)), ("lr_particles", dict(lr_particles=32)),
    ("lr_particles", dict(lr_particles=7)), ("redshift", dict(redshift=60.0)),
    ("redshift", dict(redshift=-0.5)), ("seed", dict(seed=-1)), ("steps", dict(steps=0)),
    ("force_mesh_factor", dict(force_mesh_factor=0)), ("box_size", dict(box_size=0.0)),
])
def test_pair_config_rejects_bad_values_naming_the_field(field, kwargs):
    args = dict(seed=1, box_size=64.0, lr_particles=8, hr_particles=16, grid=16) | kwargs
    with pytest.raises(InputError) as err:
        pairs.PairConfig(**args)
    assert err.value.source == field


def test_particle_mass_uses_the_critical_density():
    G = 4.30091727e-9                                 # Mpc (km/s)^2 / Msun
    rho_crit = 3 * 100.0 ** 2 / (8 * np.pi * G) / 1e10  # 1e10 Msun/h / (Mpc/h)^3 at h = 1
    np.testing.assert_allclose(pairs.particle_mass(PLANCK18, 100.0, 1000),
                               rho_crit * PLANCK18.Omega_m * 1000.0, rtol=1e-5)


ARGS = ["--box-size", "64", "--lr-particles", "8", "--hr-particles", "16", "--grid", "16",
        "--redshift", "1", "--steps", "3", "--seed", "5", "--z-init", "20", "--no-progress"]


def simulate(out, *extra):
    return main(["simulate", "--out", str(out), *ARGS, *extra])


def test_simulate_writes_paired_boxes_with_attributes_and_snapshots(tmp_path):
    out = tmp_path / "pairs"
    assert simulate(out, "--boxes", "2", "--keep-snapshots") == 0
    assert sorted(os.listdir(out)) == ["box_0000.h5", "box_0001.h5", "snapshots"]
    fields = []
    for i in range(2):
        lr, hr, attrs = read_pair(out / f"box_{i:04d}.h5")
        assert lr.shape == hr.shape == (16, 16, 16) and lr.dtype == hr.dtype == np.float32
        assert abs(lr.mean()) < 1e-5 and abs(hr.mean()) < 1e-5 and lr.min() >= -1
        assert attrs["seed"] == 5 + i and attrs["box_size"] == 64.0 and attrs["redshift"] == 1.0
        assert (attrs["lr_particles"], attrs["hr_particles"], attrs["grid"], attrs["lr_grid"],
                attrs["steps"], attrs["z_init"]) == (8, 16, 16, 16, 3, 20.0)
        assert Cosmology.from_dict(attrs["cosmology"]) == PLANCK18
        assert "simulate" in attrs["created_by"]
        fields.append(hr)
        snap = read_snapshot(out / "snapshots" / f"box_{i:04d}" / "snap_hr.hdf5", load_velocities=True)
        assert snap.positions.shape == (16 ** 3, 3) and snap.redshift == pytest.approx(1.0)
        np.testing.assert_allclose(snap.masses, pairs.particle_mass(PLANCK18, 64.0, 16 ** 3), rtol=1e-6)
        assert np.all(np.isfinite(snap.velocities)) and np.abs(snap.velocities).max() > 1
        assert read_snapshot(out / "snapshots" / f"box_{i:04d}" / "snap_lr.hdf5").positions.shape == (512, 3)
    assert not np.allclose(fields[0], fields[1])


def test_simulate_resumes_skips_complete_boxes_and_recomputes_with_force(tmp_path, monkeypatch, capsys):
    out = tmp_path / "pairs"
    assert simulate(out, "--boxes", "1") == 0
    first = out / "box_0000.h5"
    before = read_pair(first)[1]
    stamp = os.stat(first).st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete box was recomputed")

    with monkeypatch.context() as patch:
        patch.setattr(pairs, "write_simulated_pair", must_not_run)
        assert simulate(out, "--boxes", "1") == 0
    assert os.stat(first).st_mtime_ns == stamp
    assert "1 already complete" in capsys.readouterr().out
    assert simulate(out, "--boxes", "2", "--force") == 0
    assert os.stat(first).st_mtime_ns != stamp
    np.testing.assert_array_equal(read_pair(first)[1], before)      # deterministic in the seed
    assert (out / "box_0001.h5").exists()


def test_first_box_writes_box_i_with_seed_plus_i_as_the_full_run_would(tmp_path, capsys):
    """A Slurm array task runs '--first-box I --boxes 1'; a later full run finds box I complete."""
    out = tmp_path / "pairs"
    assert simulate(out, "--first-box", "1", "--boxes", "1") == 0
    assert os.listdir(out) == ["box_0001.h5"]
    assert read_pair(out / "box_0001.h5")[2]["seed"] == 6
    capsys.readouterr()
    assert simulate(out, "--boxes", "2") == 0
    assert "1 already complete" in capsys.readouterr().out
    assert read_pair(out / "box_0000.h5")[2]["seed"] == 5


@pytest.mark.parametrize("extra,flag", [
    (["--grid", "12"], "--grid"),
    (["--lr-grid", "12"], "--lr-grid"),
    (["--lr-particles", "32"], "--lr-particles"),
    (["--omega-m", "1.5"], "--omega-m"),
    (["--sigma8", "-1"], "--sigma8"),
    (["--redshift", "30"], "--redshift"),
    (["--boxes", "0"], "--boxes"),
    (["--first-box", "-1"], "--first-box"),
])
def test_simulate_bad_input_exits_2_without_output(tmp_path, capsys, extra, flag):
    out = tmp_path / "pairs"
    assert simulate(out, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag}:") and err.count("\n") == 1
    assert not out.exists()


def test_simulate_refuses_to_mix_settings_with_an_existing_box(tmp_path, capsys):
    out = tmp_path / "pairs"
    assert simulate(out) == 0
    stamp = os.stat(out / "box_0000.h5").st_mtime_ns
    assert simulate(out, "--steps", "4") == 2
    assert "steps" in capsys.readouterr().err
    assert os.stat(out / "box_0000.h5").st_mtime_ns == stamp
    with h5py.File(out / "box_0000.h5") as f:
        assert f.attrs["steps"] == 3 and json.loads(f.attrs["cosmology"])["Omega_m"] == PLANCK18.Omega_m
