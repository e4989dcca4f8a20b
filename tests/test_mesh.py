"""sims.mesh: painting and readout against independent references and analytic values, the
mass-assignment window against a quadrature of the kernel's Fourier transform, and resampling."""
import numba
import numpy as np
import pytest

from sims import fft, mesh
from sims.errors import InputError

SCHEMES = list(mesh.MAS_ORDER)


def bspline(d, order):
    """Order-p assignment kernel K_p(d), the unit box convolved with itself p times (Hockney &
    Eastwood 1988, ch. 5), written independently of sims._kernels."""
    d = np.abs(d)
    if order == 1:
        return (d < 0.5).astype(float)
    if order == 2:
        return np.clip(1.0 - d, 0.0, None)
    return np.where(d < 0.5, 0.75 - d ** 2, np.where(d < 1.5, 0.5 * (1.5 - d) ** 2, 0.0))


def paint_reference(positions, n, box_size, order, weights):
    """np.add.at painting: every node within 2 cells gets weight * prod_i K_p(node_i - u_i)."""
    u = (positions * n / box_size) % n
    base = np.floor(u).astype(int)
    grid = np.zeros((n, n, n))
    for offset in np.ndindex(5, 5, 5):
        node = base + np.array(offset) - 2
        w = weights * np.prod(bspline(node - u, order), axis=1)
        np.add.at(grid, tuple((node % n).T), w)
    return grid


def particles(npart, box_size, seed):
    """Uniform random positions, a third of them outside [0, L) to exercise the periodic wrap."""
    return np.random.default_rng(seed).uniform(-0.5 * box_size, 1.5 * box_size, (npart, 3))


@pytest.mark.parametrize("mas", SCHEMES)
def test_paint_matches_add_at_reference(mas):
    box_size, n = 50.0, 12
    positions = particles(3000, box_size, seed=1)
    weights = np.random.default_rng(2).uniform(0.5, 2.0, len(positions))
    expected = paint_reference(positions, n, box_size, mesh.MAS_ORDER[mas], weights)
    painted = mesh.paint(positions, n, box_size, mas, weights)
    np.testing.assert_allclose(painted, expected, rtol=1e-5, atol=1e-5)


def test_paint_float32_positions_and_clustered_particles():
    """float32 input, and particles packed into 3 x slabs (chunks degenerate to minimum width)."""
    box_size, n = 40.0, 16
    positions = particles(2000, box_size, seed=3).astype(np.float32)
    positions[:1500, 0] = np.random.default_rng(4).uniform(10.0, 17.5, 1500)
    expected = paint_reference(positions.astype(np.float64), n, box_size, 3, np.ones(len(positions)))
    np.testing.assert_allclose(mesh.paint(positions, n, box_size, "tsc"), expected, rtol=1e-5, atol=1e-5)


