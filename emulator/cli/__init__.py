"""The ``emulator`` command. Each subcommand lives in its own module of this package with
``add_parser(subparsers)`` and a ``run(args)`` bound through ``set_defaults(run=...)`` that
builds the settings and calls one library function. ``run`` imports that library function
when it runs, so that ``--help`` does not load torch.

Library errors name the setting (``InputError("batch_size", ...)``); :func:`main` names the
flag instead (``--batch``), from the parser itself: the one place settings map to flags.
This package is the application layer: it may import every package, and none imports it."""
import argparse
import importlib
import os
import shlex
import sys

# Under mpiexec several ranks share a node's cores, so an OpenMP thread left idle by one library
# (numba, FFTW after rank 0 has simulated) must sleep, not spin on a core another rank computes
# on. Every OpenMP runtime reads this when it loads: hence here, before any import loads one.
if int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tqdm import tqdm

from emulator.config import GenerationSettings
from emulator.runtime import hold_freed_memory
from sims.errors import InputError, one_line
from sims.h5io import COMMAND_LINE
from sims.outputs import check_writable

OUTPUTS = {"ingest": (("out", False),), "upsample": (("out", False),), "calibrate": (("out", False),),
           "simulate": (("out", True),),
           "train": (("out", True),), "validate": (("out", True),), "demo": (("out", True),),
           "jobs": (("out", False), ("log_dir", True))}
"""(argument, is a folder) of every path a command writes, checked before the command runs."""

SUBCOMMANDS = ("jobs", "ingest", "train", "simulate", "upsample", "calibrate", "validate", "demo")


class StrictParser(argparse.ArgumentParser):
    """A parser whose errors raise InputError (naming the command) instead of exiting: for
    checking arguments that are not this process's own, e.g. those a job script will pass."""

    def error(self, message):
        raise InputError(self.prog, message)


def add_generation_flags(p):
    """The flags of emulator.config.GenerationSettings (upsample, calibrate and demo)."""
    defaults = GenerationSettings()
    p.add_argument("--sampler", default=defaults.sampler,
                   help="Sampler: ddpm (the reference's ancestral sampler), ddim, dpmpp-2m, "
                        "dpmpp-2m-sde or heun; consistency for a distilled student (emulator "
                        "train --distill-steps), which takes no other. Default: the model's own "
                        "(a student's consistency; a diffusion model's validation sampler, "
                        "dpmpp-2m unless trained with another --val-sampler).")
    p.add_argument("--steps", type=int, default=defaults.steps,
                   help="Sampler steps (heun makes 2 network evaluations per step but the last; "
                        "ddpm with 2000 steps is the reference baseline). Default: the model's own "
                        "(a student's distilled steps; a diffusion model's --val-steps, 20 unless "
                        "trained with others).")
    p.add_argument("--sigma-schedule", default=None,
                   help="Noise levels of the steps: karras, logsnr or trained (default: trained "
                        "for ddpm, karras otherwise).")
    p.add_argument("--lr-consistency", type=float, default=None, metavar="F",
                   help="Take the band below F times the LR Nyquist wavenumber of every x0 "
                        "estimate from the LR (default: the model's trained band).")
    p.add_argument("--mass-conservation", action=argparse.BooleanOptionalAction,
                   default=defaults.mass_conservation,
                   help="Rescale the generated voxels of every tile to hold the LR's mass there "
                        "(dark-matter mass is conserved between the LR and HR runs).")
    p.add_argument("--corner-filter", action=argparse.BooleanOptionalAction, default=defaults.corner_filter,
                   help="Damp the generated tiles' modes beyond the grid Nyquist wavenumber (the "
                        "corners of the Fourier cube) by the model's corner transfer (fitted by "
                        "'emulator calibrate'; models without one are unaffected).")
    p.add_argument("--void-map", action=argparse.BooleanOptionalAction, default=defaults.void_map,
                   help="Map the generated underdense voxels through the model's void map (fitted "
                        "by 'emulator calibrate'; models without one are unaffected).")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=defaults.bf16,
                   help="Run the network under bf16 autocast where the device computes bf16 "
                        "natively (CUDA GPUs; CPUs with avx512_bf16 or AMX; float32 elsewhere): "
                        "about twice the speed, changes within float round-off of the samples.")


def generation_settings(args):
    """The GenerationSettings of the flags of :func:`add_generation_flags`."""
    return GenerationSettings(sampler=args.sampler, steps=args.steps, sigma_schedule=args.sigma_schedule,
                              lr_consistency=args.lr_consistency,
                              mass_conservation=args.mass_conservation, corner_filter=args.corner_filter,
                              void_map=args.void_map,
                              bf16=args.bf16)


def flag_names(parser):
    """{setting (an argument's dest): its longest flag} of a (sub)command's parser."""
    return {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}


def build_parser(parser_class=argparse.ArgumentParser):
    parser = parser_class(
        prog="emulator",
        description="3D cosmology super-resolution emulator: simulate paired low/high-resolution "
                    "boxes, train a conditional diffusion model, upsample large boxes by MPI "
                    "outpainting and validate the result with power spectra.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"emulator.cli.{name}").add_parser(subparsers)
        command = subparsers.choices[name]
        command.set_defaults(flags=flag_names(command))
    return parser


def main(argv=None):
    """Parse ``argv`` and run the subcommand. An error that is not a bug (sims.errors.one_line:
    bad input, an OS failure, Ctrl-C) prints one line ``error: ...`` and returns its status.

    Arguments after a ``--`` are not parsed: they reach the subcommand as ``args.passthrough``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    hold_freed_memory()                # tensors reuse the heap instead of faulting pages in anew
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    args.passthrough = argv[split + 1:]
    COMMAND_LINE.set(shlex.join(["emulator", *argv]))
    try:
        for name, folder in OUTPUTS[args.command]:
            check_writable(getattr(args, name), directory=folder)
        return args.run(args) or 0
    except InputError as err:
        return _report(InputError(args.flags.get(err.source, err.source), err.problem))
    except (Exception, KeyboardInterrupt) as err:
        return _report(err)


def _report(err):
    """Print ``error: ...`` on a line of its own and return the exit status of an error that is
    not a bug (sims.errors.one_line); re-raise a bug."""
    status_message = one_line(err)
    if status_message is None:
        raise err
    tqdm.write(f"error: {status_message[1]}", file=sys.stderr)
    return status_message[0]


if __name__ == "__main__":
    sys.exit(main())
