"""``emulator demo``: the main job end to end on the packaged default model."""
import argparse


def add_parser(subparsers):
    from emulator.cli.upsample import DEFAULT_MODEL
    from emulator.demo import DemoConfig

    p = subparsers.add_parser(
        "demo", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Simulate, upsample and validate a held-out box end to end.",
        description="Simulate a held-out LR/HR pair with a seed the default model never saw, "
                    "upsample its LR box by MPI outpainting with the default model and a fast "
                    "sampler, validate against the HR truth, and write OUT/report.json, the "
                    "plots and the emulated field; prints a summary table.")
    p.add_argument("--out", default="demo_out", help="Output folder.")
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="Model checkpoint (file, or folder holding model.pt).")
    p.add_argument("--blocks", type=int, default=DemoConfig.blocks,
                   help="Outpainting blocks per box side (even); the box is blocks x core voxels "
                        "(4: 64 tiles of 32^3; 2: a single tile, no outpainting).")
    p.add_argument("--seed", type=int, default=DemoConfig.seed, help="Seed of the held-out pair and of sampling.")
    p.add_argument("--sampler", default=DemoConfig.sampler, help="Sampler of emulator.samplers.SAMPLERS.")
    p.add_argument("--steps", type=int, default=DemoConfig.steps, help="Sampling steps per tile.")
    p.add_argument("--ranks", type=int, default=DemoConfig.ranks, help="MPI ranks for the upsampling.")
    p.add_argument("--batch", type=int, default=DemoConfig.batch, help="Tiles per network batch.")
    p.set_defaults(run=run)


def run(args):
    from emulator.cli.upsample import model_path
    from emulator.demo import DemoConfig, run_demo

    run_demo(DemoConfig(model=model_path(args.model), out_dir=args.out, blocks=args.blocks,
                        seed=args.seed, sampler=args.sampler, steps=args.steps, ranks=args.ranks,
                        batch=args.batch))
    return 0
