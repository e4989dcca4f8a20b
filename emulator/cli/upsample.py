"""``emulator upsample``: emulate the HR field of an LR box with a trained model.

An LR box of exactly one tile is generated here, ``--samples`` times, into dataset ``sr`` of
shape (K, N, N, N). A larger box goes to the MPI outpainting driver
``outpaint.run.upsample_box`` (the one dispatch point, :func:`run`), which writes its one sample
as ``sr`` (1, N, N, N): the output always has the leading sample axis.
"""
import argparse
import os
from pathlib import Path

from sims.errors import InputError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "default_model"
MODEL_FILE = "model.pt"
"""The inference checkpoint inside a run directory (``emulator train --out``) or the packaged default."""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "upsample", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Emulate the HR field of an LR box with a trained model.",
        description="Generate the high-resolution overdensity of a low-resolution box. The LR "
                    "field must be an overdensity on the model's HR grid spacing or on its LR "
                    "grid spacing (then Fourier-resampled to the HR grid). The output holds "
                    "dataset 'sr' of shape (samples, N, N, N). A box of one tile is generated "
                    "directly, --samples times; a larger box is outpainted tile by tile in 8 "
                    "phases, over MPI ranks when launched with mpiexec, into one sample "
                    "(shape (1, N, N, N)).")
    p.add_argument("--model", default=str(DEFAULT_MODEL), metavar="CKPT",
                   help=f"Model checkpoint, or a directory holding {MODEL_FILE} (a training run "
                        "directory, or the packaged default model).")
    p.add_argument("--lr", required=True, metavar="FILE[:DATASET]",
                   help="HDF5 file of the LR overdensity with a 'box_size' attribute [Mpc/h]; "
                        "the dataset defaults to 'lr'.")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="Output HDF5 file with dataset 'sr' of shape (samples, N, N, N) "
                        "(written under a temporary name, renamed when complete).")
    p.add_argument("--sampler", default="dpmpp-2m",
                   help="Sampler: ddpm (the reference's ancestral sampler), ddim, dpmpp-2m, "
                        "dpmpp-2m-sde or heun.")
    p.add_argument("--steps", type=int, default=20,
                   help="Sampler steps (heun makes 2 network evaluations per step but the last; "
                        "ddpm with 2000 steps is the reference baseline).")
    p.add_argument("--spacing", default=None,
                   help="Noise levels of the steps: karras, logsnr or trained (default: trained "
                        "for ddpm, karras otherwise).")
    p.add_argument("--seed", type=int, default=0,
                   help="Global seed; sample k of a one-tile box draws its noise from the seed "
                        "of tile 0 under global seed SEED + k.")
    p.add_argument("--samples", type=int, default=1,
                   help="Number of independent samples of a one-tile box (boxes larger than one "
                        "tile: 1).")
    p.add_argument("--batch", type=int, default=8,
                   help="Tiles (or samples) per network batch; the result does not depend on it.")
    p.add_argument("--tile", type=int, default=None,
                   help="Tile side [voxels]; must equal the model's (default: the model's).")
    p.add_argument("--core", type=int, default=None,
                   help="Outpainting core side [voxels]; must equal the model's (default: the model's).")
    p.add_argument("--lr-consistency", type=float, default=None, metavar="F",
                   help="Take the band below F times the LR Nyquist wavenumber of every x0 "
                        "estimate from the LR (off unless given; e.g. 0.5).")
    p.add_argument("--mass-conservation", action=argparse.BooleanOptionalAction, default=True,
                   help="Rescale the generated voxels of every tile to hold the LR's mass there "
                        "(default on; dark-matter mass is conserved between the LR and HR runs).")
    p.add_argument("--bf16", action="store_true",
                   help="Run the network under bf16 autocast on CUDA (ignored on CPU).")
    p.add_argument("--resume", action="store_true",
                   help="Finish an interrupted run of the same command (an existing complete "
                        "output is left as it is).")
    p.add_argument("--force", action="store_true",
                   help="Overwrite an existing output (and any interrupted run's state).")
    p.set_defaults(run=run)


