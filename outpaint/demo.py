"""The end-to-end demo: simulate a held-out pair, upsample its LR box with the default model by
outpainting over the MPI ranks of the run (``mpiexec -n R emulator demo``), validate against the
HR truth, print a summary. Collective: rank 0 simulates, validates and prints."""
import json
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.checkpoint import find_model, load_model
from emulator.config import GenerationSettings
from emulator.generate import sampling_plan
from outpaint.mpi import abort_on_error, idle_barrier, world
from outpaint.upsample import upsample
from sims.cosmology import PLANCK18
from sims.errors import InputError, check_int
from sims.pairs import simulate_pair
from sims.validation import summary_table, validate_files


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs (InputError naming the setting of a bad value). ``blocks``: outpainting
    blocks per axis (even); the box side is ``blocks * core`` voxels at the model's training grid
    spacing, with HR particles one per voxel and LR particles at the model's LR resolution
    (``lr_spacing``, particles per side). ``model``: checkpoint file or directory. ``settings``:
    how tiles are sampled (GenerationSettings; an unset sampler or steps: the model's own). ``batch_size``: tiles per network batch.
    ``sim_steps``: PM steps of the held-out pair."""

    model: str
    out_dir: str
    blocks: int
    seed: int
    settings: GenerationSettings
    batch_size: int
    sim_steps: int = 10

    def __post_init__(self):
        if self.blocks < 2 or self.blocks % 2:
            raise InputError("blocks", f"must be even and >= 2, got {self.blocks}")
        check_int("batch_size", self.batch_size)


def _timed(label, timings, function, *args, **kwargs):
    """``function(*args, **kwargs)``, its wall time recorded in ``timings`` and printed (None:
    neither, on ranks other than 0)."""
    if timings is not None:
        print(f"[demo] {label} ...", flush=True)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    if timings is not None:
        timings[label] = time.perf_counter() - start
        print(f"[demo] {label}: {timings[label]:.1f} s", flush=True)
    return result


def run_demo(config, comm=None):
    """Run the demo, collective over ``comm`` (default COMM_WORLD); returns the validation report
    (also in ``out_dir/report.json``) on rank 0, None on the others."""
    comm = world() if comm is None else comm
    rank = comm.Get_rank()
    model = load_model(find_model(config.model))
    settings = config.settings.for_model(model)
    sampling_plan(model, settings)                 # before minutes of simulation
    out = Path(config.out_dir)
    grid = config.blocks * model.core
    box_size = grid * model.spacing
    pair, sr = str(out / "pair.h5"), str(out / "sr.h5")
    timings = {} if rank == 0 else None
    with abort_on_error(comm):
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            _timed("simulate held-out pair", timings, simulate_pair, pair, seed=config.seed,
                   box_size=box_size, lr_particles=round(box_size / model.lr_spacing), hr_particles=grid,
                   grid=grid, redshift=0.0, steps=config.sim_steps, z_init=49.0, cosmo=PLANCK18)
    idle_barrier(comm)                              # rank 0 simulates on every core
    _timed(f"upsample ({comm.Get_size()} MPI ranks)", timings, upsample, config.model, f"{pair}:lr", sr,
           settings, seed=config.seed, batch_size=config.batch_size, force=True, comm=comm)
    if rank != 0:
        return None
    report = _timed("validate", timings, validate_files, f"{pair}:hr", [f"{sr}:sr"], str(out),
                    lr_spec=f"{pair}:lr", mas="cic", core=model.core, lr_transfer=model.lr_transfer)
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    print(f"\nbox {box_size:g} Mpc/h on {grid}^3, seed {config.seed}, {settings.sampler} {settings.steps} steps, "
          f"tile {model.tile} core {model.core}")
    print(summary_table(report))
    seam = report.get("seam", {})
    if seam:
        print(f"seam statistic per axis (1 = no seams): {seam.get('ratio')}")
    print("wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"outputs in {out}/: report.json, *.png, sr.h5, pair.h5")
    return report
