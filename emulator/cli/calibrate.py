"""``emulator calibrate``: fit a model's corner transfer and void map on its own outpainted
training boxes (outpaint.calibrate.calibrate)."""
import argparse

from emulator.cli import add_generation_flags, generation_settings
from emulator.config import DEFAULT_MODEL, MODEL_FILE


def add_parser(subparsers):
    p = subparsers.add_parser(
        "calibrate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Fit a model's corner transfer and void map (its power beyond the grid Nyquist and "
             "the one-point PDF of its underdense voxels) on training boxes.",
        description="Outpaint the LR of training pairs with the model and fit, against their HR, "
                    "the transfer function that damps the generated power beyond the grid Nyquist "
                    "wavenumber down to the truth's (never amplifying; skipped with "
                    "--no-corner-filter); outpaint them again through it and fit the quantile map "
                    "that sends the generated underdense voxels (delta < 0) to the truth's "
                    "one-point distribution, keeping their mass. Writes a copy of the checkpoint "
                    "that carries both; 'emulator upsample' then applies them to every generated "
                    "tile (--no-corner-filter, --no-void-map turn them off). Use the generation "
                    "flags you will sample with. Runs over MPI ranks under mpiexec; rerun the "
                    "same command to resume (the outpainted boxes wait in OUT.calibrate until OUT "
                    "is written).")
    p.add_argument("--model", default=str(DEFAULT_MODEL), metavar="CKPT",
                   help=f"Model checkpoint, or a directory holding {MODEL_FILE}.")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="Directory of the model's training pairs (paired HDF5 files with 'lr' "
                        "and 'hr' on the model's HR grid spacing).")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="Checkpoint to write (may be the model's own file, with --force).")
    p.add_argument("--boxes", type=int, default=1,
                   help="Training pairs to outpaint (the first ones, sorted by name).")
    add_generation_flags(p)
    p.add_argument("--seed", type=int, default=0, help="Global seed of the outpainting.")
    p.add_argument("--batch", dest="batch_size", type=int, default=None,
                   help="Tiles per network batch (default: automatic, as for upsample).")
    p.add_argument("--force", action="store_true",
                   help="Overwrite an existing output (e.g. the model's own file).")
    p.set_defaults(run=run)


def run(args):
    from outpaint.calibrate import calibrate

    calibrate(args.model, args.data, args.out, generation_settings(args), boxes=args.boxes,
              seed=args.seed, batch_size=args.batch_size, force=args.force)
