"""The end-to-end demo: simulate a held-out pair, upsample its LR box with the default model by
MPI outpainting, validate against the HR truth, print a summary."""
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sims.cosmology import PLANCK18
from sims.errors import InputError


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs (InputError naming the flag of a bad value). ``blocks`` outpainting
    blocks per axis (even); the box side is ``blocks * core`` voxels at the model's training grid
    spacing, with HR particles one per voxel and LR particles at the model's LR resolution
    (``lr_spacing``, particles per side). ``steps``: 5, the setting of the default model's
    held-out figures (its model card compares 3 to 20)."""

    model: str
    out_dir: str
    blocks: int = 4
    seed: int = 90210
    sim_steps: int = 10
    sampler: str = "dpmpp-2m"
    steps: int = 5
    ranks: int = 2
    batch: int = 4

    def __post_init__(self):
        if self.blocks < 2 or self.blocks % 2:
            raise InputError("--blocks", f"must be even and >= 2, got {self.blocks}")
        for name in ("steps", "ranks", "batch"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name}", f"must be >= 1, got {getattr(self, name)}")


def mpiexec():
    """The ``mpiexec`` of this Python environment, or None where there is none."""
    candidate = Path(sys.executable).parent / "mpiexec"
    return str(candidate) if candidate.exists() else shutil.which("mpiexec")


def _timed(label, timings, function, *args, **kwargs):
    print(f"[demo] {label} ...", flush=True)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    timings[label] = time.perf_counter() - start
    print(f"[demo] {label}: {timings[label]:.1f} s", flush=True)
    return result


def _upsample(config, lr_spec, sr_path):
    """``emulator upsample`` over ``config.ranks`` MPI ranks (one process when MPI is missing)."""
    command = [sys.executable, "-m", "emulator.cli", "upsample", "--model", config.model,
               "--lr", lr_spec, "--out", sr_path, "--sampler", config.sampler,
               "--steps", str(config.steps), "--seed", str(config.seed), "--batch",
               str(config.batch), "--force"]
    launcher = mpiexec()
    if launcher and config.ranks > 1:
        command = [launcher, "-n", str(config.ranks), *command]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    subprocess.run(command, check=True, env=env)


def run_demo(config):
    """Run the demo; returns the validation report (also in ``out_dir/report.json``)."""
    from emulator.checkpoint import load_model
    from outpaint.run import check_generate_options
    from sims.pairs import simulate_pair
    from sims.validation import summary_table, validate_files

    model = load_model(config.model)
    check_generate_options(model, config.sampler, config.steps)      # before minutes of simulation
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = config.blocks * model.core
    box_size = grid * model.spacing
    pair, sr = str(out / "pair.h5"), str(out / "sr.h5")
    timings = {}
    _timed("simulate held-out pair", timings, simulate_pair, pair, seed=config.seed,
           box_size=box_size, lr_particles=round(box_size / model.lr_spacing), hr_particles=grid, grid=grid, redshift=0.0,
           steps=config.sim_steps, z_init=49.0, cosmo=PLANCK18)
    _timed(f"upsample ({config.ranks} MPI ranks)", timings, _upsample, config, f"{pair}:lr", sr)
    report = _timed("validate", timings, validate_files, f"{pair}:hr", [f"{sr}:sr"], str(out),
                    lr_spec=f"{pair}:lr", mas="cic", core=model.core,
                    lr_transfer=model.lr_transfer)
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    print(f"\nbox {box_size:g} Mpc/h on {grid}^3, seed {config.seed}, {config.sampler} "
          f"{config.steps} steps, tile {model.tile} core {model.core}")
    print(summary_table(report))
    seam = report.get("seam", {})
    if seam:
        print(f"seam statistic per axis (1 = no seams): {seam.get('ratio')}")
    print("wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"outputs in {out}/: report.json, *.png, sr.h5, pair.h5")
    return report
