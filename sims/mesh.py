"""Particles to grids and back: NGP/CIC/TSC painting and readout, overdensity, the
mass-assignment window and its deconvolution, and Fourier resampling between grids (of any
field, or of an overdensity kept >= -1).

Conventions (docs/design.md): periodic cubic box of side L [Mpc/h] with n nodes per axis, node i at
x_i = i L / n (the convention of Pylians3 and pmesh), positions (N, 3) [Mpc/h] of any real value
(wrapped into the box). Schemes are named by ``MAS_ORDER``: order p = 1 NGP, 2 CIC, 3 TSC; the
assignment kernel is the B-spline of order p (Hockney & Eastwood 1988, "Computer Simulation
Using Particles", ch. 5), see :mod:`sims._kernels` for the compiled loops.

Precision: cell coordinates u = x n / L and all weights are computed in float64 whatever the
position dtype; paint accumulates in the output grid's dtype (float32 by default, float64 when
``out`` is float64); readout accumulates in float64 and stores in the field's dtype. A particle at
x = i L / n puts all its NGP and CIC mass on node i (to float64 round-off). float32 positions
carry only ~1e-7 L of resolution, i.e. 1e-7 n cells.

Threads: paint and readout run on numba's threads (``NUMBA_NUM_THREADS`` or
``numba.set_num_threads``); the result does not depend on their number beyond float round-off.
"""
import numba
import numpy as np

from sims import _kernels, fft
from sims.errors import InputError

MAS_ORDER = {"ngp": 1, "cic": 2, "tsc": 3}


def mas_order(mas):
    """Order p of a mass-assignment scheme name ('ngp', 'cic', 'tsc'); InputError otherwise."""
    order = MAS_ORDER.get(str(mas).lower())
    if order is None:
        raise InputError("mas", f"unknown mass assignment {mas!r}; choose one of {', '.join(MAS_ORDER)}")
    return order


def paint(positions, n, box_size, mas="cic", weights=None, out=None):
    """Sum of particle weights assigned to each node of an n^3 periodic grid.

    positions: (N, 3) [Mpc/h], float32 or float64 (others are converted to float64).
    weights: (N,) or None (weight 1 each). out: optional C-contiguous (n, n, n) float32 or float64
    buffer, overwritten and returned (reuse it in a time-stepping loop); default a new float32
    grid. The sum of the grid equals the sum of the weights to the round-off of its dtype.
    """
    order = mas_order(mas)
    positions = _as_positions(positions)
    grid = _grid_buffer(out, n)
    n = grid.shape[0]
    weights = _as_weights(weights, positions.shape[0])
    scale = n / _check_box(box_size)
    slabs, counts = _kernels.home_slabs(positions, scale, n, numba.get_num_threads())
    counts = counts.sum(axis=0)
    _require_finite(counts[n], positions.shape[0])
    bounds = _chunk_bounds(counts[:n])
    grid.fill(0)
    for phase in (0, 1):
        _kernels.paint_chunks(positions, weights, slabs, grid, scale, order, bounds, phase)
    return grid


def readout(field, positions, box_size, mas="cic", out=None):
    """Field interpolated to the particle positions with the order-p kernel: (N,) values.

    field: (n, n, n) float32 or float64 grid with node i at i L / n; the result has its dtype.
    out: optional C-contiguous (N,) array of that dtype to fill and return (reuse it in a
    time-stepping loop): a row ``acc[j]`` of a (3, N) array is fine, a strided column such as
    ``acc[:, j]`` of an (N, 3) array is a ValueError. Readout is the adjoint of :func:`paint`: sum_p w_p readout(f)_p equals
    sum over nodes of paint(w) * f.
    """
    order = mas_order(mas)
    field = _as_field(field)
    positions = _as_positions(positions)
    if out is None:
        out = np.empty(positions.shape[0], field.dtype)
    elif out.shape != (positions.shape[0],) or out.dtype != field.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {field.dtype} array of shape ({positions.shape[0]},)")
    scale = field.shape[0] / _check_box(box_size)
    bad = _kernels.readout_all(field, positions, scale, order, numba.get_num_threads(), out)
    _require_finite(bad.sum(), positions.shape[0])
    return out


