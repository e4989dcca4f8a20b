"""``emulator demo``: the main job end to end on the packaged default model
(outpaint.demo.run_demo)."""
import argparse

from emulator.cli import add_generation_flags, generation_settings
from emulator.config import DEFAULT_MODEL, STUDENT_FILE


def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Simulate, upsample and validate a held-out box end to end.",
        description="Simulate a held-out LR/HR pair with a seed the default model never saw, "
                    "upsample its LR box by outpainting with the default model and a fast "
                    "sampler, validate against the HR truth, and write OUT/report.json, the "
                    "plots and the emulated field; prints a summary table. Launch with "
                    "'mpiexec -n R emulator demo' to outpaint over R MPI ranks.")
    p.add_argument("--out", default="demo_out", help="Output folder.")
    p.add_argument("--model", default=str(DEFAULT_MODEL / STUDENT_FILE),
                   help="Model checkpoint (file, or folder holding model.pt); the default is the "
                        "packaged default model's two-step student.")
    p.add_argument("--blocks", type=int, default=4,
                   help="Outpainting blocks per box side (even); the box is blocks x core voxels "
                        "(4: 64 tiles of 32^3; 2: a single tile, no outpainting).")
    p.add_argument("--seed", type=int, default=90210, help="Seed of the held-out pair and of sampling.")
    add_generation_flags(p)
    p.add_argument("--batch", dest="batch_size", type=int, default=4, help="Tiles per network batch.")
    p.set_defaults(run=run)


def run(args):
    from outpaint.demo import DemoConfig, run_demo

    run_demo(DemoConfig(model=args.model, out_dir=args.out, blocks=args.blocks,
                        seed=args.seed, settings=generation_settings(args), batch_size=args.batch_size))