def model_path(path):
    """The checkpoint file of ``--model``: the path itself, or ``MODEL_FILE`` inside a directory."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        hint = " (no default model is installed: train one with 'emulator train' and pass " \
               "--model RUN_DIR)" if path.parent == DEFAULT_MODEL else ""
        raise InputError("--model", f"{path} does not exist{hint}")
    return str(path)


def run(args):
    import torch

    from emulator.checkpoint import load_model
    from outpaint import run as outpaint

    _check_counts(args)
    path = model_path(args.model)
    model = load_model(path, device="cuda" if torch.cuda.is_available() else "cpu")
    tile, core = outpaint.check_model_tile(model, args.tile, args.core)
    source = outpaint.open_lr(args.lr, model)
    options = {"spacing": args.spacing, "lr_consistency": args.lr_consistency,
               "mass_conservation": args.mass_conservation, "bf16": args.bf16}
    if source.n > tile:
        if args.samples != 1:
            raise InputError("--samples", "a box larger than one tile is emulated once per run; "
                                          "vary --seed for more samples")
        outpaint.upsample_box(path, args.lr, args.out, tile=tile, core=core, sampler=args.sampler,
                              steps=args.steps, seed=args.seed, batch_size=args.batch,
                              resume=args.resume, force=args.force, generate_options=options)
        return 0
    if source.n < tile:
        raise InputError(str(source.spec), f"box of {source.n}^3 HR voxels is smaller than the "
                                           f"model's tile {tile}^3")
    outpaint.check_generate_options(model, args.sampler, args.steps, options)
    # one tile is one job: under mpiexec rank 0 alone generates it and writes the file
    from outpaint.mpi import world
    from sims.outputs import lock_output
    if world().Get_rank() == 0:
        with lock_output(args.out):
            if outpaint.output_action(args.out, args.resume, args.force) != "done":
                upsample_tile(model, path, source, args, options)
    return 0


def _check_counts(args):
    for flag, value in (("--steps", args.steps), ("--samples", args.samples), ("--batch", args.batch)):
        if value < 1:
            raise InputError(flag, f"must be a positive integer, got {value}")


def read_lr(source):
    """The LR overdensity on the HR grid, float32 (n, n, n): read, checked (finite, delta >= -1)
    and Fourier-resampled (clipped at -1) when the file holds the model's LR grid."""
    import numpy as np

    from outpaint.run import DELTA_MIN
    from sims.h5io import read_field
    from sims.mesh import resample_overdensity

    lr = read_field(source.spec).data
    if lr.min() < DELTA_MIN:
        raise InputError(str(source.spec), "must be an overdensity (delta >= -1); "
                                           f"{np.count_nonzero(lr < DELTA_MIN)} values are below -1")
    if source.n_file != source.n:
        lr = resample_overdensity(lr, source.n)
    return lr


def upsample_tile(model, path, source, args, options):
    """Generate ``args.samples`` samples of a one-tile box and write them as ``sr`` (K, n, n, n)."""
    import numpy as np

    from emulator.generate import generate_tiles
    from outpaint.plan import tile_seed
    from sims.h5io import atomic_h5, write_attrs

    lr = read_lr(source)
    lrs = np.broadcast_to(lr, (args.samples,) + lr.shape)
    seeds = [tile_seed(args.seed + k, 0) for k in range(args.samples)]
    sr = generate_tiles(model, lrs, None, None, seeds, sampler=args.sampler, steps=args.steps,
                        batch_size=args.batch, progress=True, **options)
    attrs = {k: source.attrs[k] for k in ("redshift", "cosmology") if k in source.attrs}
    with atomic_h5(args.out) as f:
        f.create_dataset("sr", data=sr.astype(np.float32))
        write_attrs(f, model=os.path.abspath(path), sampler=args.sampler, steps=args.steps,
                    seed=args.seed, samples=args.samples, tile=model.tile, core=model.core,
                    box_size=source.box_size, lr=str(source.spec),
                    generate_options={k: v for k, v in options.items() if v is not None}, **attrs)
