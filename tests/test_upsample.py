"""The one upsampling entry point (outpaint.upsample) and the ``emulator upsample`` command:
one-tile boxes, outpainted boxes, their shared output and provenance, bad input."""
import json

import h5py
import numpy as np
import pytest

from emulator import checkpoint as ckpt
from emulator.cli import main
from emulator.config import GenerationSettings
from outpaint.upsample import upsample
from sims.h5io import atomic_h5, write_attrs
from test_generate import lognormal_tiles, tiny_model


@pytest.fixture
def model_file(tmp_path):
    model = tiny_model()
    meta = ckpt.ModelMeta(config=model.config, spacing=model.spacing, lr_spacing=model.lr_spacing,
                          normalization=model.normalization)
    path = tmp_path / "model.pt"
    ckpt.save_inference_model(path, meta, model.net)
    return path


def write_lr(path, field, box_size, dataset="lr"):
    with atomic_h5(path) as f:
        f[dataset] = field
        write_attrs(f, box_size=box_size, redshift=0.5)
    return path


def test_upsample_one_tile_writes_k_samples(tmp_path, model_file):
    lr = write_lr(tmp_path / "lr.h5", lognormal_tiles(4, 1)[0], box_size=32.0)
    out = tmp_path / "sr.h5"
    args = ["upsample", "--model", str(tmp_path), "--lr", str(lr), "--out", str(out), "--steps", "3",
            "--samples", "3", "--batch", "2", "--seed", "5"]
    assert main(args) == 0
    with h5py.File(out, "r") as f:
        sr = f["sr"][...]
        attrs = dict(f.attrs)
    assert sr.shape == (3, 16, 16, 16) and sr.dtype == np.float32 and np.all(np.isfinite(sr))
    generation = json.loads(attrs["generation"])
    # the model has neither a corner transfer nor a void map
    assert generation == GenerationSettings("dpmpp-2m", 3, corner_filter=False, void_map=False).to_dict()
    assert attrs["seed"] == 5
    assert attrs["box_size"] == 32.0 and attrs["redshift"] == 0.5 and attrs["tile"] == 16
    assert attrs["samples"] == 3 and attrs["ranks"] == 1
    assert np.abs(sr[0] - sr[1]).max() > 1e-2                    # independent samples
    np.testing.assert_allclose(sr.mean(axis=(1, 2, 3)), lognormal_tiles(4, 1)[0].mean(), atol=1e-5)
    assert main(args) == 2                                       # exists: needs --force
    assert main(args + ["--resume"]) == 0


def test_upsample_lr_on_its_own_grid_is_resampled(tmp_path, model_file):
    lr = write_lr(tmp_path / "lr.h5", lognormal_tiles(5, 1, n=8)[0], box_size=32.0)
    assert main(["upsample", "--model", str(model_file), "--lr", f"{lr}:lr", "--out",
                 str(tmp_path / "sr.h5"), "--steps", "2"]) == 0
    with h5py.File(tmp_path / "sr.h5", "r") as f:
        assert f["sr"].shape == (1, 16, 16, 16)


def test_upsample_bad_input(tmp_path, model_file, capsys):
    good = lognormal_tiles(6, 1)[0]
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    below = good.copy()
    below[1, 2, 3] = -1.5
    cases = {"nan": (nan, 32.0, "NaN"), "spacing": (good, 20.0, "grid spacing"),
             "below": (below, 32.0, "overdensity"), "small": (good[:8, :8, :8], 16.0, "smaller")}
    for name, (field, box, words) in cases.items():
        lr = write_lr(tmp_path / f"{name}.h5", field, box)
        out = tmp_path / f"{name}_sr.h5"
        assert main(["upsample", "--model", str(model_file), "--lr", str(lr), "--out", str(out)]) == 2
        assert words in capsys.readouterr().err and not out.exists()
    missing = main(["upsample", "--model", str(tmp_path / "none"), "--lr", str(lr), "--out", "x.h5"])
    assert missing == 2 and "does not exist" in capsys.readouterr().err


def test_upsample_larger_box_goes_to_outpainting(tmp_path, model_file, monkeypatch):
    lr = write_lr(tmp_path / "lr.h5", lognormal_tiles(7, 1, n=32)[0], box_size=64.0)
    out = tmp_path / "sr.h5"
    reads = []
    read_checkpoint = ckpt.read_checkpoint
    monkeypatch.setattr(ckpt, "read_checkpoint", lambda path: reads.append(path) or read_checkpoint(path))
    assert main(["upsample", "--model", str(model_file), "--lr", str(lr), "--out", str(out),
                 "--steps", "1", "--batch", "64"]) == 0
    with h5py.File(out, "r") as f:
        assert f["sr"].shape == (1, 32, 32, 32)
        recorded = GenerationSettings("dpmpp-2m", 1, corner_filter=False, void_map=False).to_dict()
        assert json.loads(f.attrs["generation"]) == recorded
    assert reads == [str(model_file)]    # the checkpoint is read once, not again by the outpainting


def test_one_tile_and_outpainted_outputs_record_the_same_provenance(tmp_path, model_file):
    """One writer, one provenance record: the same keys whichever path made the field, with
    every generation setting, including the ones a user did not type."""
    small = write_lr(tmp_path / "small.h5", lognormal_tiles(8, 1)[0], box_size=32.0)
    big = write_lr(tmp_path / "big.h5", lognormal_tiles(9, 1, n=32)[0], box_size=64.0)
    settings = GenerationSettings("ddim", 1, lr_consistency=0.5, mass_conservation=False, corner_filter=False,
                                  void_map=False)
    attrs = []
    for lr in (small, big):
        out = upsample(model_file, lr, tmp_path / f"{lr.stem}_sr.h5", settings, batch_size=64)
        with h5py.File(out, "r") as f:
            attrs.append(dict(f.attrs))
    assert set(attrs[0]) == set(attrs[1])
    assert all(json.loads(a["generation"]) == settings.to_dict() for a in attrs)
    assert [a["box_size"] for a in attrs] == [32.0, 64.0]


def test_upsample_checks_every_setting_before_touching_the_output(tmp_path, model_file, capsys):
    lr = write_lr(tmp_path / "lr.h5", lognormal_tiles(4, 1)[0], box_size=32.0)
    out = tmp_path / "sr.h5"
    for flags, words in ((["--steps", "0"], "--steps: must be an integer >= 1"),
                         (["--sigma-schedule", "linear"], "--sigma-schedule: must be one of"),
                         (["--batch", "0"], "--batch: must be an integer >= 1"),
                         (["--lr-consistency", "1.5"], "--lr-consistency: must be a number in (0.0, 1.0]")):
        assert main(["upsample", "--model", str(model_file), "--lr", str(lr), "--out", str(out), *flags]) == 2
        assert words in capsys.readouterr().err and not out.exists()
