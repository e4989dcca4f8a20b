"""FastPM speed and time-step accuracy.

Speed: wall seconds per kick-drift-kick step (one force evaluation: CIC paint, 1 forward and 3
inverse FFTs, 3 CIC readouts) at 64^3 and 128^3 particles with a B = 2 force mesh, from 2LPT
initial conditions evolved to z = 0 (so the particles are clustered as in a production run),
with the force split into its parts for the largest size.

Accuracy: T(k) = sqrt(P_S(k) / P_ref(k)) at z = 0 for S = 10, 20, 40 steps against a 160-step
reference from the same seed (64^3 particles, 128 Mpc/h, z_init = 49), all painted with CIC
on the 128^3 force-mesh-sized grid with the window deconvolved, k below the particle Nyquist.

Force mesh (--mesh-factors): P_B(k) / P_2(k) at z = 0 for B = 1, 2, 4 from the same 2LPT
initial conditions started at z = 49 and at z = 9 (32^3 particles, 100 Mpc/h, 20 steps), which
shows the lattice discreteness of B = 2 (docs/simulator.md).

Resolution (--hmcode, needs ``pip install camb``): P(k) at z = 0 over CAMB's HMcode-2020
(Mead et al. 2021, arXiv:2009.01858) for the same cosmology (A_s set so that CAMB's sigma8 is
ours, massless neutrinos), mean over seeds of 64^3 particles in 100 Mpc/h (the mass resolution
of 128^3 in 200 Mpc/h), 20 steps, B = 2, with the ratio of our EH98 linear P(k) to CAMB's.

Usage: OMP_NUM_THREADS=2 python benchmarks/bench_pm.py [--sizes 64 128] [--skip-accuracy]
       [--mesh-factors] [--hmcode]
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
    power = {s: stats.power_spectrum(field, box_size, mas="cic") for s, field in fields.items()}
    below = power[reference].k < k_nyq
    table = {s: stats.transfer_function(power[s].power, power[reference].power)[below] for s in steps}
    return power[reference].k[below], table


def mesh_factor_table(n=32, box_size=100.0, steps=20, z_inits=(49.0, 9.0), seed=3):
    """(k, {(z_init, B): P_B / P_2}) at z = 0, B = 1 and 4, k below the particle Nyquist."""
    table, power = {}, {}
    for z_init in z_inits:
        for B in (1, 2, 4):
            config = PairConfig(seed=seed, box_size=box_size, lr_particles=n, hr_particles=n,
                                grid=2 * n, redshift=0.0, steps=steps, z_init=z_init,
                                force_mesh_factor=B)
            field = paint_overdensity(run_particles(config, n, PLANCK18)[0], 2 * n, box_size)
            spectrum = stats.power_spectrum(field, box_size, mas="cic")
            power[z_init, B] = spectrum.power
        for B in (1, 4):
            table[z_init, B] = power[z_init, B] / power[z_init, 2]
    below = spectrum.k < stats.k_nyquist(n, box_size)
    return spectrum.k[below], {key: ratio[below] for key, ratio in table.items()}


def camb_power(cosmo, k):
    """(HMcode-2020 non-linear, linear) P(k) [(Mpc/h)^3] at z = 0 from CAMB, sigma8 = ours."""
    import camb

    def results(A_s):
        params = camb.CAMBparams()
        params.set_cosmology(H0=100 * cosmo.h, ombh2=cosmo.Omega_b * cosmo.h ** 2,
                             omch2=(cosmo.Omega_m - cosmo.Omega_b) * cosmo.h ** 2, mnu=0.0, omk=0.0,
                             TCMB=cosmo.T_cmb)
        params.InitPower.set_params(As=A_s, ns=cosmo.n_s)
        params.set_matter_power(redshifts=[0.0], kmax=2 * k.max())
        params.NonLinear = camb.model.NonLinear_both
        params.NonLinearModel.set_params(halofit_version="mead2020")
        return camb.get_results(params)

    A_s = 2.1e-9 * (cosmo.sigma8 / results(2.1e-9).get_sigma8_0()) ** 2     # P_lin ~ A_s
    out = results(A_s)
    curves = [out.get_matter_power_interpolator(nonlinear=nl, hubble_units=True, k_hunit=True)
              for nl in (True, False)]
    return tuple(curve.P(0.0, k) for curve in curves)


def hmcode_table(n=64, box_size=100.0, steps=20, seeds=(1, 2, 3)):
    """(k, P_sim / P_HMcode, P_lin,EH98 / P_lin,CAMB): seed-mean P(k) at z = 0, CIC on a 2n grid
    (window deconvolved, shot noise kept), k below the particle Nyquist."""
    from sims.cosmology import linear_power

    power = []
    for seed in seeds:
        config = PairConfig(seed=seed, box_size=box_size, lr_particles=n, hr_particles=n,
                            grid=2 * n, redshift=0.0, steps=steps)
        field = paint_overdensity(run_particles(config, n, PLANCK18)[0], 2 * n, box_size)
        spectrum = stats.power_spectrum(field, box_size, mas="cic")
        power.append(spectrum.power)
    below = spectrum.k < stats.k_nyquist(n, box_size)
    k = spectrum.k[below]
    nonlinear, linear = camb_power(PLANCK18, k)
    return k, np.mean(power, axis=0)[below] / nonlinear, linear_power(PLANCK18, k) / linear


def print_rows(k, columns, every=None):
    """Markdown rows of k and the ``columns`` (dict label: array), about 12 rows."""
    print("| k [h/Mpc] | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for i in range(0, len(k), every or max(len(k) // 12, 1)):
        print(f"| {k[i]:.3f} | " + " | ".join(f"{c[i]:.4f}" for c in columns.values()) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128],
                        help="Particles per side of the speed runs.")
    parser.add_argument("--skip-accuracy", action="store_true", help="Only measure speed.")
    parser.add_argument("--mesh-factors", action="store_true",
                        help="Only the force-mesh table P_B / P_2.")
    parser.add_argument("--hmcode", action="store_true",
                        help="Only the table against CAMB's HMcode (needs camb).")
    args = parser.parse_args()
    if args.mesh_factors:
        k, table = mesh_factor_table()
        print("P_B / P_2 at z = 0, 32^3 particles, 100 Mpc/h, 20 steps, 2LPT from z_init\n")
        print_rows(k, {f"B = {B}, z_init = {z:g}": ratio for (z, B), ratio in table.items()})
        return
    if args.hmcode:
        k, ratio, linear = hmcode_table()
        print("P / P_HMcode at z = 0, 64^3 particles, 100 Mpc/h, 20 steps, B = 2, 3 seeds\n")
        print_rows(k, {"P_sim / P_HMcode": ratio, "P_lin EH98 / P_lin CAMB": linear})
        return
    print(f"threads: numba {numba.get_num_threads()}, FFTW {fft.fft_threads(fft.SMALL_GRID)}, "
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
    print_rows(k, {f"S = {s}": table[s] for s in steps})


if __name__ == "__main__":
    main()
