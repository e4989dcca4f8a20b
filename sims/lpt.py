"""Lagrangian perturbation theory initial conditions: Zel'dovich and second-order (2LPT)
displacements of a particle lattice and the matching momenta.

Convention (Scoccimarro 1998, MNRAS 299, 1097; Crocce, Pueblas & Scoccimarro 2006, eqs. 4-7;
Bouchet et al. 1995 for the growth factors):

    x(q, a) = q + D1(a) Psi1(q) + D2(a) Psi2(q)
    Psi1 = -grad phi1,    lap phi1 = delta_L(q)                  (delta_L at D1 = 1, i.e. z = 0)
    Psi2 = +grad phi2,    lap phi2 = sum_{i<j} [phi1_ii phi1_jj - phi1_ij^2]

with D1(a = 1) = 1 and D2 in the standard (negative) sign, D2 ~ -(3/7) D1^2 (sims.cosmology).
In Fourier space Psi1(k) = i k delta(k) / k^2 and Psi2(k) = -i k S(k) / k^2 for the source S.
Momenta are the FastPM canonical p = a^2 dx/dt / H0 [Mpc/h, H0 = 1]:

    p = a^2 E(a) [D1 f1 Psi1 + D2 f2 Psi2]                      (dD/da = f D / a)

Particles sit on the lattice q = i L / n (the node convention of docs/design.md), so the
displacement fields evaluated on the n^3 grid are the per-particle displacements, in C order.
FFTs: ``sims.fft`` (unnormalised forward, 1/n^3 inverse); derivative kernels i k_j are zeroed
on the Nyquist planes, where they have no real-valued counterpart.
"""
import numpy as np

from sims import fft
from sims.cosmology import D1, D2, E, f1, f2


def lattice(n, box_size):
    """Lattice positions q = (i, j, l) L / n [Mpc/h], float64 (n^3, 3), C order (i slowest)."""
    axis = np.arange(n) * (box_size / n)
    grid = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)


def _derivative_kernels(n, box_size):
    """i k_j [h/Mpc] for j = x, y, z on the rfft grid (n even), zero on each axis' Nyquist plane."""
    return [np.where(np.abs(m) == n // 2, 0.0, 2j * np.pi / box_size * m)
            for m in fft.integer_modes(n)]


def _inverse_laplacian(n, box_size):
    """-1 / k^2 [(Mpc/h)^2] on the rfft grid, 0 at k = 0 (solves lap phi = source)."""
    kx, ky, kz = fft.wavenumbers(n, box_size)
    k2 = kx ** 2 + ky ** 2 + kz ** 2
    k2[0, 0, 0] = np.inf
    return -1.0 / k2


def _gradient(phi_k, box_size):
    """grad phi on the grid, per particle: float64 (n^3, 3) from the rfft modes of phi."""
    n = phi_k.shape[0]
    return np.stack([fft.irfftn(d * phi_k, (n,) * 3).ravel()
                     for d in _derivative_kernels(n, box_size)], axis=1)


def zeldovich_displacement(delta_k, box_size):
    """First-order displacement Psi1 = -grad phi1, lap phi1 = delta [Mpc/h], float64 (n^3, 3).

    ``delta_k``: rfft modes (n, n, n//2+1) of the linear overdensity at D1 = 1 (sims.ics).
    Equivalent to Psi1(k) = i k delta(k) / k^2 (Zel'dovich 1970).
    """
    n = delta_k.shape[0]
    return -_gradient(_inverse_laplacian(n, box_size) * delta_k, box_size)


def second_order_source(delta_k, box_size):
    """2LPT source S = sum_{i<j} [phi1_ii phi1_jj - phi1_ij^2] on the grid, float64 (n, n, n).

    phi1_ij = IFFT(-k_i k_j phi1(k)) with phi1(k) = -delta(k) / k^2 (Scoccimarro 1998 eq. A4;
    the sign of phi1 drops out of the quadratic form). Products are taken on the grid itself,
    without dealiasing, as in 2LPTic.
    """
    n = delta_k.shape[0]
    phi_k = _inverse_laplacian(n, box_size) * delta_k
    ik = _derivative_kernels(n, box_size)

    def hessian(i, j):
        return fft.irfftn(ik[i] * ik[j] * phi_k, (n,) * 3)

    diag = [hessian(i, i) for i in range(3)]
    source = diag[0] * diag[1] + diag[1] * diag[2] + diag[2] * diag[0]
    for i, j in ((0, 1), (1, 2), (2, 0)):
        source -= hessian(i, j) ** 2
    return source


def second_order_displacement(delta_k, box_size):
    """Second-order displacement Psi2 = grad phi2, lap phi2 = S [Mpc/h], float64 (n^3, 3),
    to be multiplied by the (negative) D2 of sims.cosmology (module docstring)."""
    n = delta_k.shape[0]
    source_k = fft.rfftn(second_order_source(delta_k, box_size))
    return _gradient(_inverse_laplacian(n, box_size) * source_k, box_size)


def lpt_state(delta_k, box_size, cosmo, a, order=2):
    """Particle positions [Mpc/h] and momenta p = a^2 dx/dt / H0 [Mpc/h] at scale factor ``a``.

    ``order`` 1 (Zel'dovich) or 2 (2LPT). Positions are wrapped into [0, L). Returns two
    float64 (n^3, 3) arrays in lattice order (:func:`lattice`).
    """
    if order not in (1, 2):
        raise ValueError(f"LPT order must be 1 or 2, got {order}")
    n = delta_k.shape[0]
    growth = a ** 2 * E(cosmo, a)
    psi = float(D1(cosmo, a)) * zeldovich_displacement(delta_k, box_size)
    momenta = growth * float(f1(cosmo, a)) * psi
    if order == 2:
        psi2 = float(D2(cosmo, a)) * second_order_displacement(delta_k, box_size)
        psi += psi2
        momenta += growth * float(f2(cosmo, a)) * psi2
    positions = np.mod(lattice(n, box_size) + psi, box_size)
    return positions, momenta
