"""``emulator calibrate`` (outpaint.calibrate): the corner transfer and the void map of a model
fitted on its own outpainted training boxes, on one rank and under mpiexec, and its refusals."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import write_tiny_checkpoint
from emulator.checkpoint import load_model
from emulator.cli import main
from emulator.config import GenerationSettings
from outpaint.calibrate import work_path
from outpaint.run import upsample_box
from sims.h5io import read_field
from sims.pairfile import write_pair
from sims.stats import corner_transfer, fit_transfer, fit_void_map, k_nyquist

MPIEXEC = Path(sys.executable).parent / "mpiexec"
FLAGS = ["--sampler", "dpmpp-2m", "--steps", "1", "--batch", "8", "--seed", "3"]


def lognormal(seed, n=32, sigma=0.8):
    g = np.random.default_rng(seed).normal(size=(n, n, n))
    return (np.exp(sigma * g - sigma ** 2 / 2) - 1).astype(np.float32)


@pytest.fixture
def setup(tmp_path):
    """A tiny model of tile 16 (core 8) and spacing 2 Mpc/h, and 2 training pairs of 32^3 voxels."""
    model = write_tiny_checkpoint(tmp_path / "tiny.pt", tile=16, core=8, spacing=2.0)
    data = tmp_path / "train"
    data.mkdir()
    for i in range(2):
        write_pair(data / f"box_{i}.h5", lognormal(10 + i, sigma=0.5), lognormal(20 + i), box_size=64.0,
                   redshift=0.0, cosmology={})
    return model, data


def outpainted_pairs(tmp_path, model, data, name, loaded=None, corner_filter=False):
    """(SR, HR) of the 2 training boxes outpainted by upsample as calibrate does (seed 3)."""
    fields = []
    for i in range(2):
        sr = tmp_path / f"{name}_{i}.h5"
        upsample_box(str(model), f"{data}/box_{i}.h5:lr", str(sr),
                     GenerationSettings("dpmpp-2m", 1, corner_filter=corner_filter), seed=3, batch_size=8,
                     loaded=loaded)
        fields.append((read_field(f"{sr}:sr", index=0).data, read_field(f"{data}/box_{i}.h5:hr").data))
    return fields


def test_calibrate_stores_the_corner_transfer_and_void_map_of_the_models_own_outpainting(tmp_path, setup):
    """The corner transfer fitted on the model's outpainting, the void map on its outpainting
    through that transfer (or, with --no-corner-filter, on the plain outpainting, and no transfer)."""
    model, data = setup
    out, plain = tmp_path / "calibrated.pt", tmp_path / "plain.pt"
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--out", str(out), "--boxes", "2",
                 *FLAGS]) == 0
    assert not os.path.exists(work_path(out))
    # independently: the same outpainting by upsample, and the fits on it
    raw = outpainted_pairs(tmp_path, model, data, "raw")
    k, t = corner_transfer(*fit_transfer(raw, 64.0), k_nyquist(32, 64.0))
    stored = load_model(out)
    np.testing.assert_allclose(stored.corner_transfer["k"], k)
    np.testing.assert_allclose(stored.corner_transfer["t"], t, rtol=1e-5)
    assert t[-1] < 0.9                       # the tiny model's corners are damped
    damped = dataclasses.replace(load_model(model), corner_transfer={"k": k.tolist(), "t": t.tolist()})
    x, y = fit_void_map(outpainted_pairs(tmp_path, model, data, "filtered", damped, corner_filter=True))
    np.testing.assert_allclose(stored.void_map["x"], x, rtol=1e-5)
    np.testing.assert_allclose(stored.void_map["y"], y, rtol=1e-5)
    stored_transfer = stored.corner_transfer
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--out", str(plain), "--boxes", "2",
                 "--no-corner-filter", *FLAGS]) == 0
    assert load_model(plain).corner_transfer is None
    x, y = fit_void_map(raw)
    stored = load_model(plain).void_map
    np.testing.assert_allclose(stored["x"], x, rtol=1e-6)
    np.testing.assert_allclose(stored["y"], y, rtol=1e-6)
    assert load_model(model).void_map is None
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--out", str(out), *FLAGS]) == 2
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--out", str(out), "--boxes", "3",
                 "--force", *FLAGS]) == 2                       # only 2 pairs: refused before anything
    assert load_model(out).corner_transfer == stored_transfer        # nothing touched by the refusals


def test_calibrate_refuses_a_corner_transfer_over_boxes_of_two_grids(tmp_path, setup, capsys):
    """Spectra of two grids do not share shells: refused before any outpainting, unless the corner
    transfer is not fitted."""
    model, data = setup
    write_pair(data / "box_2.h5", lognormal(12, n=64, sigma=0.5), lognormal(22, n=64), box_size=128.0,
               redshift=0.0, cosmology={})
    out = tmp_path / "calibrated.pt"
    args = ["calibrate", "--model", str(model), "--data", str(data), "--out", str(out), "--boxes", "3", *FLAGS]
    assert main(args) == 2 and not out.exists() and not os.path.exists(work_path(out))
    assert "[32, 64] voxels per side" in capsys.readouterr().err


def test_calibrate_resumes_its_own_work_only(tmp_path, setup):
    """A finished outpainted box in the work folder is used as it is when the inputs match (here
    replaced by half of itself, whose map differs), and outpainted anew when they do not."""
    model, data = setup
    out = tmp_path / "calibrated.pt"
    args = ["calibrate", "--model", str(model), "--data", str(data), "--out", str(out), "--no-corner-filter",
            *FLAGS]
    assert main(args) == 0
    reference = load_model(out).void_map
    work = Path(work_path(out))
    work.mkdir()
    sr = work / "box_0000.h5"
    upsample_box(str(model), f"{data}/box_0.h5:lr", str(sr), GenerationSettings("dpmpp-2m", 1), seed=3,
                 batch_size=8)
    inputs = {"model": str(model.resolve()), "pairs": [str((data / "box_0.h5").resolve())], "seed": 3,
              "generation": GenerationSettings("dpmpp-2m", 1, corner_filter=False, void_map=False).to_dict(),
              "corner_filter": False}
    (work / "inputs.json").write_text(json.dumps(inputs))
    with h5py.File(sr, "r+") as f:
        f["sr"][...] = 0.5 * f["sr"][...]
        halved = f["sr"][0]
    assert main(args + ["--force"]) == 0 and not work.exists()
    x, y = fit_void_map([(halved, read_field(f"{data}/box_0.h5:hr").data)])
    np.testing.assert_allclose(load_model(out).void_map["x"], x, rtol=1e-6)
    assert len(x) != len(reference["x"]) or not np.allclose(x, reference["x"])
    work.mkdir()
    (work / "inputs.json").write_text("{}")                      # another calibration's leftovers
    assert main(args + ["--force"]) == 0
    np.testing.assert_allclose(load_model(out).void_map["y"], reference["y"])


@pytest.mark.mpi
def test_calibrate_on_two_ranks_fits_the_map_of_one(tmp_path, setup):
    model, data = setup
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--out", str(one), *FLAGS]) == 0
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "emulator.cli", "calibrate", "--model", str(model),
               "--data", str(data), "--out", str(two), *FLAGS]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("void map of") == 1                   # rank 0 alone writes
    np.testing.assert_allclose(load_model(two).corner_transfer["t"], load_model(one).corner_transfer["t"],
                               rtol=1e-5)
    np.testing.assert_allclose(load_model(two).void_map["y"], load_model(one).void_map["y"], rtol=1e-5, atol=1e-6)
