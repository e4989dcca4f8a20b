"""The noise floor of ``bench_samplers.py``'s z: one sampling configuration against itself.

``bench_samplers`` compares the mean P(k) of S seeds of a configuration with the mean of S seeds
of the baseline, in units of one sample's seed scatter, and takes the largest over the shells
below k_Nyq. Two sets of S independent seeds of the *same* configuration differ too: per shell
by a normal deviate of standard deviation sqrt(2 / S) sigma (sigma / 2 at S = 8), so over K
shells the largest is near 1 even for a perfect sampler. This script measures that floor: T
trials, each two disjoint seed sets of one model and sampler (seeds never shared), and prints the
distribution of z beside the prediction for K independent Gaussian shells with known sigma,

    P(z < x) = erf(x sqrt(S / 4))^K      (|N(0, 2 sigma^2 / S)| < x sigma in every shell),

which ignores the noise of the scatter estimate and the chi-square tails of shells with few modes.

    python benchmarks/bench_z_null.py [--model CKPT] [--sampler NAME --steps N] [--trials T] [--json OUT]

Defaults: the packaged student in its own steps, 8 seeds, 20 trials, one simulated held-out tile
(``bench_samplers``' default crop), bf16 where the CPU computes it natively.
"""
import argparse
import math
import os
import sys
import tempfile
from statistics import NormalDist

import numpy as np
from tqdm import tqdm

from bench_samplers import held_out_crops, sample_spectra, summarize, truth_spectra
from emulator.checkpoint import find_model, load_model
from emulator.config import DEFAULT_MODEL, GenerationSettings
from emulator.generate import sampling_plan
from emulator.runtime import hold_freed_memory
from heldout import held_out_pair
from sims import stats
from sims.errors import InputError
from sims.validation import jsonable, write_report


def gaussian_null(x, seeds, shells):
    """P(z_max < x) for ``shells`` independent Gaussian shells and ``seeds`` seeds per set."""
    return math.erf(x * math.sqrt(seeds / 4.0)) ** shells


def gaussian_null_quantile(q, seeds, shells):
    """The x with gaussian_null(x) = q (erf(y) = p at y = Phi^-1((1 + p) / 2) / sqrt 2)."""
    per_shell = q ** (1.0 / shells)
    return NormalDist().inv_cdf((1.0 + per_shell) / 2.0) / math.sqrt(2.0) / math.sqrt(seeds / 4.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL / "student.pt"),
                   help="Model checkpoint or run directory (default: the packaged student).")
    p.add_argument("--sampler", default=None, help="Sampler (default: the model's own).")
    p.add_argument("--steps", type=int, default=None, help="Its steps (default: the model's own).")
    p.add_argument("--pairs", nargs="+", metavar="FILE",
                   help="Held-out paired box files (default: simulate one tile-sized pair, as bench_samplers).")
    p.add_argument("--crops", type=int, default=1, help="Tile-sized crops per file (default 1).")
    p.add_argument("--seeds", type=int, default=8, help="Seeds per set, as bench_samplers' --seeds (default 8).")
    p.add_argument("--trials", type=int, default=20, help="Pairs of disjoint seed sets (default 20).")
    p.add_argument("--batch", type=int, default=8, help="Tiles per network batch (default 8).")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="Float32 network.")
    p.add_argument("--json", default=None, help="Also write the results to this JSON file (atomically).")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    hold_freed_memory()
    try:
        for flag, value, least in (("--seeds", args.seeds, 2), ("--trials", args.trials, 1),
                                   ("--crops", args.crops, 1), ("--batch", args.batch, 1)):
            if value < least:
                raise InputError(flag, f"must be at least {least}, got {value}")
        model = load_model(find_model(args.model, "--model"))
        settings = GenerationSettings(args.sampler, args.steps, bf16=args.bf16).for_model(model)
        sampling_plan(model, settings)                           # InputError on a bad setting
        with tempfile.TemporaryDirectory() as scratch:
            pairs = args.pairs or [os.path.join(scratch, "held_out.h5")]
            if not args.pairs:
                held_out_pair(pairs[0], model, model.tile)
            lr, hr = held_out_crops(pairs, model, args.crops, 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    box_size = model.tile * model.spacing
    truth = truth_spectra(lr, hr, box_size)
    k, k_nyq = truth["k"], stats.k_nyquist(model.tile, box_size)
    bands = (k < k_nyq / 2, k < k_nyq, k < 0.5 * np.pi / model.lr_spacing)
    per_set = len(lr) * args.seeds
    z = []
    for trial in tqdm(range(args.trials), unit="trial"):
        (a, _), (b, _) = (sample_spectra(model, lr, hr, args.seeds, settings, args.batch,
                                         first_seed=(2 * trial + half) * per_set)[0][True, False]
                          for half in (0, 1))
        z.append(summarize(a, np.zeros_like(a), b, truth, bands)["z_max"])
    z, shells = np.array(z), int(bands[1].sum())
    summary = {"model": args.model, "settings": settings.to_dict(), "seeds": args.seeds, "trials": args.trials,
               "crops": len(lr), "shells": shells, "z": z, "median": float(np.median(z)),
               "fraction_below_1": float((z < 1).mean()),
               "gaussian_median": gaussian_null_quantile(0.5, args.seeds, shells),
               "gaussian_below_1": gaussian_null(1.0, args.seeds, shells)}
    print(f"{args.model}: {settings.sampler} x{settings.steps}, {len(lr)} crop(s) x {args.seeds} seeds per set, "
          f"{args.trials} trials, {shells} shells below k_Nyq")
    print(f"z of the configuration against itself: median {summary['median']:.2f}, "
          f"10/90% {np.percentile(z, 10):.2f} / {np.percentile(z, 90):.2f}, max {z.max():.2f}, "
          f"below 1 in {summary['fraction_below_1']:.0%} of trials")
    print(f"independent Gaussian shells: median {summary['gaussian_median']:.2f}, "
          f"below 1 with probability {summary['gaussian_below_1']:.0%}")
    if args.json:
        write_report(jsonable(summary), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
