"""FFT shell estimator of the bispectrum and the reduced bispectrum Q of periodic cubic fields.

Estimator (Scoccimarro 2015, arXiv:1506.02729, eqs. 30-32; the one of Pylians3 ``Bk``): for each
shell i (modes with |k - k_i| < w / 2, DC excluded) let x_i = irfftn(d masked to the shell) and
I_i = irfftn(shell indicator). With the unnormalised forward FFT d(n) of an n^3 grid of side L,

    sum_x x1 x2 x3 = n^-6 sum over closed triangles n1 + n2 + n3 = 0 (mod n) of d1 d2 d3,
    sum_x I1 I2 I3 = n^-6 N_triangles,

so that  B = L^6 / n^9 * sum_x x1 x2 x3 / sum_x I1 I2 I3   [(Mpc/h)^6]   (docs/reference.md),
the mean over closed triangles of delta_k1 delta_k2 delta_k3 / L^3 with delta_k = d (L/n)^3.
The reduced bispectrum is Q = B / (P1 P2 + P2 P3 + P3 P1) with P_i the power averaged over shell i
(same normalisation as :mod:`sims.stats`). Q(theta) uses the triangle of sides k1, k2 with angle
theta between the vectors k1 and k2: k3 = sqrt(k1^2 + k2^2 + 2 k1 k2 cos theta) (Pylians3).
Shells that reach past the Nyquist frequency pick up aliased (mod n) triangles, as in Pylians3.
"""
import functools
from dataclasses import dataclass

import numpy as np

from sims import fft, stats
from sims.errors import InputError


@dataclass(frozen=True)
class Bispectrum:
    """Bispectra of F fields on T triangle configurations.

    ``k1, k2, k3`` (T,) shell centres [h/Mpc]; ``theta`` (T,) angle between k1 and k2 [rad];
    ``B`` (F, T) [(Mpc/h)^6]; ``Q`` (F, T) reduced bispectrum; ``ntriangles`` (T,) number of
    closed ordered triangles of full-space modes in the three shells.
    """

    k1: np.ndarray
    k2: np.ndarray
    k3: np.ndarray
    theta: np.ndarray
    B: np.ndarray
    Q: np.ndarray
    ntriangles: np.ndarray


def third_side(k1, k2, theta):
    """|k1 + k2| for vectors of lengths k1, k2 at angle ``theta`` [rad] (the closing side k3)."""
    return np.sqrt(np.maximum(k1 ** 2 + k2 ** 2 + 2 * k1 * k2 * np.cos(theta), 0.0))


def bispectrum_theta(fields, box_size, k1, k2, theta, mas=None, width=None):
    """B and Q of every field in ``fields`` for sides ``k1``, ``k2`` [h/Mpc] and each angle in
    ``theta`` [rad]; shells of full width ``width`` [h/Mpc] (default 2 k_F)."""
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    k3 = third_side(k1, k2, theta)
    sides = np.stack([np.full_like(theta, k1), np.full_like(theta, k2), k3], axis=1)
    return _estimate(fields, box_size, sides, theta, mas, width)


def bispectrum_equilateral(fields, box_size, k, mas=None, width=None):
    """B and Q of every field in ``fields`` on equilateral triangles of side each ``k`` [h/Mpc]."""
    k = np.atleast_1d(np.asarray(k, dtype=float))
    sides = np.stack([k, k, k], axis=1)
    return _estimate(fields, box_size, sides, np.full_like(k, 2 * np.pi / 3), mas, width)


