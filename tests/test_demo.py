"""The end-to-end demo (outpaint.demo) on a tiny untrained model: simulate, outpaint over 2 real
MPI ranks, validate."""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import write_tiny_checkpoint
from emulator.cli import main

MPIEXEC = Path(sys.executable).parent / "mpiexec"


@pytest.mark.mpi
def test_demo_outpaints_on_two_ranks_and_writes_its_report(tmp_path):
    """4 blocks per side: 64 tiles in 8 phases, split between 2 ranks that exchange halos, so an
    outpainting or MPI regression fails here, not only in tests/test_run.py."""
    model = write_tiny_checkpoint(tmp_path / "tiny.pt", tile=16, core=8, spacing=2.0)
    out = tmp_path / "demo"
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "emulator.cli", "demo", "--model", str(model),
               "--out", str(out), "--blocks", "4", "--sampler", "dpmpp-2m", "--steps", "1", "--batch", "8"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("seam statistic") == 1                  # rank 0 alone reports
    report = json.loads((out / "report.json").read_text())
    assert report["ngrid"] == 32 and report["box_size"] == pytest.approx(64.0)
    assert len(report["seam"]["ratio"]) == 3 and "max_seam_ratio" in report["summary"]
    with h5py.File(out / "sr.h5") as f, h5py.File(out / "pair.h5") as pair:
        sr = f["sr"][...]
        assert sr.shape == (1, 32, 32, 32) and np.all(np.isfinite(sr))
        assert f.attrs["ranks"] == 2 and json.loads(f.attrs["generation"])["steps"] == 1
        assert pair["lr"].shape == pair["hr"].shape == (32, 32, 32)
    timings = json.loads((out / "timings.json").read_text())
    assert {"simulate held-out pair", "upsample (2 MPI ranks)", "validate"} == set(timings)
    for plot in ("power.png", "correlation.png", "slice.png"):
        assert (out / plot).stat().st_size > 0


def test_demo_rejects_an_odd_block_count(tmp_path, capsys):
    model = write_tiny_checkpoint(tmp_path / "tiny.pt", tile=16, core=8, spacing=2.0)
    assert main(["demo", "--model", str(model), "--blocks", "3", "--out", str(tmp_path / "d")]) == 2
    assert "--blocks: must be even" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