def overdensity(mass_grid):
    """delta = rho / mean(rho) - 1 as float32 (mean taken in float64); the grid must hold mass."""
    mass_grid = np.asarray(mass_grid)
    mean = mass_grid.mean(dtype=np.float64)
    if not mean > 0:
        raise ValueError(f"cannot form an overdensity: the grid's mean is {mean}, not positive")
    delta = np.divide(mass_grid, mean, dtype=np.float32)
    delta -= 1
    return delta


def window(n, mas):
    """Mass-assignment window W = prod_i sinc^p(pi n_i / n) on the n^3 rfft grid, float64
    (n, n, n//2+1); integer modes n_i from :func:`sims.fft.integer_modes`, Nyquist planes
    included (W = (2/pi)^p there): the Fourier transform of the order-p assignment kernel, the unit
    cell box convolved p times (Hockney & Eastwood 1988, ch. 5 and 7; Jing 2005, ApJ 620, 559).
    To divide a spectrum by W, use :func:`window_factors`, which never builds this array."""
    wx, wy, wz = window_factors(n, mas)
    return wx * wy * wz


def window_factors(n, mas):
    """The three 1D factors sinc^p(pi n_i / n) of :func:`window`, float64, broadcastable as
    (n, 1, 1), (1, n, 1), (1, 1, n//2+1): dividing an rfft spectrum by each in turn divides it by
    W in O(n) memory instead of an n^3 float64 window."""
    order = mas_order(mas)
    return tuple(np.sinc(modes / n) ** order for modes in fft.integer_modes(n))


def deconvolve(field, mas):
    """Field with the mass-assignment window divided out in Fourier space (same shape and dtype).

    Every rfft mode is divided by :func:`window` (never zero: W >= (2/pi)^(3p) at the corner
    Nyquist mode); the Nyquist planes are divided like the rest. FFTs through :mod:`sims.fft`.
    """
    field = _as_field(field)
    spectrum = fft.rfftn(field)
    for factor in window_factors(field.shape[0], mas):
        spectrum /= factor
    return fft.irfftn(spectrum, field.shape)


def resample(field, n_new):
    """Fourier resampling of a periodic n^3 field to n_new^3 nodes of the same box.

    The result is the band-limited trigonometric interpolant of the field sampled at the new nodes
    x_i = i L / n_new: modes with |n_i| < m/2, m = min(n, n_new), are copied (with the 1/n^3
    normalisation rescaled), modes the smaller grid cannot hold are dropped or zero. Nyquist
    handling for even m (the usual symmetric rule, e.g. scipy.signal.resample): upsampling splits
    each coefficient of the coarse Nyquist plane -m/2 equally between the fine modes +m/2 and -m/2;
    downsampling folds the fine modes +m/2 and -m/2 into the coarse Nyquist mode. Hence the field
    stays real, the mean is unchanged, upsampling passes exactly through the coarse values at the
    coarse nodes (when n_new / n is an integer), and resample(resample(f, larger), n) == f.
    Output dtype is the input's (float32 or float64).
    """
    field = _as_field(field)
    n = field.shape[0]
    if int(n_new) != n_new or n_new < 1:
        raise ValueError(f"n_new must be a positive integer, got {n_new!r}")
    n_new = int(n_new)
    if n_new == n:
        return field.copy()
    spectrum = fft.rfftn(field)
    for axis in (0, 1):
        spectrum = _resample_full_axis(spectrum, axis, n_new)
    spectrum = _resample_half_axis(spectrum, n, n_new)
    spectrum *= (n_new / n) ** 3
    return fft.irfftn(spectrum, (n_new,) * 3)


def resample_overdensity(delta, n_new):
    """An overdensity delta = rho / mean - 1 Fourier-resampled to n_new^3 nodes (:func:`resample`),
    then clipped at delta = -1; same dtype as the input (float32 or float64).

    Why the clip: a field painted from sparse particles (an LR run on a grid finer than its
    particle lattice) has empty cells at exactly delta = -1 next to dense ones. Its band-limited
    interpolant rings around such steps (the Gibbs phenomenon) and dips below -1, i.e. to
    negative densities, which no density field has and which log(1 + delta) normalisations cannot
    take. Those voxels are set to -1 (empty); every other value is the interpolant's, and the
    mean rises by the clipped amount.
    """
    resampled = resample(delta, n_new)
    return np.maximum(resampled, -1, out=resampled)


