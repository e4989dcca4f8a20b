"""Resolution-invariant Gaussian initial conditions: white noise drawn mode by mode in an order
that does not depend on the grid, and the linear density field built from it.

Scheme (an extension of the N-GenIC per-column seeding, Springel 2005, to whole cube shells):
one generator ``np.random.default_rng(seed)`` is consumed shell by shell in the cube norm
s = max(|n_x|, |n_y|, n_z) (integer modes n, n_z >= 0), s = 0, 1, 2, ..., and inside a shell in
a fixed order that depends on s only (:func:`shell_modes`). A grid of n^3 cells takes the shells
s = 0 .. n/2 - 1, i.e. every mode with all |n_i| < n/2, so its draws are exactly the first draws
of any larger grid: LR and HR grids with the same seed hold identical values on every mode the
LR grid can represent. The Nyquist planes (|n_i| = n/2) are left at zero, the DC mode is zeroed.

Normalisation (docs/reference.md, Initial conditions): the noise has the statistics of ``rfftn`` of
unit-variance real white noise, <|w(n)|^2> = n^3, real and imaginary parts independent with
variance n^3 / 2. Hermitian symmetry on the n_z = 0 plane is imposed as
w(n) = (g(n) + conj g(-n)) / sqrt(2), which keeps the variance and is resolution-invariant too.
"""
import numpy as np

from sims import fft
from sims.cosmology import linear_power
from sims.errors import InputError


def check_grid(n, source="n"):
    """Return ``n`` as an int after checking it is an even number of cells (or particles) per
    side >= 4, which the Nyquist handling of the white noise needs; InputError(source) if not."""
    if isinstance(n, bool) or int(n) != n or n < 4 or int(n) % 2:
        raise InputError(source, f"must be an even integer >= 4 (cells or particles per side), got {n!r}")
    return int(n)


def shell_modes(s):
    """Integer modes (n_x, n_y, n_z) of cube shell s, n_z >= 0, in the fixed drawing order.

    Returns int64 (12 s^2 + 4 s + 1, 3): first the ring max(|n_x|, |n_y|) = s for n_z = 0 .. s-1
    (n_z slowest, then n_x, then n_y), then the face n_z = s with |n_x|, |n_y| <= s (n_x, n_y
    ascending). The order depends on s alone, never on the grid size.
    """
    side = np.arange(-s, s + 1)
    nx, ny = (a.ravel() for a in np.meshgrid(side, side, indexing="ij"))
    on_ring = np.maximum(np.abs(nx), np.abs(ny)) == s
    ring = np.column_stack([nx[on_ring], ny[on_ring]])
    ring_z = np.repeat(np.arange(s), len(ring))
    ring_modes = np.column_stack([np.tile(ring, (s, 1)), ring_z])
    face = np.column_stack([nx, ny, np.full(nx.shape, s)])
    return np.concatenate([ring_modes, face]).astype(np.int64)


def white_noise(seed, n):
    """Resolution-invariant complex white noise on the rfft grid of an n^3 box.

    ``seed``: int; ``n``: even >= 4. Returns complex128 (n, n, n//2+1) in the normalisation of
    ``rfftn`` of unit-variance real noise (module docstring); Nyquist planes and DC are zero.
    """
    n = check_grid(n)
    rng = np.random.default_rng(seed)
    noise = np.zeros((n, n, n // 2 + 1), dtype=np.complex128)
    flat = noise.reshape(-1).view(np.float64).reshape(-1, 2)     # (re, im) pairs, no copy
    amplitude = np.sqrt(n ** 3 / 2.0)
    for s in range(n // 2):
        modes = shell_modes(s)
        index = ((modes[:, 0] % n) * n + modes[:, 1] % n) * (n // 2 + 1) + modes[:, 2]
        flat[index] = rng.standard_normal((len(modes), 2))
    noise *= amplitude
    noise[0, 0, 0] = 0.0
    return hermitian_plane(noise)


def hermitian_plane(noise):
    """Copy of ``noise`` with w(n) -> (w(n) + conj w(-n)) / sqrt(2) on the n_z = 0 plane.

    Makes the n_z = 0 plane Hermitian (w(-n) = conj w(n)) without changing the variance of
    modes that are not their own conjugate.
    """
    out = noise.copy()
    plane = noise[:, :, 0]
    mirrored = np.roll(plane[::-1, ::-1], 1, axis=(0, 1))     # plane[-i % n, -j % n]
    out[:, :, 0] = (plane + np.conj(mirrored)) / np.sqrt(2.0)
    return out


def linear_modes(noise, box_size, power):
    """Linear density modes d(n) = w(n) sqrt(P(k) n^3 / L^3) on the rfft grid (docs/reference.md).

    ``noise``: (n, n, n//2+1) from :func:`white_noise`; ``box_size`` L [Mpc/h]; ``power``: a
    callable P(k) [(Mpc/h)^3] of k [h/Mpc]. Returns complex128 modes in the unnormalised-``rfftn``
    convention, so ``sims.fft.irfftn(d, (n,)*3)`` is the overdensity field and
    P(k) = L^3 / n^6 <|d|^2>. DC and Nyquist planes are zero (as in ``noise``).
    """
    n = noise.shape[0]
    kx, ky, kz = fft.wavenumbers(n, box_size)
    k = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    k[0, 0, 0] = 1.0                       # any finite k: the DC noise is zero
    return noise * np.sqrt(power(k) * n ** 3 / box_size ** 3)


def linear_density_modes(seed, n, box_size, cosmo, z=0.0):
    """Linear density modes of seed ``seed`` on an n^3 grid, EH98 P_lin(k, z) of ``cosmo``.

    Shorthand for ``linear_modes(white_noise(seed, n), box_size, P_lin(., z))``.
    """
    return linear_modes(white_noise(seed, n), box_size, lambda k: linear_power(cosmo, k, z))
