"""The end-to-end demo on a tiny untrained model: simulate, 2-rank outpainting, validate."""
import json

import h5py
import numpy as np
import pytest

from conftest import write_tiny_checkpoint
from emulator.cli import main
from emulator.demo import DemoConfig, run_demo


@pytest.mark.mpi
def test_demo_runs_end_to_end_and_writes_its_report(tmp_path):
    model = write_tiny_checkpoint(tmp_path / "tiny.pt", tile=16, core=8, spacing=2.0)
    out = tmp_path / "demo"
    report = run_demo(DemoConfig(model=str(model), out_dir=str(out), blocks=2, steps=2,
                                 ranks=2, batch=4))
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["ngrid"] == 16 and on_disk["box_size"] == pytest.approx(32.0)
    assert len(on_disk["seam"]["ratio"]) == 3 and "max_seam_ratio" in on_disk["summary"]
    assert report["summary"]["min_r_half_nyq"] == on_disk["summary"]["min_r_half_nyq"]
    with h5py.File(out / "sr.h5") as f, h5py.File(out / "pair.h5") as pair:
        sr = f["sr"][...]
        assert sr.shape[-3:] == (16, 16, 16) and np.all(np.isfinite(sr))
        assert pair["lr"].shape == pair["hr"].shape == (16, 16, 16)
    assert set(json.loads((out / "timings.json").read_text())) >= {"validate"}
    for plot in ("power.png", "correlation.png", "slice.png"):
        assert (out / plot).stat().st_size > 0


def test_demo_rejects_an_odd_block_count(tmp_path, capsys):
    model = write_tiny_checkpoint(tmp_path / "tiny.pt", tile=16, core=8, spacing=2.0)
    assert main(["demo", "--model", str(model), "--blocks", "3", "--out", str(tmp_path / "d")]) == 2
    assert "--blocks: must be even" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
