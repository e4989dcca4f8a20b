"""Initial conditions: resolution-invariant white noise, the linear field's power, and
Zel'dovich / 2LPT displacements against analytic plane-wave solutions and second-order
perturbation theory (F2 kernel, docs/reference.md)."""
import itertools

import numpy as np
import pytest

from sims import fft, ics, lpt, stats
from sims.cosmology import PLANCK18, D2, E
from sims.errors import InputError


def shared_modes(small, big, n_small, n_big):
    """The rfft modes with every |n_i| < n_small / 2 from both grids (big ones rescaled by
    (n_small / n_big)^3 for the unnormalised FFT), as flat arrays."""
    half = n_small // 2
    rows_small = np.r_[0:half, n_small - half + 1:n_small]
    rows_big = np.r_[0:half, n_big - half + 1:n_big]
    a = small[np.ix_(rows_small, rows_small, np.arange(half))]
    b = big[np.ix_(rows_big, rows_big, np.arange(half))] * (n_small / n_big) ** 3
    return a.ravel(), b.ravel()


def correlation(a, b):
    return np.real(np.vdot(a, b)) / np.sqrt(np.vdot(a, a).real * np.vdot(b, b).real)


# ---------------------------------------------------------------- white noise


def test_cube_shells_partition_the_half_space_in_grid_free_order():
    S = 6
    drawn = np.concatenate([ics.shell_modes(s) for s in range(S)])
    expected = {m for m in itertools.product(range(-S + 1, S), range(-S + 1, S), range(S))}
    assert len(drawn) == len(expected) == (2 * S - 1) ** 2 * S
    assert set(map(tuple, drawn)) == expected
    for s in range(S):
        modes = ics.shell_modes(s)
        assert len(modes) == 12 * s ** 2 + 4 * s + 1
        assert np.all(np.abs(modes).max(axis=1) == s)


@pytest.mark.parametrize("n_small,n_big", [(16, 32), (8, 24)])
def test_lr_and_hr_noise_of_one_seed_share_every_lr_mode(n_small, n_big):
    small = ics.linear_density_modes(11, n_small, 100.0, PLANCK18)
    big = ics.linear_density_modes(11, n_big, 100.0, PLANCK18)
    a, b = shared_modes(small, big, n_small, n_big)
    assert 1 - correlation(a, b) < 1e-6
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    other = ics.linear_density_modes(12, n_small, 100.0, PLANCK18)
    assert abs(correlation(*shared_modes(other, big, n_small, n_big))) < 0.2


