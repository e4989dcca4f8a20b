"""Helper of tests/test_run.py: one outpainting run, started under mpiexec
(``mpiexec -n R python -m mpi4py tests/outpaint_job.py ...``) or imported in-process.

Without ``--model`` the tiles come from :func:`stand_in`, a deterministic function of the
generator's inputs (LR crop, known voxels, mask, seed) only. ``--log DIR`` appends the seed of
every generated tile to DIR/rank<r>.txt; ``--crash-phase P --crash-call K`` raises at the K-th
generator call (from 1) of phase P on every rank (only on rank R with ``--crash-rank R``),
imitating a killed job.
"""
import argparse
import functools
import os

import numpy as np

from emulator.checkpoint import load_model
from emulator.config import GenerationSettings
from emulator.generate import generate_tiles
from emulator.geometry import PHASES, known_mask
from outpaint.run import upsample_box


class Crash(RuntimeError):
    """The imitated kill."""


def stand_in(lr, known, mask, seeds):
    """Stand-in generator: 0.5 lr + 0.3 c + 0.1 noise, c a seeded random weighting of the known
    voxels, noise from default_rng(seed). It fills the known halo too (with these values), so the
    driver must discard everything but the core."""
    out = np.empty_like(lr)
    for b, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        weights = rng.random(lr[b].shape) * mask[b]
        context = (weights * known[b]).sum() / weights.sum() if mask[b].any() else 0.0
        out[b] = 0.5 * lr[b] + 0.3 * context + 0.1 * rng.standard_normal(lr[b].shape)
    return out


def phase_of_mask(mask, tile, core):
    """Phase whose known_mask equals ``mask`` (t, t, t)."""
    return next(p for p in range(PHASES) if np.array_equal(known_mask(tile, core, p), mask))


def instrumented(generator, tile, core, log=None, rank=0, crash_phase=None, crash_call=1):
    """Wrap a generator: log tile seeds, crash at call ``crash_call`` of ``crash_phase``."""
    calls = dict.fromkeys(range(PHASES), 0)

    def generate(lr, known, mask, seeds):
        phase = phase_of_mask(mask[0], tile, core)
        calls[phase] += 1
        if phase == crash_phase and calls[phase] == crash_call:
            raise Crash(f"imitated kill at call {crash_call} of phase {phase}")
        out = generator(lr, known, mask, seeds)
        if log is not None:
            with open(os.path.join(log, f"rank{rank}.txt"), "a") as f:
                f.writelines(f"{int(s)}\n" for s in seeds)
        return out
    return generate


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lr", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=None)
    p.add_argument("--tile", type=int, default=16)
    p.add_argument("--core", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--sampler", default="dpmpp-2m")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--log", default=None)
    p.add_argument("--crash-phase", type=int, default=None)
    p.add_argument("--crash-call", type=int, default=1)
    p.add_argument("--crash-rank", type=int, default=None)
    args = p.parse_args(argv)
    from mpi4py import MPI
    from outpaint_job import instrumented  # this file as a module: names match in-process runs
    settings = GenerationSettings(args.sampler, args.steps)
    tile_generator = None
    if args.model is None or args.log or args.crash_phase is not None:
        base = stand_in
        if args.model is not None:
            base = functools.partial(generate_tiles, load_model(args.model), settings, batch_size=args.batch)
        rank = MPI.COMM_WORLD.Get_rank()
        crash_phase = args.crash_phase if args.crash_rank in (None, rank) else None
        tile_generator = instrumented(base, args.tile, args.core, args.log, rank, crash_phase, args.crash_call)
    upsample_box(args.model, args.lr, args.out, settings, tile=args.tile, core=args.core, seed=args.seed,
                 batch_size=args.batch, resume=args.resume, tile_generator=tile_generator)


if __name__ == "__main__":
    main()