def _resample_full_axis(spectrum, axis, n_new):
    """Copy the modes of a full (complex) FFT axis to length n_new, splitting or folding Nyquist."""
    src = np.moveaxis(spectrum, axis, 0)
    n = src.shape[0]
    m = min(n, n_new)
    out = np.zeros((n_new,) + src.shape[1:], spectrum.dtype)
    positive, negative = (m + 1) // 2, (m - 1) // 2
    out[:positive] = src[:positive]
    if negative:
        out[n_new - negative:] = src[n - negative:]
    if m % 2 == 0:
        nyquist = m // 2
        if n_new > n:
            out[nyquist] = out[n_new - nyquist] = src[nyquist] / 2
        else:
            out[nyquist] = src[nyquist] + src[n - nyquist]
    return np.moveaxis(out, 0, axis)


def _resample_half_axis(spectrum, n, n_new):
    """Same as :func:`_resample_full_axis` on the halved last rfft axis (real length n -> n_new).

    Only k >= 0 is stored there: the -m/2 mode is the conjugate of +m/2 at (-kx, -ky).
    """
    m = min(n, n_new)
    out = np.zeros(spectrum.shape[:2] + (n_new // 2 + 1,), spectrum.dtype)
    positive = (m + 1) // 2
    out[..., :positive] = spectrum[..., :positive]
    if m % 2 == 0:
        plane = spectrum[..., m // 2]
        if n_new > n:
            out[..., m // 2] = plane / 2
        else:
            out[..., m // 2] = plane + np.conj(np.roll(plane[::-1, ::-1], 1, axis=(0, 1)))
    return out


def _chunk_bounds(counts):
    """x-slab boundaries of the paint chunks from the particles per home slab: 2 chunks per numba
    thread with about equal particle counts, each at least 3 slabs wide (see sims._kernels); [0, n]
    (one serial chunk) if n < 6."""
    n = counts.shape[0]
    nchunks = min(2 * numba.get_num_threads(), n // 3 // 2 * 2)
    if nchunks < 2:
        return np.array([0, n], np.int64)
    c = np.arange(1, nchunks)
    cumulative = np.cumsum(counts)
    inner = np.searchsorted(cumulative, cumulative[-1] * c / nchunks) + 1
    inner = np.clip(inner, 3 * c, n - 3 * (nchunks - c))
    inner = np.maximum.accumulate(inner - 3 * c) + 3 * c
    return np.concatenate([[0], inner, [n]]).astype(np.int64)


def _require_finite(bad, npart):
    if bad:
        raise InputError("positions", f"{bad} of {npart} particle positions are not finite")


def _check_box(box_size):
    box_size = float(box_size)
    if not (np.isfinite(box_size) and box_size > 0):
        raise InputError("box_size", f"must be a positive length in Mpc/h, got {box_size}")
    return box_size


def _as_positions(positions):
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {positions.shape}")
    dtype = positions.dtype if positions.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(positions, dtype=dtype)


def _as_weights(weights, npart):
    if weights is None:
        return np.empty(0, np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (npart,):
        raise ValueError(f"weights must have shape ({npart},), got {weights.shape}")
    return weights


def _as_field(field):
    field = np.asarray(field)
    if field.ndim != 3 or len(set(field.shape)) != 1 or field.shape[0] < 2:
        raise ValueError(f"field must be a cubic 3D grid of at least 2^3 nodes, got shape {field.shape}")
    dtype = np.float64 if field.dtype == np.float64 else np.float32
    return np.ascontiguousarray(field, dtype=dtype)


def _grid_buffer(out, n):
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer of at least 2 (nodes per axis), got {n!r}")
    if out is None:
        return np.empty((int(n),) * 3, np.float32)
    if out.shape != (n, n, n) or out.dtype not in (np.float32, np.float64) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 or float64 array of shape ({n}, {n}, {n})")
    return out
