"""Threaded real FFTs of periodic cubic fields through pyfftw, planned once per shape and reused,
and the wavenumber grids that go with them.

Normalisation (numpy's): ``rfftn`` is unnormalised, ``irfftn`` divides by n^3, so
``irfftn(rfftn(x)) == x``. Layout is numpy's rfft layout: axes (x, y, z), last axis halved to
n//2 + 1. The Nyquist planes (integer mode -n/2) are kept as numpy stores them.
"""
import os
import threading

import numpy as np
import pyfftw

_PLANS = {}
_LOCK = threading.Lock()


SMALL_GRID = 64 ** 3  # below this many cells one thread is faster than thread start-up


def fft_threads(size):
    """Threads for an FFT of ``size`` cells: 1 for small grids, else ``SIMS_FFT_THREADS`` if set,
    else the CPUs this process may use."""
    if size < SMALL_GRID:
        return 1
    return int(os.environ.get("SIMS_FFT_THREADS", len(os.sched_getaffinity(0))))


def _plan(shape, real_dtype, inverse):
    key = (shape, np.dtype(real_dtype).str, inverse, fft_threads(int(np.prod(shape))))
    with _LOCK:
        if key not in _PLANS:
            complex_dtype = np.result_type(real_dtype, np.complex64)
            real = pyfftw.empty_aligned(shape, dtype=real_dtype)
            spec = pyfftw.empty_aligned(shape[:-1] + (shape[-1] // 2 + 1,), dtype=complex_dtype)
            src, dst = (spec, real) if inverse else (real, spec)
            _PLANS[key] = pyfftw.FFTW(
                src, dst, axes=tuple(range(len(shape))),
                direction="FFTW_BACKWARD" if inverse else "FFTW_FORWARD",
                flags=("FFTW_ESTIMATE",), threads=key[3])
        return _PLANS[key]


def _execute(plan, data):
    """Copy ``data`` into the plan's own input (FFTW's c2r transform destroys its input, so the
    caller's array is never handed over), run it (inverse normalised) and return a new array."""
    plan.input_array[...] = data
    return plan().copy()


def rfftn(field):
    """Unnormalised forward real FFT of a float32/float64 array; returns a new complex array."""
    field = np.asarray(field)
    real_dtype = np.float64 if field.dtype == np.float64 else np.float32
    return _execute(_plan(field.shape, real_dtype, inverse=False), field)


def irfftn(spectrum, shape):
    """Inverse of :func:`rfftn` (normalised by 1/prod(shape)); ``shape`` is the real-space shape.
    The input is left untouched."""
    spectrum = np.asarray(spectrum)
    real_dtype = np.float64 if spectrum.dtype == np.complex128 else np.float32
    return _execute(_plan(tuple(shape), real_dtype, inverse=True), spectrum)


def integer_modes(n):
    """Integer wavevector components of an n^3 rfft grid, broadcastable as (n,1,1), (1,n,1), (1,1,n//2+1)."""
    full = np.fft.fftfreq(n, 1.0 / n)
    half = np.arange(n // 2 + 1, dtype=float)
    return full[:, None, None], full[None, :, None], half[None, None, :]


def wavenumbers(n, box_size):
    """Wavevector components k_i = 2 pi n_i / L [h/Mpc] on the rfft grid (see :func:`integer_modes`)."""
    k_f = 2 * np.pi / box_size
    return tuple(k_f * m for m in integer_modes(n))


def hermitian_weights(n):
    """Multiplicity of each rfft mode in the full n^3 space, shape (1, 1, n//2+1).

    1 on the kz = 0 plane and (n even) the kz = n/2 plane, 2 elsewhere (docs/reference.md).
    """
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return weights[None, None, :]