def test_paint_independent_of_thread_count():
    positions = particles(5000, 30.0, seed=5)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = mesh.paint(positions, 16, 30.0, "cic")
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_allclose(mesh.paint(positions, 16, 30.0, "cic"), serial, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mas", SCHEMES)
def test_mass_conservation(mas):
    positions = particles(4000, 25.0, seed=6)
    weights = np.random.default_rng(7).exponential(1.0, len(positions))
    single = mesh.paint(positions, 16, 25.0, mas, weights)
    double = mesh.paint(positions, 16, 25.0, mas, weights, out=np.empty((16,) * 3))
    assert single.dtype == np.float32 and double.dtype == np.float64
    assert np.sum(single, dtype=np.float64) == pytest.approx(weights.sum(), rel=1e-6)
    assert double.sum() == pytest.approx(weights.sum(), rel=1e-12)


@pytest.mark.parametrize("mas", SCHEMES)
def test_uniform_lattice_paints_to_zero_overdensity(mas):
    """One particle per cell: exactly on the nodes (box size not a power of 2) delta is exactly 0;
    a lattice shifted by less than half a cell gives 0 to round-off."""
    n, box_size = 12, 205.0
    nodes = np.indices((n,) * 3).reshape(3, -1).T * (box_size / n)
    assert np.all(mesh.overdensity(mesh.paint(nodes, n, box_size, mas)) == 0)
    shifted = nodes + np.array([0.37, -0.21, 0.45]) * box_size / n
    np.testing.assert_allclose(mesh.overdensity(mesh.paint(shifted, n, box_size, mas)), 0, atol=1e-6)


def test_particle_on_a_node_puts_all_cic_mass_there():
    grid = mesh.paint(np.array([[3 * 100.0 / 16, 0.0, 15 * 100.0 / 16]]), 16, 100.0, "cic")
    assert grid[3, 0, 15] == 1.0 and grid.sum() == 1.0


def plane_wave(x, k, phase):
    return np.cos(x @ k + phase)


@pytest.mark.parametrize("mas, rate", [("ngp", 1), ("cic", 2), ("tsc", 2)])
def test_readout_of_plane_wave_converges(mas, rate):
    """Readout of a sampled plane wave at random points: rms error falls as h^order (NGP h,
    CIC and TSC h^2); CIC also obeys the multilinear interpolation bound (h^2/8) sum_i k_i^2."""
    box_size, k, phase = 100.0, 2 * np.pi / 100.0 * np.array([2.0, -1.0, 3.0]), 0.3
    points = np.random.default_rng(8).uniform(0, box_size, (20000, 3))
    errors = []
    for n in (32, 64):
        nodes = np.indices((n,) * 3).transpose(1, 2, 3, 0) * (box_size / n)
        field = plane_wave(nodes, k, phase).astype(np.float32)
        error = mesh.readout(field, points, box_size, mas) - plane_wave(points, k, phase)
        if mas == "cic":
            assert np.abs(error).max() <= (box_size / n) ** 2 / 8 * np.sum(k ** 2) + 1e-6
        errors.append(np.sqrt(np.mean(error ** 2)))
    assert 2 ** rate * 0.75 < errors[0] / errors[1] < 2 ** rate * 1.25


@pytest.mark.parametrize("mas", SCHEMES)
def test_readout_is_adjoint_of_paint(mas):
    """<paint(w), f> == <w, readout(f)> to float64 round-off."""
    rng = np.random.default_rng(9)
    positions, weights = particles(3000, 20.0, seed=10), rng.standard_normal(3000)
    field = rng.standard_normal((10, 10, 10))
    painted = mesh.paint(positions, 10, 20.0, mas, weights, out=np.empty((10,) * 3))
    read = mesh.readout(field, positions, 20.0, mas)
    assert np.sum(painted * field) == pytest.approx(weights @ read, rel=1e-12)


def test_readout_out_must_be_c_contiguous():
    """As the docstring says: a row of a (3, N) buffer is filled in place, a column of an (N, 3)
    buffer (strided) is refused."""
    positions = particles(100, 20.0, seed=17)
    field = np.random.default_rng(18).standard_normal((10,) * 3).astype(np.float32)
    rows = np.zeros((3, 100), np.float32)
    returned = mesh.readout(field, positions, 20.0, out=rows[1])
    assert np.shares_memory(returned, rows) and not rows[[0, 2]].any()
    np.testing.assert_array_equal(rows[1], mesh.readout(field, positions, 20.0))
    with pytest.raises(ValueError, match="C-contiguous"):
        mesh.readout(field, positions, 20.0, out=np.zeros((100, 3), np.float32)[:, 0])


def window_by_quadrature(mode, n, mas):
    """W(k) = integral over one cell of sum_j K(j - u) exp(-i theta (j - u)) du, theta = 2 pi m / n:
    paint particles at Gauss-Legendre points of the cell with weights cos and sin(theta.u) and take
    the DFT at the mode. Exact up to quadrature error (the integrand is smooth on [0, 1/2] and
    [1/2, 1], where every kernel has its breakpoints)."""
    t, w = np.polynomial.legendre.leggauss(12)
    u1 = np.concatenate([0.25 + 0.25 * t, 0.75 + 0.25 * t])
    w1 = np.concatenate([0.25 * w, 0.25 * w])
    u = np.stack(np.meshgrid(u1, u1, u1, indexing="ij"), -1).reshape(-1, 3)
    weights = np.prod(np.stack(np.meshgrid(w1, w1, w1, indexing="ij"), -1).reshape(-1, 3), axis=1)
    phase = u @ (2 * np.pi * np.asarray(mode) / n)
    index = tuple(m % n for m in mode[:2]) + (mode[2],)
    spectrum = [fft.rfftn(mesh.paint(u, n, n, mas, weights * f(phase), out=np.empty((n,) * 3)))[index]
                for f in (np.cos, np.sin)]
    return spectrum[0] + 1j * spectrum[1], index


@pytest.mark.parametrize("mas", SCHEMES)
@pytest.mark.parametrize("mode", [(1, -3, 2), (4, 4, 4), (0, -4, 1)])
def test_window_is_fourier_transform_of_the_painting_kernel(mas, mode):
    n = 8
    measured, index = window_by_quadrature(mode, n, mas)
    assert measured.real == pytest.approx(mesh.window(n, mas)[index], abs=1e-12)
    assert abs(measured.imag) < 1e-12


def test_window_values_and_deconvolve_inverts_it():
    n = 8
    assert mesh.window(n, "cic")[4, 0, 0] == pytest.approx((2 / np.pi) ** 2)
    assert mesh.window(n, "tsc")[0, 0, 0] == 1.0
    factors = mesh.window_factors(n, "TSC")
    assert [f.shape for f in factors] == [(n, 1, 1), (1, n, 1), (1, 1, n // 2 + 1)]
    np.testing.assert_array_equal(factors[0] * factors[1] * factors[2], mesh.window(n, "tsc"))
    field = np.random.default_rng(11).standard_normal((n,) * 3)
    smoothed = fft.irfftn(fft.rfftn(field) * mesh.window(n, "tsc"), field.shape)
    np.testing.assert_allclose(mesh.deconvolve(smoothed, "tsc"), field, atol=1e-12)
    assert mesh.deconvolve(field.astype(np.float32), "cic").dtype == np.float32


def random_field(n, seed, band=None):
    """Gaussian random field on n^3; with band, only modes |m_i| < band are kept."""
    field = np.random.default_rng(seed).standard_normal((n,) * 3)
    if band is None:
        return field
    keep = [np.abs(m) < band for m in fft.integer_modes(n)]
    return fft.irfftn(fft.rfftn(field) * (keep[0] & keep[1] & keep[2]), field.shape)


@pytest.mark.parametrize("n, n_big", [(8, 16), (9, 18), (8, 12), (7, 10)])
def test_resample_up_then_down_is_identity_and_passes_through_coarse_nodes(n, n_big):
    coarse = random_field(n, seed=12)
    fine = mesh.resample(coarse, n_big)
    np.testing.assert_allclose(mesh.resample(fine, n), coarse, atol=1e-12)
    assert fine.mean() == pytest.approx(coarse.mean(), abs=1e-14)
    if n_big % n == 0:
        step = n_big // n
        np.testing.assert_allclose(fine[::step, ::step, ::step], coarse, atol=1e-12)


def test_resample_down_then_up_is_exact_for_band_limited_field():
    fine = random_field(16, seed=13, band=4)
    np.testing.assert_allclose(mesh.resample(mesh.resample(fine, 8), 16), fine, atol=1e-12)
    field = random_field(16, seed=14)
    assert mesh.resample(field, 10).mean() == pytest.approx(field.mean(), abs=1e-14)
    np.testing.assert_array_equal(mesh.resample(field, 16), field)


@pytest.mark.parametrize("n, n_new", [(12, 20), (20, 12)])
def test_resample_plane_wave_matches_analytic_values_at_new_nodes(n, n_new):
    """Node convention x_i = i L / n on both grids: a half-cell offset would fail this."""
    box_size, k, phase = 10.0, 2 * np.pi / 10.0 * np.array([3.0, -2.0, 5.0]), 0.7

    def sampled(m):
        return plane_wave(np.indices((m,) * 3).transpose(1, 2, 3, 0) * (box_size / m), k, phase)

    result = mesh.resample(sampled(n).astype(np.float32), n_new)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, sampled(n_new), atol=1e-5)


def test_resample_splits_the_coarse_nyquist_mode_symmetrically():
    """(-1)^(i+j+k) on 8^3 samples prod_a cos(pi n x_a / L) (the Nyquist mode split equally between
    +-n/2 on each axis): upsampled, it is that product at the new nodes x_a = i_a L / 16."""
    fine = mesh.resample((-1.0) ** np.indices((8,) * 3).sum(axis=0), 16)
    np.testing.assert_allclose(fine, np.prod(np.cos(np.pi * np.indices((16,) * 3) / 2), axis=0), atol=1e-12)


def test_resample_overdensity_clips_the_ringing_below_minus_one():
    """Sparse particles (4^3 on a 16^3 CIC grid) leave empty cells at delta = -1; upsampling to
    32^3 rings below -1. The clipped field is the interpolant wherever that is >= -1, exactly -1
    elsewhere, and still passes through the coarse values at the coarse nodes."""
    lattice = (np.indices((4,) * 3).reshape(3, -1).T + 0.3) * 4.0
    jitter = np.random.default_rng(16).uniform(-1.0, 1.0, lattice.shape)
    delta = mesh.overdensity(mesh.paint(lattice + jitter, 16, 16.0, "cic"))
    assert delta.min() == -1
    ringing = mesh.resample(delta, 32)
    below = ringing < -1
    assert below.sum() > 100 and ringing.min() < -1.05
    clipped = mesh.resample_overdensity(delta, 32)
    assert clipped.dtype == np.float32 and clipped.min() == -1
    np.testing.assert_array_equal(clipped[~below], ringing[~below])
    np.testing.assert_array_equal(clipped[below], -1)
    np.testing.assert_allclose(clipped[::2, ::2, ::2], delta, atol=1e-5)


def test_overdensity():
    delta = mesh.overdensity(np.array([[[1.0, 3.0], [2.0, 2.0]]] * 2))
    assert delta.dtype == np.float32
    np.testing.assert_allclose(delta[0], [[-0.5, 0.5], [0.0, 0.0]])
    with pytest.raises(ValueError, match="mean"):
        mesh.overdensity(np.zeros((4, 4, 4)))


def test_bad_input_is_named():
    positions = particles(10, 10.0, seed=15)
    with pytest.raises(InputError, match="mas.*pcs"):
        mesh.paint(positions, 8, 10.0, "pcs")
    with pytest.raises(InputError, match="box_size"):
        mesh.paint(positions, 8, -1.0)
    positions[3, 2] = np.nan
    with pytest.raises(InputError, match="positions: 1 of 10"):
        mesh.paint(positions, 8, 10.0)
    with pytest.raises(InputError, match="positions: 1 of 10"):
        mesh.readout(np.zeros((8,) * 3, np.float32), positions, 10.0)


def test_chunk_bounds_never_let_same_phase_chunks_touch():
    """Even chunk count, first at 0, last at n, every chunk at least 3 slabs wide (a TSC stencil
    spans home - 1 .. home + 2), also with all particles in one slab."""
    one_slab = np.eye(1, 64, 40, dtype=int)[0] * 1000
    for counts in (np.ones(64, int), one_slab, np.arange(64) ** 3, np.ones(7, int)):
        bounds = mesh._chunk_bounds(counts)
        assert bounds[0] == 0 and bounds[-1] == len(counts) and (len(bounds) - 1) % 2 == 0
        assert np.diff(bounds).min() >= 3 or len(bounds) == 2
