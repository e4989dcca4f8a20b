"""``emulator train``: train the conditional diffusion model on a directory of paired boxes."""
import argparse
import dataclasses
import os

from emulator.config import TrainConfig, read_config_file
from sims.errors import InputError

DEFAULTS = TrainConfig()

# (flag, TrainConfig field, type, metavar, help); defaults come from TrainConfig.
OPTIONS = (
    ("--preset", "preset", str, "NAME", "U-Net preset of unet3d ('tiny', 'small', 'paper')."),
    ("--tile", "tile", int, "T", "Side of the training crops [voxels]; also the outpainting tile."),
    ("--core", "core", int, "C", "Side of the outpainting core [voxels]; the halo is (tile - core) / 2."),
    ("--batch", "batch", int, "B", "Crops per process and step (the global batch is B times the "
                                   "number of torchrun processes)."),
    ("--steps", "steps", int, "N", "Total number of optimiser steps (a resumed run continues to N)."),
    ("--learning-rate", "learning_rate", float, "RATE", "AdamW learning rate."),
    ("--lr-schedule", "lr_schedule", str, "KIND", "Learning-rate schedule: 'constant' or 'cosine' "
                                                  "(from --learning-rate down to 0 at --steps)."),
    ("--init-from", "init_from", str, "MODEL", "Start from the weights of this model checkpoint "
                                               "(a model.pt, e.g. the packaged default, or a run's "
                                               "checkpoint.pt) with a fresh optimiser; the network, "
                                               "tile, schedule and formulation options must match "
                                               "its own (a diffusion model may change --lr-band). "
                                               "Empty: initial weights from --seed."),
    ("--distill-steps", "distill_steps", int, "N", "Distil the --init-from model (the teacher) into a "
                                                   "student that samples in N steps with the "
                                                   "'consistency' sampler (0: train a diffusion model)."),
    ("--teacher-steps", "teacher_steps", int, "S", "dpmpp-2m steps of the teacher whose samples the "
                                                   "student learns."),
    ("--spectral-weight", "spectral_weight", float, "W", "Weight of the power-spectrum term of a "
                                                        "student's loss: its samples' power above the "
                                                        "LR Nyquist against the training crop's "
                                                        "(0: off; with --distill-steps)."),
    ("--density-weight", "density_weight", float, "ALPHA", "Weight each unknown voxel of a diffusion "
                                                           "model's loss by the LR's (1 + delta + "
                                                           "eps)^ALPHA (1: by mass; 0: uniform)."),
    ("--weight-decay", "weight_decay", float, "W", "AdamW decoupled weight decay."),
    ("--grad-clip", "grad_clip", float, "G", "Maximum global gradient norm."),
    ("--ema", "ema", float, "DECAY", "EMA decay of the inference weights."),
    ("--p-mask", "p_mask", float, "P", "Probability that a crop carries one of the outpainting "
                                       "known-halo masks (phases 1 to 7)."),
    ("--prediction", "prediction", str, "TARGET", "Network target: 'eps' (the reference) or 'v'."),
    ("--formulation", "formulation", str, "KIND", "What the network generates: 'residual' (the HR's "
                                                  "residual from the LR) or 'palette' (the HR itself, "
                                                  "the reference)."),
    ("--lr-band", "lr_band", float, "F", "Fraction of the LR Nyquist below which every estimate "
                                         "takes the LR's modes, in training and sampling (0: off)."),
    ("--val-every", "val_every", int, "N", "Run a validation pass every N steps (0 turns it off)."),
    ("--val-samples", "val_samples", int, "K", "Held-out crops generated per validation pass."),
    ("--val-sampler", "val_sampler", str, "NAME", "Sampler used by the validation pass."),
    ("--val-steps", "val_steps", int, "S", "Sampling steps used by the validation pass."),
    ("--save-every", "save_every", int, "N", "Write the checkpoint every N steps (and at the end)."),
    ("--log-every", "log_every", int, "N", "Write a metrics line every N steps."),
    ("--seed", "seed", int, "S", "Seed of the initial weights and of every training draw."),
    ("--num-workers", "num_workers", int, "W", "Data-loader worker processes (results do not "
                                               "depend on it)."),
)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Train the conditional diffusion model on paired boxes.",
        description="Train the conditional diffusion U-Net on random periodic crops of the paired "
                    "LR/HR boxes in a directory. Options resolve as: built-in defaults, then "
                    "RUN_DIR/config.json when resuming, then --config, then flags given on the "
                    "command line. RUN_DIR receives config.json (the resolved options), "
                    "metrics.jsonl, checkpoint.pt and, at the end, model.pt (EMA weights in "
                    "float16, for 'emulator upsample'). Launch with torchrun for several GPUs.")
    p.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR",
                   help="Directory of paired box files (*.h5, *.hdf5 with datasets 'lr' and 'hr'); "
                        "the last file in sorted order is held out for validation when there are "
                        "several. Required unless given by --config or a resumed run.")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="Run directory for the configuration, metrics and checkpoints.")
    p.add_argument("--config", default=None, metavar="FILE.json",
                   help="JSON object of training options (TrainConfig field names); flags given "
                        "on the command line override it.")
    p.add_argument("--resume", action="store_true",
                   help="Continue the run in RUN_DIR from its checkpoint exactly where it stopped "
                        "(starts afresh if there is none yet); the options must match the run's.")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", default=argparse.SUPPRESS,
                   help="Train in float32 instead of under bf16 autocast (default: bf16 where the "
                        "device computes it natively: CUDA, CPUs with avx512_bf16 or AMX).")
    for flag, name, kind, metavar, text in OPTIONS:
        p.add_argument(flag, dest=name, type=kind, default=argparse.SUPPRESS, metavar=metavar,
                       help=f"{text} (default: {getattr(DEFAULTS, name)})")
    p.set_defaults(run=run)


def resolve_config(args):
    """TrainConfig from defaults <- RUN_DIR/config.json (on --resume) <- --config <- flags."""
    options = {}
    previous = os.path.join(args.out, "config.json")
    if args.resume and os.path.exists(previous):
        options.update(TrainConfig.from_stored(read_config_file(previous), previous).to_dict())
    if args.config:
        options.update(read_config_file(args.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    options.update({k: v for k, v in vars(args).items() if k in names})
    config = TrainConfig.from_dict(options, args.config or "options")
    if not config.data:
        raise InputError("data", "no data directory given (use --data DIR or 'data' in --config)")
    if config.init_from:
        config = config.replace(init_from=os.path.abspath(config.init_from))
    return config.replace(data=os.path.abspath(config.data))


def run(args):
    from emulator.train import train

    config = resolve_config(args)
    steps = train(config, args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {steps} steps; run directory {args.out}: config.json, metrics.jsonl, "
              "checkpoint.pt, model.pt")
    return 0
