"""Painting and readout throughput: compiled CIC (sims.mesh, numba) against plain numpy.

Particles start on a lattice of N^3 in a box of L = N Mpc/h (kept in that order, as a PM code
keeps them), displaced by Gaussian offsets of one particle spacing rms, and are painted onto the
PM force mesh of (2N)^3 nodes (B = 2), then read back. Baselines in the same run: CIC paint with
``np.add.at`` over the 8 corners, CIC readout with numpy fancy indexing. sims.mesh is timed with
one numba thread and with all of them. Each figure is the fastest of ``--repeat`` calls, the
methods interleaved so that load from other processes hits them alike.

Usage: python benchmarks/bench_paint.py [--sizes 64 128] [--repeat 5]
"""
import argparse
import os
import time

import numba
import numpy as np

from sims import mesh


def cic_stencil(positions, n, box_size):
    """The 8 CIC node indices (flattened) and weights of every particle, as two lists of 8 arrays."""
    u = positions * (n / box_size)
    base = np.floor(u).astype(np.int64)
    frac = u - base
    index, weight = [], []
    for corner in np.ndindex(2, 2, 2):
        offset = np.array(corner)
        node = (base + offset) % n
        index.append((node[:, 0] * n + node[:, 1]) * n + node[:, 2])
        weight.append(np.prod(np.where(offset == 1, frac, 1 - frac), axis=1))
    return index, weight


def paint_add_at(positions, n, box_size):
    """CIC paint with np.add.at: the plain-numpy baseline."""
    grid = np.zeros(n ** 3)
    for index, weight in zip(*cic_stencil(positions, n, box_size)):
        np.add.at(grid, index, weight)
    return grid.reshape(n, n, n)


def readout_numpy(field, positions, box_size):
    """CIC readout with numpy fancy indexing: the plain-numpy baseline."""
    flat = field.ravel()
    index, weight = cic_stencil(positions, field.shape[0], box_size)
    return sum(flat[i] * w for i, w in zip(index, weight))


def lattice_particles(n_side, seed=0):
    """n_side^3 lattice particles in a box of n_side Mpc/h, displaced by ~1 spacing rms."""
    q = np.indices((n_side,) * 3).reshape(3, -1).T + 0.5
    return (q + np.random.default_rng(seed).normal(0, 1, q.shape)) % n_side


def with_threads(function, threads):
    """``function`` run with ``threads`` numba threads."""
    def run():
        numba.set_num_threads(threads)
        function()
    return run


def fastest(methods, repeat):
    """Fastest wall time [s] of each method over ``repeat`` interleaved rounds."""
    best = {name: np.inf for name in methods}
    for _ in range(repeat):
        for name, function in methods.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_size(n_side, repeat, threads):
    """Rows (operation, method, particles/s) for n_side^3 particles on a (2 n_side)^3 mesh."""
    positions, n, box_size = lattice_particles(n_side), 2 * n_side, float(n_side)
    grid = np.empty((n,) * 3, np.float32)
    field = mesh.paint(positions, n, box_size, out=grid).copy()
    np.testing.assert_allclose(paint_add_at(positions, n, box_size), field, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(readout_numpy(field, positions, box_size),
                               mesh.readout(field, positions, box_size), rtol=1e-4, atol=1e-5)
    ops = {
        "paint": (lambda: paint_add_at(positions, n, box_size),
                  lambda: mesh.paint(positions, n, box_size, "cic", out=grid)),
        "readout": (lambda: readout_numpy(field, positions, box_size),
                    lambda: mesh.readout(field, positions, box_size, "cic")),
    }
    rows = []
    for op, (baseline, compiled) in ops.items():
        methods = {"numpy": baseline, "numba 1 thread": with_threads(compiled, 1),
                   f"numba {threads} threads": with_threads(compiled, threads)}
        best = fastest(methods, repeat)
        numba.set_num_threads(threads)
        rows += [(op, name, positions.shape[0] / seconds, best["numpy"] / seconds)
                 for name, seconds in best.items()]
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128],
                        help="Particles per side; each size is painted on a mesh twice as fine (B = 2).")
    parser.add_argument("--repeat", type=int, default=5, help="Timed rounds per method; the fastest counts.")
    args = parser.parse_args()
    threads = numba.get_num_threads()
    mesh.paint(lattice_particles(4), 8, 4.0)
    mesh.readout(np.zeros((8,) * 3, np.float32), lattice_particles(4), 4.0)
    print(f"numba {numba.__version__}, {threads} threads available, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'particles':>10} {'mesh':>6} {'op':>8} {'method':>16} {'Mparticles/s':>13} {'vs numpy':>9}")
    for n_side in args.sizes:
        for op, name, rate, speedup in bench_size(n_side, args.repeat, threads):
            print(f"{n_side:>8}^3 {2 * n_side:>4}^3 {op:>8} {name:>16} {rate / 1e6:>13.2f} {speedup:>8.1f}x")


if __name__ == "__main__":
    main()
