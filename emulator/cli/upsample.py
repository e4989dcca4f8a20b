"""``emulator upsample``: emulate the HR field of an LR box with a trained model
(outpaint.upsample.upsample)."""
import argparse

from emulator.cli import add_generation_flags, generation_settings
from emulator.config import DEFAULT_MODEL, MODEL_FILE


def add_parser(subparsers):
    p = subparsers.add_parser(
        "upsample", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Emulate the HR field of an LR box with a trained model.",
        description="Generate the high-resolution overdensity of a low-resolution box. The LR "
                    "field must be an overdensity on the model's HR grid spacing or on its LR "
                    "grid spacing (then Fourier-resampled to the HR grid). The output holds "
                    "dataset 'sr' of shape (samples, N, N, N) and records the settings that made "
                    "it. A box of one tile is generated directly, --samples times; a larger box "
                    "is outpainted tile by tile in 8 phases, over MPI ranks when launched with "
                    "mpiexec, into one sample (shape (1, N, N, N)).")
    p.add_argument("--model", default=str(DEFAULT_MODEL), metavar="CKPT",
                   help=f"Model checkpoint, or a directory holding {MODEL_FILE} (a training run "
                        "directory, or the packaged default model).")
    p.add_argument("--lr", required=True, metavar="FILE[:DATASET]",
                   help="HDF5 file of the LR overdensity with a 'box_size' attribute [Mpc/h]; "
                        "the dataset defaults to 'lr'.")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="Output HDF5 file with dataset 'sr' of shape (samples, N, N, N) "
                        "(written under a temporary name, renamed when complete).")
    add_generation_flags(p)
    p.add_argument("--seed", type=int, default=0,
                   help="Global seed; sample k of a one-tile box draws its noise from the seed "
                        "of tile 0 under global seed SEED + k.")
    p.add_argument("--samples", type=int, default=1,
                   help="Number of independent samples of a one-tile box (boxes larger than one "
                        "tile: 1).")
    p.add_argument("--batch", dest="batch_size", type=int, default=None,
                   help="Tiles (or samples) per network batch; the result does not depend on it. "
                        "Default: on a GPU all tiles of a phase (halved until they fit in memory), "
                        "on a CPU 8.")
    p.add_argument("--tile", type=int, default=None,
                   help="Tile side [voxels]; must equal the model's (default: the model's).")
    p.add_argument("--core", type=int, default=None,
                   help="Outpainting core side [voxels]; must equal the model's (default: the model's).")
    p.add_argument("--resume", action="store_true",
                   help="Finish an interrupted run of the same command (an existing complete "
                        "output is left as it is).")
    p.add_argument("--force", action="store_true",
                   help="Overwrite an existing output (and any interrupted run's state).")
    p.set_defaults(run=run)


def run(args):
    from outpaint.upsample import upsample

    upsample(args.model, args.lr, args.out, generation_settings(args), seed=args.seed,
             samples=args.samples, batch_size=args.batch_size, tile=args.tile, core=args.core,
             resume=args.resume, force=args.force)
