"""FFT shell bispectrum: exact against a brute-force sum over closed triangles, zero within its
Gaussian scatter for Gaussian fields, tree level (F2 kernel) for a second-order field."""
import itertools

import numpy as np
import pytest

from sims import bispectrum as bs
from sims.errors import InputError


def gaussian_modes(n, box_size, power_law, seed):
    """rfft modes d(n) = rfftn(r) sqrt(P N^3 / L^3) of a Gaussian field (docs/reference.md), and |k|."""
    white = np.random.default_rng(seed).standard_normal((n, n, n))
    m = np.fft.fftfreq(n, 1 / n)
    kvec = [2 * np.pi / box_size * c for c in (m[:, None, None], m[None, :, None], np.arange(n // 2 + 1)[None, None, :])]
    k = np.sqrt(sum(c ** 2 for c in kvec))
    k[0, 0, 0] = 1.0
    amplitude = np.sqrt(power_law(k) * n ** 3 / box_size ** 3)
    amplitude[0, 0, 0] = 0.0
    return np.fft.rfftn(white) * amplitude, kvec, k


def real(modes, n):
    return np.fft.irfftn(modes, s=(n, n, n), axes=(0, 1, 2))


def second_order_density(dk, kvec, k, n):
    """delta_L + delta_2 with delta_2 = (5/7) d^2 + grad d . grad phi + (2/7) phi_ij phi_ij,
    lap phi = d: the real-space form of the SPT kernel F2 = 5/7 + mu/2 (k1/k2 + k2/k1) + 2/7 mu^2
    (Bernardeau et al. 2002, Phys. Rep. 367, 1, eq. 45), i.e. the 2LPT density to second order."""
    d = real(dk, n)
    shift = sum(real(1j * ki * dk, n) * real(-1j * ki * dk / k ** 2, n) for ki in kvec)
    tidal = sum(real(ki * kj * dk / k ** 2, n) ** 2 for ki in kvec for kj in kvec)
    return d + 5 / 7 * d ** 2 + shift + 2 / 7 * tidal


def f2_kernel(q1, q2):
    """F2(q1, q2) for rows of wavevectors (docs/reference.md)."""
    k1, k2 = np.linalg.norm(q1, axis=-1), np.linalg.norm(q2, axis=-1)
    mu = np.sum(q1 * q2, axis=-1) / (k1 * k2)
    return 5 / 7 + mu / 2 * (k1 / k2 + k2 / k1) + 2 / 7 * mu ** 2


def tree_level_b(q1, q2, q3, power):
    """B = 2 F2(k1, k2) P1 P2 + cyc. for rows of closed triangles q1 + q2 + q3 = 0."""
    p = [power(np.linalg.norm(q, axis=-1)) for q in (q1, q2, q3)]
    return 2 * (f2_kernel(q1, q2) * p[0] * p[1] + f2_kernel(q2, q3) * p[1] * p[2] + f2_kernel(q3, q1) * p[2] * p[0])


def closed_triangles(n, centres, half=1.0):
    """All ordered closed triangles (n1, n2, n3 = -(n1 + n2) mod n, wrapped) of full-space
    integer modes with |n_i| in [c_i - half, c_i + half), DC excluded: three (T, 3) arrays."""
    m = np.fft.fftfreq(n, 1 / n).astype(int)
    grid = np.array(list(itertools.product(m, repeat=3)))
    norm = np.linalg.norm(grid, axis=1)
    s1, s2 = (grid[(norm >= c - half) & (norm < c + half) & (norm > 0)] for c in centres[:2])
    q3 = (-(s1[:, None, :] + s2[None, :, :]) + n // 2) % n - n // 2  # wrapped into fftfreq range
    if n % 2 == 0:
        q3[q3 == n // 2] = -(n // 2)
    n3 = np.linalg.norm(q3, axis=2)
    ok = (n3 >= centres[2] - half) & (n3 < centres[2] + half) & (n3 > 0)
    return (np.broadcast_to(s1[:, None, :], q3.shape)[ok], np.broadcast_to(s2[None, :, :], q3.shape)[ok],
            q3[ok])


def test_fft_estimator_equals_brute_force_triangle_sum():
    n, box = 8, 40.0
    k_f = 2 * np.pi / box
    field = np.random.default_rng(0).standard_normal((n, n, n)).astype(np.float32)
    theta = np.array([0.3, 1.5, 2.8])
    res = bs.bispectrum_theta([field], box, 2 * k_f, 3 * k_f, theta)
    full = np.fft.fftn(field.astype(np.float64))
    for j in range(len(theta)):
        q1, q2, q3 = closed_triangles(n, (2.0, 3.0, res.k3[j] / k_f))
        product = full[tuple(q1.T)] * full[tuple(q2.T)] * full[tuple(q3.T)]
        assert res.ntriangles[j] == len(q1)
        np.testing.assert_allclose(res.B[0, j], product.mean().real * box ** 6 / n ** 9, rtol=1e-4)


def test_equilateral_is_theta_two_thirds_pi_with_equal_sides():
    n, box = 16, 60.0
    k_f = 2 * np.pi / box
    field = np.random.default_rng(1).standard_normal((n, n, n)).astype(np.float32)
    eq = bs.bispectrum_equilateral([field, 2 * field], box, [3 * k_f, 4 * k_f])
    for j, k in enumerate([3 * k_f, 4 * k_f]):
        th = bs.bispectrum_theta([field, 2 * field], box, k, k, 2 * np.pi / 3)
        np.testing.assert_allclose(eq.B[:, j], th.B[:, 0], rtol=1e-6)
    np.testing.assert_allclose(eq.B[1], 8 * eq.B[0], rtol=1e-5)  # B is cubic in the field
    np.testing.assert_allclose(eq.Q[1], eq.Q[0] / 2, rtol=1e-5)  # Q scales as 1 / amplitude
    np.testing.assert_allclose(eq.k3, eq.k1)


def test_tree_level_helper_gives_q_equilateral_four_sevenths():
    """Independent value: Q_eq = 4/7 at tree level for any power spectrum (Fry 1984)."""
    q1 = np.array([[1.0, 0.0, 0.0]])
    q2 = np.array([[-0.5, np.sqrt(3) / 2, 0.0]])
    q3 = -(q1 + q2)
    power = lambda k: 3.0 * k ** -1.7  # noqa: E731
    assert tree_level_b(q1, q2, q3, power)[0] / (3 * power(1.0) ** 2) == pytest.approx(4 / 7)


def test_gaussian_field_bispectrum_is_zero_within_its_gaussian_scatter():
    """Var(B) = L^3 <P1 P2 P3> / N_triangles for a Gaussian field on three distinct shells (each
    triangle pairs only with its conjugate; Scoccimarro 2015 eq. 35 in our normalisation)."""
    n, box, seeds = 24, 100.0, 16
    k_f = 2 * np.pi / box
    power = lambda k: 200 * (k / 0.1) ** -1.5  # noqa: E731
    theta = np.array([0.2, 0.5, 0.8])  # k3 in [7.9, 8.9] k_F: shells disjoint from k1, k2
    fields = [real(gaussian_modes(n, box, power, s)[0], n).astype(np.float32) for s in range(seeds)]
    res = bs.bispectrum_theta(fields, box, 3 * k_f, 6 * k_f, theta)
    sigma = np.array([np.sqrt(box ** 3 * np.mean(np.prod([power(np.linalg.norm(q, axis=1) * k_f) for q in tri], axis=0))
                              / res.ntriangles[j])
                      for j, tri in enumerate(closed_triangles(n, (3.0, 6.0, k3 / k_f)) for k3 in res.k3)])
    z = res.B / sigma
    assert np.all(np.abs(z.mean(axis=0)) * np.sqrt(seeds) < 4)
    assert 0.4 < np.mean(z ** 2) < 2.0


def test_second_order_field_follows_tree_level():
    """B of delta_L + delta_2 minus B of its own delta_L (this cancels the realisation's
    Gaussian term <d d d>, leaving 3 <d d delta_2> = tree level + O(P^3)), averaged over seeds,
    against the tree-level B averaged over the same closed triangles (brute force); and Q of
    the second-order field itself against tree-level Q."""
    n, box, seeds = 32, 200.0, 6
    k_f = 2 * np.pi / box
    power = lambda k: 300 * (k / 0.1) ** -1.5 * np.exp(-(k / (12 * k_f)) ** 2)  # noqa: E731
    theta = np.linspace(0.1, np.pi - 0.1, 6)
    ratios, q_measured = [], []
    for seed in range(seeds):
        dk, kvec, k = gaussian_modes(n, box, power, seed)
        linear = real(dk, n).astype(np.float32)
        nonlinear = second_order_density(dk, kvec, k, n).astype(np.float32)
        res = bs.bispectrum_theta([nonlinear, linear], box, 3 * k_f, 6 * k_f, theta)
        ratios.append(res.B[0] - res.B[1])
        q_measured.append(res.Q[0])
    tree = np.array([np.mean(tree_level_b(*(q * k_f for q in closed_triangles(n, (3.0, 6.0, k3 / k_f))), power))
                     for k3 in res.k3])
    ratio = np.mean(ratios, axis=0) / tree
    assert np.all(np.abs(ratio - 1) < 0.15)
    # reduced Q of the full field itself against tree level, shell powers of the model
    shell_power = [np.mean(power(shell_norms(n, c) * k_f)) for c in (3.0, 6.0)]
    p = np.array([[*shell_power, np.mean(power(shell_norms(n, k3 / k_f) * k_f))] for k3 in res.k3])
    q_tree = tree / (p[:, 0] * p[:, 1] + p[:, 1] * p[:, 2] + p[:, 2] * p[:, 0])
    np.testing.assert_allclose(np.mean(q_measured, axis=0), q_tree, rtol=0.15)


def shell_norms(n, centre, half=1.0):
    """|n| of the full-space modes of a shell, DC excluded."""
    m = np.fft.fftfreq(n, 1 / n)
    norm = np.sqrt(m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2).ravel()
    return norm[(norm >= centre - half) & (norm < centre + half) & (norm > 0)]


def test_empty_shell_and_mismatched_fields_raise_input_error():
    field = np.zeros((8, 8, 8), np.float32)
    with pytest.raises(InputError, match="no Fourier modes"):
        bs.bispectrum_equilateral([field], 10.0, [100.0])
    with pytest.raises(InputError, match="common shape"):
        bs.bispectrum_equilateral([field, np.zeros((4, 4, 4), np.float32)], 10.0, [1.0])
