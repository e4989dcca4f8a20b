"""Benchmark: seconds for P(k) and for the bispectrum at 128^3 and 256^3, against powerbox's
P(k) measured in the same run on the same field and thread count.

    python benchmarks/bench_stats.py [--sizes 128 256] [--repeats 3]

Threads: ``SIMS_FFT_THREADS`` (default: all CPUs this process may use), also given to powerbox.
Timings are the best of ``repeats`` warm calls (FFTW plans and shell indices cached by the first
call, whose time is shown separately as 'cold'). powerbox has no bispectrum, so the bispectrum
times are also given as multiples of powerbox's P(k) time. Peak memory is the tracemalloc peak of
one warm call (numpy and pyfftw buffers are traced) over the field's own size.
"""
import argparse
import json
import time
import tracemalloc

import numpy as np
import powerbox

from sims import bispectrum, fft, stats


def best_time(fn, repeats):
    """(cold seconds of the first call, best warm seconds of ``repeats`` more calls)."""
    start = time.perf_counter()
    fn()
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - start)
    return cold, min(warm)


def peak_memory(fn):
    """Peak bytes allocated (tracemalloc) during one call of ``fn``."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bench(n, repeats, threads, box_size=1000.0):
    field = np.random.default_rng(n).standard_normal((n, n, n)).astype(np.float32)
    k_f = 2 * np.pi / box_size
    k1 = n // 16 * k_f
    edges = np.arange(0, n // 2 + 1) * k_f - 1e-6 * k_f
    ours = lambda: stats.power_spectrum(field, box_size)  # noqa: E731
    ref = lambda: powerbox.get_power(field, boxlength=box_size, bins=edges,  # noqa: E731
                                     ignore_zero_mode=True, nthreads=threads)
    one_triangle = lambda: bispectrum.bispectrum_theta([field], box_size, k1, 2 * k1, 2 * np.pi / 3)  # noqa: E731
    q_theta = lambda: bispectrum.bispectrum_theta([field], box_size, k1, 2 * k1,  # noqa: E731
                                                  np.linspace(0, np.pi, 9))
    result = {"n": n, "threads": threads}
    for name, fn in (("pk", ours), ("pk_powerbox", ref), ("bk_one_triangle", one_triangle),
                     ("bk_q_theta_9", q_theta)):
        result[f"{name}_cold_s"], result[f"{name}_s"] = best_time(fn, repeats)
    result["pk_speedup_vs_powerbox"] = result["pk_powerbox_s"] / result["pk_s"]
    result["bk_one_triangle_over_powerbox_pk"] = result["bk_one_triangle_s"] / result["pk_powerbox_s"]
    result["pk_peak_mem_over_field"] = peak_memory(ours) / field.nbytes
    result["bk_peak_mem_over_field"] = peak_memory(q_theta) / field.nbytes
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="Grid sizes n (n^3 cells).")
    parser.add_argument("--repeats", type=int, default=3, help="Warm calls per timing (best is kept).")
    args = parser.parse_args()
    threads = fft.fft_threads()
    print(f"{'n':>5} {'thr':>4} {'P(k) s':>8} {'powerbox s':>10} {'speedup':>8} {'B 1-tri s':>10} "
          f"{'Q(9 th) s':>10} {'B/pbP':>6} {'mem P':>6} {'mem B':>6}")
    for n in args.sizes:
        r = bench(n, args.repeats, threads)
        print(f"{n:5d} {threads:4d} {r['pk_s']:8.3f} {r['pk_powerbox_s']:10.3f} {r['pk_speedup_vs_powerbox']:8.1f} "
              f"{r['bk_one_triangle_s']:10.3f} {r['bk_q_theta_9_s']:10.3f} "
              f"{r['bk_one_triangle_over_powerbox_pk']:6.2f} {r['pk_peak_mem_over_field']:6.1f} "
              f"{r['bk_peak_mem_over_field']:6.1f}")
        print(json.dumps(r))


if __name__ == "__main__":
    main()