def test_lr_field_is_the_low_passed_hr_field_at_the_lr_nodes():
    n_small, n_big, L = 16, 32, 80.0
    small = fft.irfftn(ics.linear_density_modes(3, n_small, L, PLANCK18), (n_small,) * 3)
    big_k = ics.linear_density_modes(3, n_big, L, PLANCK18)
    nx, ny, nz = fft.integer_modes(n_big)
    big_k[(np.abs(nx) >= n_small // 2) | (np.abs(ny) >= n_small // 2) | (nz >= n_small // 2)] = 0
    low_passed = fft.irfftn(big_k, (n_big,) * 3)
    np.testing.assert_allclose(low_passed[::2, ::2, ::2], small, atol=1e-12 * np.abs(small).max())


def test_white_noise_is_a_real_unit_variance_field_without_nyquist_and_dc():
    n = 32
    w = ics.white_noise(5, n)
    field = fft.irfftn(w.copy(), (n,) * 3)
    np.testing.assert_allclose(fft.rfftn(field), w, atol=1e-9 * np.sqrt(n ** 3))
    assert w[0, 0, 0] == 0 and not w[n // 2].any() and not w[:, n // 2].any() and not w[..., -1].any()
    live = ((n - 1) ** 3 - 1) / n ** 3          # fraction of modes drawn (no Nyquist, no DC)
    assert abs(field.mean()) < 5 / n ** 1.5
    assert abs(field.var() / live - 1) < 5 * np.sqrt(2 / n ** 3)
    inner = w[1:n // 2, 1:n // 2, 1:n // 2].ravel() / np.sqrt(n ** 3 / 2)
    assert abs(np.mean(inner.real ** 2) - 1) < 5 * np.sqrt(2 / inner.size)
    assert abs(np.mean(inner.imag ** 2) - 1) < 5 * np.sqrt(2 / inner.size)
    assert abs(np.mean(inner.real * inner.imag)) < 5 / np.sqrt(inner.size)
    np.testing.assert_array_equal(ics.white_noise(5, n), w)


def test_linear_modes_carry_the_requested_power_within_cosmic_variance():
    n, L = 32, 200.0

    def power(k):
        return 3000.0 * (k / 0.1) ** -1.5

    d = ics.linear_modes(ics.white_noise(8, n), L, power)
    spec = stats.power_spectrum(fft.irfftn(d, (n,) * 3), L)
    use = spec.k < (n // 2 - 1) * 2 * np.pi / L      # shells free of the zeroed Nyquist planes
    expected = power(spec.k[use])
    chi2 = np.sum((spec.power[use] / expected - 1) ** 2 * spec.nmodes[use] / 2)
    assert chi2 < use.sum() + 5 * np.sqrt(2 * use.sum())


@pytest.mark.parametrize("n", [15, 2, 0])
def test_odd_or_tiny_grids_are_rejected(n):
    with pytest.raises(InputError, match="even integer >= 4"):
        ics.white_noise(1, n)


# ---------------------------------------------------------------- LPT


def cosine_field(n, box_size, waves):
    """rfft modes of sum_j A_j cos(2 pi m_j . q / L) for integer vectors m_j (unnormalised FFT)."""
    q = lpt.lattice(n, box_size).reshape(n, n, n, 3)
    field = sum(amp * np.cos(2 * np.pi / box_size * q @ np.asarray(m, float)) for amp, m in waves)
    return fft.rfftn(field), q


def test_lattice_is_the_node_convention_in_c_order():
    q = lpt.lattice(4, 8.0)
    assert q.shape == (64, 3)
    np.testing.assert_array_equal(q[1], [0, 0, 2.0])
    np.testing.assert_array_equal(q[4], [0, 2.0, 0])
    np.testing.assert_array_equal(q[16], [2.0, 0, 0])


def test_zeldovich_displacement_of_a_plane_wave():
    n, L, m = 16, 50.0, np.array([1, 2, 0])
    delta_k, q = cosine_field(n, L, [(0.3, m)])
    k = 2 * np.pi / L * m
    expected = -0.3 * np.sin(q @ k)[..., None] * k / (k @ k)       # div Psi = -delta
    np.testing.assert_allclose(lpt.zeldovich_displacement(delta_k, L), expected.reshape(-1, 3),
                               atol=1e-12)


def test_second_order_source_and_displacement_of_crossed_waves():
    n, L = 16, 60.0
    ka, kb, kc = (2 * np.pi / L * np.array(m) for m in ((1, 0, 0), (0, 2, 0), (1, 1, 0)))
    delta_k, q = cosine_field(n, L, [(0.5, (1, 0, 0)), (0.2, (0, 2, 0)), (0.4, (1, 1, 0))])
    ca, cb = np.cos(q @ ka), np.cos(q @ kb)
    # phi1_ij = (k_i k_j / k^2) delta_j per wave; the (1,1,0) wave alone is one-dimensional
    # (its own phi_xx phi_yy - phi_xy^2 vanishes), so only cross terms between waves survive.
    cc = np.cos(q @ kc)
    phi = np.zeros(q.shape[:3] + (3, 3))
    for amp, k, c in ((0.5, ka, ca), (0.2, kb, cb), (0.4, kc, cc)):
        phi += amp * c[..., None, None] * np.outer(k, k) / (k @ k)
    expected = sum(phi[..., i, i] * phi[..., j, j] - phi[..., i, j] ** 2
                   for i, j in ((0, 1), (1, 2), (0, 2)))
    source = lpt.second_order_source(delta_k, L)
    np.testing.assert_allclose(source, expected, atol=1e-12)
    # Two orthogonal waves alone: lap phi2 = A B cos(ka x) cos(kb y) solved analytically.
    delta_k, q = cosine_field(n, L, [(0.5, (1, 0, 0)), (0.2, (0, 2, 0))])
    ka2, kb2 = ka @ ka, kb @ kb
    sa, sb = np.sin(q @ ka), np.sin(q @ kb)
    psi2 = 0.1 / (ka2 + kb2) * np.stack([ka[0] * sa * cb, kb[1] * ca * sb, 0 * ca], axis=-1)
    np.testing.assert_allclose(lpt.second_order_displacement(delta_k, L), psi2.reshape(-1, 3),
                               atol=1e-12)


@pytest.mark.parametrize("m1,m2", [((1, 0, 0), (0, 1, 0)), ((1, 0, 0), (1, 1, 0)),
                                   ((1, 0, 0), (-1, 1, 0)), ((0, 1, 1), (1, 0, 2))])
def test_2lpt_density_reproduces_the_second_order_kernel_F2(m1, m2):
    """x = q + eps Psi1 - (3/7) eps^2 Psi2 (EdS 2LPT) must give the Eulerian density
    delta(k1 + k2) = 2 F2(k1, k2) (eps/2)^2 at second order, with the tree-level kernel
    F2 = 5/7 + mu/2 (k1/k2 + k2/k1) + 2/7 mu^2 (docs/reference.md). The density mode is the exact
    particle sum (1/N) sum_p exp(-i k.x_p); odd orders cancel between +eps and -eps."""
    n, L, eps = 16, 100.0, 2e-3
    delta_k, q = cosine_field(n, L, [(1.0, m1), (1.0, m2)])
    q = q.reshape(-1, 3)
    psi1 = lpt.zeldovich_displacement(delta_k, L)
    psi2 = lpt.second_order_displacement(delta_k, L)
    k1, k2 = (2 * np.pi / L * np.array(m, float) for m in (m1, m2))
    k = k1 + k2

    def density_mode(e):
        x = q + e * psi1 - 3 / 7 * e ** 2 * psi2
        return np.exp(-1j * x @ k).mean()

    second_order = (density_mode(eps) + density_mode(-eps)).real / 2
    mu = k1 @ k2 / np.sqrt((k1 @ k1) * (k2 @ k2))
    r = np.sqrt((k1 @ k1) / (k2 @ k2))
    F2 = 5 / 7 + mu / 2 * (r + 1 / r) + 2 / 7 * mu ** 2
    np.testing.assert_allclose(second_order, 2 * F2 * (eps / 2) ** 2, rtol=1e-4)


def test_lpt_momenta_are_a3_E_dx_da():
    n, L, a, h = 16, 100.0, 0.05, 1e-4
    delta_k = ics.linear_density_modes(4, n, L, PLANCK18)
    x, p = lpt.lpt_state(delta_k, L, PLANCK18, a, order=2)
    x_plus, _ = lpt.lpt_state(delta_k, L, PLANCK18, a + h, order=2)
    x_minus, _ = lpt.lpt_state(delta_k, L, PLANCK18, a - h, order=2)
    step = x_plus - x_minus
    step -= L * np.round(step / L)
    np.testing.assert_allclose(p, a ** 3 * E(PLANCK18, a) * step / (2 * h), rtol=1e-6, atol=1e-9)
    x1, _ = lpt.lpt_state(delta_k, L, PLANCK18, a, order=1)
    psi2 = lpt.second_order_displacement(delta_k, L)
    shift = x - x1
    shift -= L * np.round(shift / L)
    np.testing.assert_allclose(shift, D2(PLANCK18, a) * psi2, atol=1e-9)
    assert np.all((x >= 0) & (x < L))
