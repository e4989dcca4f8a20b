"""The ``emulator`` command. Each subcommand lives in its own module of this package with
``add_parser(subparsers)`` and a ``run(args)`` bound through ``set_defaults(run=...)``; modules
import their heavy dependencies inside ``run`` so that ``--help`` stays fast."""
import argparse
import importlib
import shlex
import sys

from sims.errors import InputError, one_line
from sims.h5io import COMMAND_LINE
from sims.outputs import check_writable

OUTPUTS = {"ingest": (("out", False),), "upsample": (("out", False),), "simulate": (("out", True),),
           "train": (("out", True),), "validate": (("out", True),), "demo": (("out", True),),
           "jobs": (("out", False), ("log_dir", True))}
"""(argument, is a folder) of every path a command writes, checked before the command runs."""

SUBCOMMANDS = ("jobs", "ingest", "train", "simulate", "upsample", "validate", "demo")


class StrictParser(argparse.ArgumentParser):
    """A parser whose errors raise InputError (naming the command) instead of exiting: for
    checking arguments that are not this process's own, e.g. those a job script will pass."""

    def error(self, message):
        raise InputError(self.prog, message)


def build_parser(parser_class=argparse.ArgumentParser):
    parser = parser_class(
        prog="emulator",
        description="3D cosmology super-resolution emulator: simulate paired low/high-resolution "
                    "boxes, train a conditional diffusion model, upsample large boxes by MPI "
                    "outpainting and validate the result with power spectra.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"emulator.cli.{name}").add_parser(subparsers)
    return parser


def main(argv=None):
    """Parse ``argv`` and run the subcommand. An error that is not a bug (sims.errors.one_line:
    bad input, an OS failure, Ctrl-C) prints one line ``error: ...`` and returns its status.

    Arguments after a ``--`` are not parsed: they reach the subcommand as ``args.passthrough``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    args.passthrough = argv[split + 1:]
    COMMAND_LINE.set(shlex.join(["emulator", *argv]))
    try:
        for name, folder in OUTPUTS[args.command]:
            check_writable(getattr(args, name), directory=folder)
        return args.run(args) or 0
    except (Exception, KeyboardInterrupt) as err:
        status_message = one_line(err)
        if status_message is None:
            raise
        from tqdm import tqdm
        tqdm.write(f"error: {status_message[1]}", file=sys.stderr)     # on a line of its own
        return status_message[0]


if __name__ == "__main__":
    sys.exit(main())
