"""FastPM speed and time-step accuracy.

Speed: wall seconds per kick-drift-kick step (one force evaluation: CIC paint, 1 forward and 3
inverse FFTs, 3 CIC readouts) at 64^3 and 128^3 particles with a B = 2 force mesh, from 2LPT
initial conditions evolved to z = 0 (so the particles are clustered as in a production run),
with the force split into its parts for the largest size.

Accuracy: T(k) = sqrt(P_S(k) / P_ref(k)) at z = 0 for S = 10, 20, 40 steps against a 160-step
reference from the same seed (64^3 particles, 128 Mpc/h, z_init = 49), all painted with CIC
on the 128^3 force-mesh-sized grid with the window deconvolved, k below the particle Nyquist.

Usage: OMP_NUM_THREADS=2 python benchmarks/bench_pm.py [--sizes 64 128] [--skip-accuracy]
"""
import argparse
import cProfile
import os
import pstats
import time

import numba
import numpy as np

from sims import fft, pm, stats
from sims.cosmology import PLANCK18
from sims.pairs import PairConfig, paint_overdensity, run_particles


def clustered_state(n, box_size, seed=1):
    """2LPT particles at z = 49 evolved to z = 0 in 10 steps: (positions, momenta)."""
    config = PairConfig(seed=seed, box_size=box_size, lr_particles=n, hr_particles=n, grid=n,
                        redshift=0.0, steps=10)
    return run_particles(config, n, PLANCK18)


def seconds_per_step(n, box_size, steps=5):
    """Mean wall time of a KDK step of a clustered n^3 box [s], over ``steps`` - 1 steps from
    z = 0.5 to 0 (the first step, which also computes the initial force, is left out)."""
    x, p = clustered_state(n, box_size)
    config = pm.PMConfig(n_particles=n, box_size=box_size, B=2, steps=steps, a_init=2 / 3, a_final=1.0)
    pm.accelerations(x, config.n_mesh, box_size, PLANCK18.Omega_m)      # plans, compiled kernels
    stamps = []
    pm.evolve(x, p, config, PLANCK18, callback=lambda info: stamps.append(time.perf_counter()))
    return np.diff(stamps).mean()


def force_breakdown(n, box_size):
    """Seconds of one force evaluation of a clustered n^3 box and of its parts (profiled)."""
    x, _ = clustered_state(n, box_size)
    pm.accelerations(x, 2 * n, box_size, PLANCK18.Omega_m)             # plans, compiled kernels
    profile = cProfile.Profile()
    profile.runcall(pm.accelerations, x, 2 * n, box_size, PLANCK18.Omega_m)
    cumulative = {(path.split(os.sep)[-1], name): row[3]
                  for (path, _, name), row in pstats.Stats(profile).stats.items()}
    parts = {"paint": ("mesh.py", "paint"), "forward FFT": ("fft.py", "rfftn"),
             "3 inverse FFTs": ("fft.py", "irfftn"), "3 readouts": ("mesh.py", "readout")}
    total = cumulative[("pm.py", "accelerations")]
    seconds = {label: cumulative.get(key, 0.0) for label, key in parts.items()}
    seconds["kernels and the rest"] = total - sum(seconds.values())
    return total, seconds


def accuracy_table(n=64, box_size=128.0, steps=(10, 20, 40), reference=160, seed=3):
    """(k, {S: T_S(k)}) at z = 0 against the ``reference``-step run, k < particle Nyquist."""
    fields = {}
    for s in (*steps, reference):
        config = PairConfig(seed=seed, box_size=box_size, lr_particles=n, hr_particles=n,
                            grid=2 * n, redshift=0.0, steps=s, z_init=49.0)
        fields[s] = paint_overdensity(run_particles(config, n, PLANCK18)[0], 2 * n, box_size)
    k_nyq = np.pi * n / box_size
    table = {}
    for s in steps:
        k, t = stats.transfer_function(fields[s], fields[reference], box_size, mas="cic")
        table[s] = t[k < k_nyq]
    return k[k < k_nyq], table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128],
                        help="Particles per side of the speed runs.")
    parser.add_argument("--skip-accuracy", action="store_true", help="Only measure speed.")
    args = parser.parse_args()
    print(f"threads: numba {numba.get_num_threads()}, FFTW {fft.fft_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print("\n| particles | force mesh | s / step |\n|---|---|---|")
    for n in args.sizes:
        print(f"| {n}^3 | {2 * n}^3 | {seconds_per_step(n, 2.0 * n):.3f} |", flush=True)
    total, parts = force_breakdown(max(args.sizes), 2.0 * max(args.sizes))
    print(f"\none force evaluation at {max(args.sizes)}^3 particles: {total:.3f} s = "
          + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in parts.items()))
    if args.skip_accuracy:
        return
    k, table = accuracy_table()
    steps = list(table)
    print("\nT(k) = sqrt(P_S / P_160), 64^3 particles, 128 Mpc/h, z = 0\n")
    print("| k [h/Mpc] | " + " | ".join(f"S = {s}" for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for i in range(0, len(k), max(len(k) // 12, 1)):
        print(f"| {k[i]:.3f} | " + " | ".join(f"{table[s][i]:.4f}" for s in steps) + " |")


if __name__ == "__main__":
    main()