def _estimate(fields, box_size, sides, theta, mas, width):
    fields = [stats.check_field(f, f"fields[{i}]") for i, f in enumerate(fields)]
    if not fields or any(f.shape != fields[0].shape for f in fields):
        raise InputError("fields", "need one or more fields of one common shape")
    box_size = stats.check_box_size(box_size)
    mas = stats.check_mas(mas)
    n, k_f = fields[0].shape[0], 2 * np.pi / box_size
    width = 2 * k_f if width is None else float(width)
    if not width > 0:
        raise InputError("width", f"shell width must be a positive wavenumber in h/Mpc, got {width}")
    half = width / (2 * k_f)
    # centres in units of k_F, rounded so that 3 k_F and a side computed as 3.0000000000000004 k_F
    # give the same shell (integer |n| sit exactly on the edges of integer-centred shells)
    centres, triangles = np.unique(np.round(sides / k_f, 9), return_inverse=True)
    triangles = triangles.reshape(sides.shape)
    norm = _mode_norm(n)
    masks = [_shell_mask(norm, c, half) for c in centres]
    shape = (n, n, n)
    indicator_sums = _indicator_sums(n, tuple(centres), half, tuple(map(tuple, triangles)))
    B, Q = [], []
    for field in fields:
        d = stats.fourier_modes(field, mas)
        sums = _triangle_sums(lambda s: fft.irfftn(d * masks[s], shape), triangles)
        B.append(box_size ** 6 / float(n) ** 9 * sums / indicator_sums)
        p = np.array([_shell_power(d, m, box_size) for m in masks])[triangles]
        Q.append(B[-1] / (p[:, 0] * p[:, 1] + p[:, 1] * p[:, 2] + p[:, 2] * p[:, 0]))
    return Bispectrum(k1=sides[:, 0], k2=sides[:, 1], k3=sides[:, 2], theta=theta,
                      B=np.array(B), Q=np.array(Q), ntriangles=np.rint(indicator_sums * float(n) ** 6))


@functools.lru_cache(maxsize=16)
def _indicator_sums(n, centres, half, triangles):
    """sum_x I_a I_b I_c per triangle (= N_triangles / n^6), I_i = irfftn(shell i indicator).

    Depends on the grid and the shells only, so it is cached across calls and fields.
    """
    norm = _mode_norm(n)
    sums = _triangle_sums(lambda s: fft.irfftn(_shell_mask(norm, centres[s], half).astype(np.complex64),
                                               (n, n, n)), triangles)
    sums.flags.writeable = False
    return sums


def _mode_norm(n):
    """|n| of every rfft mode (float32, (n, n, n//2+1)), DC set to -1 so no shell contains it."""
    nx, ny, nz = (m.astype(np.float32) for m in fft.integer_modes(n))
    norm = np.sqrt(nx ** 2 + ny ** 2 + nz ** 2)
    norm[0, 0, 0] = -1.0
    return norm


def _shell_mask(norm, centre, half):
    """Modes with centre - half <= |n| < centre + half (units of k_F); InputError if empty."""
    mask = (norm >= centre - half) & (norm < centre + half)
    if not mask.any():
        raise InputError("k", f"bispectrum shell at {centre:.3g} k_F holds no Fourier modes")
    return mask


def _shell_power(d, mask, box_size):
    """P averaged over a shell: L^3 / n^6 <|d|^2> with full-space (Hermitian) weights."""
    n = d.shape[0]
    weights = mask * fft.hermitian_weights(n).astype(np.float32)
    return float(np.sum(weights * (d.real ** 2 + d.imag ** 2)) / np.sum(weights)) * box_size ** 3 / float(n) ** 6


def _triangle_sums(shell_field, triangles):
    """sum_x x_a x_b x_c for each row (a, b, c) of ``triangles``, x_i = ``shell_field(i)``.

    Shell fields are computed once and dropped after their last use, so at most three n^3
    float32 arrays are alive at a time whatever the number of triangles.
    """
    last_use = {s: t for t, row in enumerate(triangles) for s in row}
    cache, out = {}, np.empty(len(triangles))
    for t, row in enumerate(triangles):
        for s in row:
            if s not in cache:
                cache[s] = shell_field(s)
        out[t] = np.sum(cache[row[0]] * cache[row[1]] * cache[row[2]], dtype=np.float64)
        for s in set(row):
            if last_use[s] == t:
                del cache[s]
    return out
