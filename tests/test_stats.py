"""Power spectra, cross power, r(k), transfer function and the linear emulator (LR x T(k))
against the analytic values of docs/reference.md and against powerbox as an independent code."""
import tracemalloc

import numpy as np
import powerbox
import pytest

from conftest import gaussian_smoothing
from sims import fft, mesh, stats
from sims.errors import InputError


def white_noise(n, sigma, seed):
    return (sigma * np.random.default_rng(seed).standard_normal((n, n, n))).astype(np.float32)


def gaussian_field(n, box_size, power_law, seed):
    """Gaussian field with P(k) = power_law(k): d(n) = rfftn(r) sqrt(P N^3 / L^3) (docs/reference.md)."""
    white = np.random.default_rng(seed).standard_normal((n, n, n))
    kx, ky, kz = (np.fft.fftfreq(n, 1 / n)[:, None, None], np.fft.fftfreq(n, 1 / n)[None, :, None],
                  np.arange(n // 2 + 1)[None, None, :])
    k = 2 * np.pi / box_size * np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    k[0, 0, 0] = 1.0
    amplitude = np.sqrt(power_law(k) * n ** 3 / box_size ** 3)
    amplitude[0, 0, 0] = 0.0
    return np.fft.irfftn(np.fft.rfftn(white) * amplitude, s=(n, n, n), axes=(0, 1, 2)).astype(np.float32)


def below_nyquist(spec, n, box_size):
    return spec.k < stats.k_nyquist(n, box_size)


@pytest.mark.parametrize("n", [6, 7, 16])
def test_full_space_mode_count_is_n_cubed_minus_one(n):
    spec = stats.power_spectrum(np.zeros((n, n, n), np.float32), 10.0)
    assert spec.nmodes.sum() == n ** 3 - 1
    assert np.all(spec.nmodes > 0)


def test_shell_counts_match_brute_force_over_full_space():
    n = 8
    m = np.fft.fftfreq(n, 1 / n)
    norm = np.sqrt(m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2)
    shell = np.floor(norm).astype(int).ravel()
    expected_counts = np.bincount(shell)[1:]
    expected_k = (np.bincount(shell, weights=norm.ravel())[1:] / expected_counts) * 2 * np.pi / 5.0
    spec = stats.power_spectrum(np.zeros((n, n, n), np.float32), 5.0)
    np.testing.assert_array_equal(spec.nmodes, expected_counts)
    np.testing.assert_allclose(spec.k, expected_k, rtol=1e-6)


def test_white_noise_is_flat_at_sigma2_cell_volume():
    n, box, sigma = 32, 50.0, 2.0
    field = white_noise(n, sigma, seed=1)
    spec = stats.power_spectrum(field, box)
    expected = sigma ** 2 * (box / n) ** 3
    z = (spec.power / expected - 1) / np.sqrt(2 / spec.nmodes)
    assert np.all(np.abs(z[below_nyquist(spec, n, box)]) < 4)
    # Parseval: the mode-weighted mean over all shells is the field variance times the cell volume.
    total = np.sum(spec.power * spec.nmodes) / spec.nmodes.sum()
    f64 = field.astype(np.float64)
    parseval = (n ** 3 * np.sum(f64 ** 2) - np.sum(f64) ** 2) / (n ** 3 - 1) * (box / n) ** 3 / n ** 3
    np.testing.assert_allclose(total, parseval, rtol=1e-5)


def test_plane_wave_puts_a2_l3_over_4_on_its_mode():
    n, box, amp, n0 = 16, 30.0, 1.5, np.array([1, 2, 3])
    x = np.indices((n, n, n)).reshape(3, -1).T
    field = (amp * np.cos(2 * np.pi * x @ n0 / n)).reshape(n, n, n).astype(np.float32)
    spec = stats.power_spectrum(field, box)
    shell = int(np.floor(np.linalg.norm(n0)))
    # both n0 and -n0 lie in the shell, each carrying A^2 L^3 / 4.
    np.testing.assert_allclose(spec.power[shell - 1] * spec.nmodes[shell - 1], 2 * amp ** 2 * box ** 3 / 4,
                               rtol=1e-5)
    others = np.delete(spec.power, shell - 1)
    assert np.all(np.abs(others) < 1e-9 * amp ** 2 * box ** 3)


def test_gaussian_field_power_recovered_within_three_sigma():
    n, box = 32, 200.0
    power_law = lambda k: 1e3 * (k / 0.1) ** -1.5  # noqa: E731
    field = gaussian_field(n, box, power_law, seed=7)
    spec = stats.power_spectrum(field, box)
    # expected value: the model averaged over the full-space modes of each shell (brute force).
    m = np.fft.fftfreq(n, 1 / n)
    norm = np.sqrt(m[:, None, None] ** 2 + m[None, :, None] ** 2 + m[None, None, :] ** 2).ravel()
    shell, norm = np.floor(norm[1:]).astype(int), norm[1:]
    model = np.bincount(shell, weights=power_law(2 * np.pi / box * norm))[1:] / np.bincount(shell)[1:]
    z = (spec.power / model - 1) / np.sqrt(2 / spec.nmodes)
    keep = below_nyquist(spec, n, box)
    assert np.all(np.abs(z[keep]) < 3)
    assert 0.3 < np.mean(z[keep] ** 2) < 2.0


@pytest.mark.filterwarnings("ignore:One or more radial bins:UserWarning")
@pytest.mark.parametrize("n", [16, 17])
def test_agrees_with_powerbox_bin_by_bin(n):
    box = 75.0
    field = gaussian_field(n, box, lambda k: 50 * (k / 0.1) ** -2.0, seed=3)
    spec = stats.power_spectrum(field, box)
    k_f = 2 * np.pi / box
    # integer-|n| modes sit on powerbox's float bin edges: shift the edges down to floor-bin.
    edges = np.arange(0, n // 2 + 1) * k_f - 1e-6 * k_f
    ref = powerbox.get_power(field.astype(np.float64), boxlength=box, bins=edges, ignore_zero_mode=True)
    m = len(edges) - 2  # powerbox's first bin holds only the (ignored) DC mode
    np.testing.assert_allclose(spec.power[:m], ref.power[1:], rtol=1e-5)
    np.testing.assert_allclose(spec.k[:m], ref.bin_avg[1:], rtol=1e-5)
    np.testing.assert_array_equal(spec.nmodes[:m], ref.nsamples[1:])


def test_cross_power_of_a_field_with_itself_is_its_power_and_symmetric():
    a, b = white_noise(16, 1.0, 1), white_noise(16, 1.0, 2)
    np.testing.assert_allclose(stats.cross_power(a, a, 20.0).power, stats.power_spectrum(a, 20.0).power,
                               rtol=1e-6)
    np.testing.assert_allclose(stats.cross_power(a, b, 20.0).power, stats.cross_power(b, a, 20.0).power,
                               rtol=1e-6)


def test_r_of_field_with_itself_and_its_negative():
    d = gaussian_field(16, 50.0, lambda k: (k / 0.1) ** -1, seed=2)
    _, r_same = stats.correlation(d, d, 50.0)
    _, r_neg = stats.correlation(d, -d, 50.0)
    np.testing.assert_allclose(r_same, 1.0, atol=1e-6)
    np.testing.assert_allclose(r_neg, -1.0, atol=1e-6)


def test_r_with_added_noise_is_sqrt_p_over_p_plus_pn():
    n, box, sigma, sigma_noise = 32, 100.0, 1.0, 0.8
    d = white_noise(n, sigma, seed=11)
    noisy = d + white_noise(n, sigma_noise, seed=12)
    k, r = stats.correlation(d, noisy, box)
    expected = np.sqrt(sigma ** 2 / (sigma ** 2 + sigma_noise ** 2))
    nmodes = stats.power_spectrum(d, box).nmodes
    scatter = (1 - expected ** 2) * np.sqrt(2 / nmodes)
    keep = k < stats.k_nyquist(n, box)
    assert np.all(np.abs(r[keep] - expected) < 4 * scatter[keep])
    assert abs(np.average(r[keep], weights=nmodes[keep]) - expected) < 0.01


def test_transfer_function_of_scaled_field():
    d = white_noise(16, 1.0, seed=5)
    t = stats.transfer_function(stats.power_spectrum(1.7 * d, 40.0).power, stats.power_spectrum(d, 40.0).power)
    np.testing.assert_allclose(t, 1.7, rtol=1e-5)


def test_power_ratio_fills_shells_without_truth_power():
    np.testing.assert_array_equal(stats.power_ratio([2.0, 3.0], [4.0, 0.0]), [0.5, np.nan])
    np.testing.assert_array_equal(stats.transfer_function([4.0, 3.0], [1.0, 0.0], fill=0.0), [2.0, 0.0])


def test_band_figures_summarise_the_shells_below_k_max():
    k, ratio = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.1, np.nan, 0.7, 5.0])
    r, r_lr = np.array([0.9, 0.8, 0.6, 0.1]), np.array([0.95, 0.7, 0.7, 0.0])
    figures = stats.band_figures(k, 0.35, ratio, r, r_reference=r_lr)
    assert figures["pk_ratio_mean"] == pytest.approx(0.9)
    assert figures["pk_ratio_maxdev"] == pytest.approx(0.3)
    assert figures["r_mean"] == pytest.approx(0.7666667) and figures["r_min"] == pytest.approx(0.6)
    assert figures["r_reference_mean"] == pytest.approx(0.7833333)
    assert figures["r_gap_min"] == pytest.approx(-0.1)
    assert set(stats.band_figures(k, 0.35, ratio)) == {"pk_ratio_mean", "pk_ratio_maxdev"}
    assert stats.band_figures(k, 0.05, ratio, r) is None


def test_fit_transfer_sums_the_powers_of_all_pairs_before_the_ratio():
    """Pairs (d, 2 d) and (2 d', 6 d') with d' a rolled copy of d (same P): T^2 = (4 + 36) / (1 + 4)
    = 8 in every shell, where a mean of the pairs' T^2 would give 6.5 and a mean of T 2.5."""
    d = white_noise(16, 1.0, seed=21)
    d2 = 2 * np.roll(d, (3, 5, 7), axis=(0, 1, 2))
    k, t = stats.fit_transfer([(d, 2 * d), (d2, 3 * d2)], 40.0)
    np.testing.assert_allclose(t, np.sqrt(8.0), rtol=1e-5)
    np.testing.assert_allclose(k, stats.power_spectrum(d, 40.0).k)
    assert k.dtype == t.dtype == np.float64


def test_linear_emulator_of_a_gaussian_smoothing_undoes_it():
    """LR = HR smoothed by exp(-k^2 R^2 / 2): the fitted T is exp(+k^2 R^2 / 2) up to the spread of
    the kernel over a shell, and LR x T gives back the HR field mode by mode (bar interpolation)."""
    n, box, radius = 32, 64.0, 1.0  # R = half a cell: the kernel is 0.29 at k_Nyq, 0.025 at the corner
    hr = white_noise(n, 0.2, seed=22).astype(np.float64)
    lr = gaussian_smoothing(hr, box, radius)
    k, t = stats.fit_transfer([(lr, hr)], box)
    below = k < stats.k_nyquist(n, box)
    np.testing.assert_allclose(t[below], np.exp(k[below] ** 2 * radius ** 2 / 2), rtol=0.01)
    emulated = stats.apply_transfer(lr, box, k, t)
    assert emulated.dtype == np.float32
    error, smoothing_error = np.std(emulated - hr), np.std(lr - hr)
    assert error < 0.01 * np.std(hr) and smoothing_error > 0.3 * np.std(hr)
    ratio = stats.power_spectrum(emulated, box).power / stats.power_spectrum(hr, box).power
    np.testing.assert_allclose(ratio[below], 1.0, atol=0.015)


def test_apply_transfer_interpolates_linearly_in_k_and_holds_the_ends():
    """Plane waves below, inside and beyond the points of a T linear in k are scaled by T(|k0|),
    t[0] and t[-1] respectively; the mean is kept."""
    n, box, mean = 16, 30.0, 0.25
    k_f = 2 * np.pi / box
    k, t = k_f * np.linspace(1.5, 10.0, 6), 1 + 0.2 * np.linspace(1.5, 10.0, 6)
    x = np.indices((n, n, n)).reshape(3, -1).T
    waves = {(1, 0, 0): t[0], (2, 3, 1): 1 + 0.2 * np.sqrt(14), (7, 7, 7): t[-1]}
    field, expected = np.full(n ** 3, mean), np.full(n ** 3, mean)
    for n0, gain in waves.items():
        wave = 0.1 * np.cos(2 * np.pi * x @ np.array(n0) / n)
        field, expected = field + wave, expected + gain * wave
    out = stats.apply_transfer(field.reshape(n, n, n), box, k, t)
    np.testing.assert_allclose(out.ravel(), expected, atol=1e-6)


def test_apply_transfer_clips_at_minus_one():
    """T = 3 at every k != 0: delta -> mean + 3 (delta - mean), then clipped at -1."""
    n, box = 16, 20.0
    delta = np.exp(white_noise(n, 0.5, seed=23) - 0.125) - 1
    out = stats.apply_transfer(delta, box, [0.1, 1.0], [3.0, 3.0])
    expected = np.maximum(delta.mean() + 3 * (delta - delta.mean()), -1)
    assert np.any(expected == -1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_corner_transfer_keeps_only_a_damping_beyond_the_nyquist_wavenumber():
    """From (kN, 1) on: the points beyond kN, capped at 1 and never rising again, then 0 at the
    cube's corner sqrt(3) kN."""
    k, t = stats.corner_transfer([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.2, 3.0, 1.5, 0.7, 0.9, 0.4], 3.0)
    np.testing.assert_array_equal(k, [3.0, 4.0, 5.0, np.sqrt(3) * 3.0])
    np.testing.assert_array_equal(t, [1.0, 0.7, 0.7, 0.0])
    with pytest.raises(InputError, match="beyond k_Nyq"):
        stats.corner_transfer([1.0, 2.0], [1.0, 1.0], 2.5)


def test_corner_transfer_of_a_known_corner_excess_removes_it_and_leaves_the_rest():
    """A prediction equal to the truth but with every mode beyond kN (|n| > n / 2) three times
    the truth's: the fitted corner transfer is 1/3 on every shell wholly beyond kN, and applying
    it gives back the truth's power there (the corner mode (n/2, n/2, n/2) alone removed) while
    every mode up to kN stays as it was."""
    n, box = 16, 32.0
    truth = white_noise(n, 0.05, seed=25)            # small: nothing reaches delta = -1
    modes = np.sqrt(sum(m.astype(float) ** 2 for m in fft.integer_modes(n)))
    predicted = fft.irfftn(fft.rfftn(truth) * np.where(modes > n / 2, 3.0, 1.0), truth.shape).astype(np.float32)
    k_nyq = stats.k_nyquist(n, box)
    k, t = stats.corner_transfer(*stats.fit_transfer([(predicted, truth)], box), k_nyq)
    k_f, first_whole_shell = 2 * np.pi / box, n // 2 + 1
    np.testing.assert_allclose(t[(k >= first_whole_shell * k_f) & (t > 0)], 1 / 3, rtol=1e-4)
    assert k[0] == k_nyq and t[0] == 1 and np.all(t <= 1) and (k[-1], t[-1]) == (np.sqrt(3) * k_nyq, 0)
    out = stats.apply_transfer(predicted, box, k, t)
    kept = modes <= n / 2
    np.testing.assert_allclose(fft.rfftn(out)[kept], fft.rfftn(predicted)[kept],
                               atol=1e-5 * np.abs(fft.rfftn(truth)).max())
    spectra = [stats.power_spectrum(f, box) for f in (out, truth, predicted)]
    outer = spectra[0].k > (first_whole_shell + 1) * k_f
    outer[-1] = False                   # the corner's shell: between its last point and the corner, T falls to 0
    np.testing.assert_allclose(spectra[0].power[outer], spectra[1].power[outer], rtol=1e-3)
    np.testing.assert_allclose(spectra[2].power[outer], 9 * spectra[1].power[outer], rtol=1e-3)
    assert abs(fft.rfftn(out)[n // 2, n // 2, n // 2]) < 1e-6 * abs(fft.rfftn(truth)[n // 2, n // 2, n // 2])


def test_clip_keeping_mass_takes_the_clipped_matter_from_the_underdense_voxels():
    """Clipping 4 voxels at -1.5 adds 2 units of 1 + delta; the 4 voxels at -0.5 (1 + delta = 0.5
    each, 2 in all) give it back in proportion, so they are emptied; the dense voxels stay."""
    delta = np.array([-1.5] * 4 + [-0.5] * 4 + [2.0, 5.0], dtype=np.float32)
    out = stats.clip_keeping_mass(delta)
    np.testing.assert_allclose(out, [-1.0] * 8 + [2.0, 5.0], atol=1e-6)
    mixed = np.array([-1.2, -0.6, -0.2, 0.0, 3.0], dtype=np.float32)   # adds 0.2 to 1.2 held by two voids
    out = stats.clip_keeping_mass(mixed)
    np.testing.assert_allclose(out, [-1.0, 0.4 * 5 / 6 - 1, 0.8 * 5 / 6 - 1, 0.0, 3.0], atol=1e-6)
    assert np.sum(1 + out) == pytest.approx(np.sum(1 + np.array(mixed, dtype=float)), rel=1e-6)
    np.testing.assert_array_equal(stats.clip_keeping_mass(np.array([-0.5, 1.0])), [-0.5, 1.0])


def test_transfer_rejects_bad_input():
    good = white_noise(8, 1.0, seed=24)
    with pytest.raises(InputError, match="at least one"):
        stats.fit_transfer([], 10.0)
    with pytest.raises(InputError, match="pairs\\[1\\]"):
        stats.fit_transfer([(good, good), (good[:4, :4, :4], good[:4, :4, :4])], 10.0)
    with pytest.raises(InputError, match="transfer"):
        stats.apply_transfer(good, 10.0, [1.0, 0.5], [1.0, 1.0])
    with pytest.raises(InputError, match="transfer"):
        stats.apply_transfer(good, 10.0, [0.5, 1.0], [1.0])


@pytest.mark.parametrize("mas", ["ngp", "cic", "tsc"])
def test_window_deconvolution_of_a_painted_plane_wave(mas):
    """Particles at random positions weighted by 1 + A cos(2 pi n0.x / L): the painted overdensity
    has mode n0 = W(n0) A / 2 in expectation (no aliasing: the weight field is band-limited), so
    the deconvolved mode is A / 2 up to shot noise sqrt((1 + A^2/2) / N_p) / W ~ 0.5 %."""
    n, box, amp, n0 = 16, 64.0, 0.5, np.array([2, 3, 4])
    positions = np.random.default_rng(4).uniform(0, box, (64 * n ** 3, 3))
    weights = 1 + amp * np.cos(2 * np.pi * positions @ n0 / box)
    delta = mesh.overdensity(mesh.paint(positions, n, box, mas=mas, weights=weights))
    raw = abs(stats.fourier_modes(delta)[tuple(n0)]) / n ** 3
    deconvolved = abs(stats.fourier_modes(delta, mas)[tuple(n0)]) / n ** 3
    w = np.prod(np.sinc(n0 / n)) ** mesh.MAS_ORDER[mas]
    assert abs(deconvolved / (amp / 2) - 1) < 0.04
    assert abs(raw / (w * amp / 2) - 1) < 0.04


def test_window_deconvolution_allocates_no_window_array():
    """fourier_modes divides the separable window out factor by factor: on top of the transform
    it allocates O(n) factors and at most numpy's fixed ufunc buffer (64 KiB), not an n^3
    window (which would be 1.5 times the spectrum's bytes as float64 plus float32)."""
    field = white_noise(64, 1.0, seed=9)
    stats.fourier_modes(field, "cic")                   # FFT plans made outside the measurement
    peaks = []
    for mas in (None, "cic"):
        tracemalloc.start()
        spectrum = stats.fourier_modes(field, mas)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] - peaks[0] < 0.25 * spectrum.nbytes


@pytest.mark.parametrize("mas", ["cic", "tsc"])
def test_deconvolved_power_matches_brute_force_full_space_average(mas):
    n, box = 12, 30.0
    field = white_noise(n, 1.0, seed=6)
    m = np.fft.fftfreq(n, 1 / n)
    full = [m[:, None, None], m[None, :, None], m[None, None, :]]
    w = (np.sinc(full[0] / n) * np.sinc(full[1] / n) * np.sinc(full[2] / n)) ** mesh.MAS_ORDER[mas]
    power = np.abs(np.fft.fftn(field.astype(np.float64)) / w) ** 2 * box ** 3 / n ** 6
    shell = np.floor(np.sqrt(full[0] ** 2 + full[1] ** 2 + full[2] ** 2)).astype(int).ravel()
    expected = (np.bincount(shell, weights=power.ravel()) / np.bincount(shell))[1:]
    np.testing.assert_allclose(stats.power_spectrum(field, box, mas=mas).power, expected, rtol=1e-5)


def test_ensemble_spectra_and_r_of_scaled_copies():
    truth = gaussian_field(16, 50.0, lambda k: (k / 0.1) ** -1.5, seed=8)
    ens = stats.ensemble(truth, [truth, -2 * truth], 50.0)
    p = stats.power_spectrum(truth, 50.0).power
    np.testing.assert_allclose(ens.pk_truth, p, rtol=1e-6)
    np.testing.assert_allclose(ens.pk_samples, [p, 4 * p], rtol=1e-5)
    np.testing.assert_allclose(ens.pk_mean, 2.5 * p, rtol=1e-5)
    np.testing.assert_allclose(ens.pk_std, np.std([p, 4 * p], axis=0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(ens.r_samples, [np.ones_like(p), -np.ones_like(p)], atol=1e-5)
    with pytest.raises(InputError, match="samples\\[1\\]"):
        stats.ensemble(truth, [truth, truth[:8, :8, :8]], 50.0)


def test_ensemble_r_common_of_identical_samples_is_their_r():
    truth = gaussian_field(16, 50.0, lambda k: (k / 0.1) ** -1.5, seed=8)
    rng = np.random.default_rng(3)
    mean = truth + rng.standard_normal(truth.shape).astype(np.float32)
    ens = stats.ensemble(truth, [mean, mean, mean], 50.0)
    np.testing.assert_allclose(ens.r_common, stats.correlation(mean, truth, 50.0)[1], atol=1e-5)
    assert np.isnan(stats.ensemble(truth, [mean], 50.0).r_common).all()


def test_ensemble_r_common_removes_the_finite_sample_noise():
    """Samples m + e_i with white e_i as strong as m: the mean of 4 correlates with the truth
    1 / sqrt(1.25) times less than m (0.72 against 0.8); r_common recovers r(m, t) itself."""
    n, box = 48, 50.0
    rng = np.random.default_rng(11)
    truth = rng.standard_normal((n, n, n)).astype(np.float32)
    mean = truth + 0.75 * rng.standard_normal((n, n, n)).astype(np.float32)   # r(m, t) = 0.8
    samples = [mean + 1.25 * rng.standard_normal((n, n, n)).astype(np.float32) for _ in range(4)]
    ens = stats.ensemble(truth, samples, box)
    many = ens.nmodes >= 4000           # 13 shells; the estimates scatter by about 0.005 there
    r_m = stats.correlation(mean, truth, box)[1][many]
    r_of_mean = stats.correlation(np.mean(samples, axis=0), truth, box)[1][many]
    np.testing.assert_allclose(ens.r_common[many], r_m, atol=0.02)
    np.testing.assert_allclose(r_of_mean, r_m / np.sqrt(1.25), atol=0.02)
    assert np.all(r_m - r_of_mean > 0.06)


def _synthetic_ensemble(spread, n_samples, n=24, seed=0):
    """Truth and samples drawn around a common mean field; samples with ``spread`` times the
    truth's scatter (1 = calibrated)."""
    rng = np.random.default_rng(seed)
    mean = gaussian_field(n, 80.0, lambda k: (k / 0.1) ** -2, seed=seed + 1)
    truth = mean + rng.standard_normal((n, n, n)).astype(np.float32)
    samples = [mean + spread * rng.standard_normal((n, n, n)).astype(np.float32) for _ in range(n_samples)]
    return truth, samples


@pytest.mark.parametrize("n_samples", [2, 4])
def test_calibration_of_a_well_dispersed_ensemble_is_nominal(n_samples):
    truth, samples = _synthetic_ensemble(1.0, n_samples)
    cal = stats.calibration(samples, truth, 80.0)
    keep = cal.k < stats.k_nyquist(24, 80.0)
    p = cal.nominal_coverage
    assert p == pytest.approx((n_samples - 1) / (n_samples + 1))
    assert np.all(np.abs(cal.coverage[keep] - p) < 5 * np.sqrt(p * (1 - p) / cal.nmodes[keep]))
    assert abs(np.average(cal.coverage[keep], weights=cal.nmodes[keep]) - p) < 0.02
    assert abs(np.average(cal.dispersion_ratio[keep], weights=cal.nmodes[keep]) - 1) < 0.1


def test_calibration_flags_under_and_over_dispersed_ensembles():
    averages = {}
    for spread in (0.3, 3.0):
        truth, samples = _synthetic_ensemble(spread, 4)
        cal = stats.calibration(samples, truth, 80.0)
        keep = cal.k < stats.k_nyquist(24, 80.0)
        averages[spread] = (np.average(cal.coverage[keep], weights=cal.nmodes[keep]),
                            np.average(cal.dispersion_ratio[keep], weights=cal.nmodes[keep]))
    assert averages[0.3][0] < 0.6 - 0.25 and averages[0.3][1] > 3
    assert averages[3.0][0] > 0.6 + 0.2 and averages[3.0][1] < 0.5


def test_calibration_needs_two_samples():
    truth, samples = _synthetic_ensemble(1.0, 2, n=8)
    with pytest.raises(InputError, match="at least 2"):
        stats.calibration(samples[:1], truth, 80.0)


def test_pdf_of_a_lognormal_field_is_the_gaussian_of_its_log():
    """1 + delta = exp(g - s^2/2), g ~ N(0, s^2) per cell: log10(1 + delta) ~ N(-s^2 / (2 ln 10), s / ln 10)."""
    s = 0.8
    g = s * np.random.default_rng(9).standard_normal((32, 32, 32))
    delta = (np.exp(g - s ** 2 / 2) - 1).astype(np.float32)
    edges, dens = stats.pdf([delta], nbins=40)
    centres, width = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
    assert np.sum(dens[0] * width) == pytest.approx(1.0)
    mean, std = -s ** 2 / (2 * np.log(10)), s / np.log(10)
    assert abs(np.sum(centres * dens[0] * width) - mean) < 0.01
    assert abs(np.sqrt(np.sum((centres - mean) ** 2 * dens[0] * width)) / std - 1) < 0.02


def test_pdf_keeps_empty_cells_finite_and_shares_bins():
    empty = np.full((8, 8, 8), -1.0, np.float32)
    edges, dens = stats.pdf([empty, np.zeros((8, 8, 8), np.float32)], nbins=10, floor=1e-3)
    assert edges[0] == pytest.approx(-3.0) and edges[-1] == pytest.approx(0.0)
    assert dens.shape == (2, 10) and np.all(np.isfinite(dens))
    assert dens[0, 0] > 0 and dens[1, -1] > 0


def test_seam_statistic_is_one_for_a_stationary_field():
    field = gaussian_field(32, 100.0, lambda k: (k / 0.1) ** -2, seed=13)
    seam = stats.seam_statistic(field, core=8)
    assert np.all(np.abs(seam.ratio - 1) < 4 * seam.error)
    assert np.all(seam.error < 0.2)


def test_seam_statistic_detects_planted_tile_discontinuities_per_axis():
    n, core = 32, 8
    field = gaussian_field(n, 100.0, lambda k: (k / 0.1) ** -2, seed=13)
    rng = np.random.default_rng(14)
    offsets = rng.normal(0, field.std(), n // core)  # one jump per x block only
    seamed = field + np.repeat(offsets, core)[:, None, None].astype(np.float32)
    seam = stats.seam_statistic(seamed, core=core)
    assert seam.ratio[0] > 1 + 10 * seam.error[0]
    assert np.all(np.abs(seam.ratio[1:] - 1) < 4 * seam.error[1:])
    # with the boundaries misplaced by half a block, the jumps count as interior: ratio < 1
    assert stats.seam_statistic(seamed, core=core, offset=core // 2).ratio[0] < 1


def test_seam_statistic_rejects_block_sizes_that_do_not_tile():
    with pytest.raises(InputError, match="core"):
        stats.seam_statistic(np.zeros((12, 12, 12), np.float32), core=5)


def test_bad_inputs_raise_input_error():
    good = np.zeros((8, 8, 8), np.float32)
    bad = good.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        stats.power_spectrum(bad, 10.0)
    with pytest.raises(InputError, match="cubic"):
        stats.power_spectrum(np.zeros((8, 8, 4)), 10.0)
    with pytest.raises(InputError, match="differs"):
        stats.cross_power(good, np.zeros((4, 4, 4)), 10.0)
    with pytest.raises(InputError, match="box size"):
        stats.power_spectrum(good, -1.0)
    with pytest.raises(InputError, match="mass assignment"):
        stats.power_spectrum(good, 10.0, mas="pcs")


def test_void_map_recovers_a_monotone_transform_of_the_voids_up_to_their_mass():
    """Truth = prediction with 1 + delta squared where delta < 0 (a monotone map of the voids onto
    emptier ones): the fitted map sends each predicted void voxel to its truth up to the one
    factor on 1 + delta that keeps the voids' mass, and leaves delta >= 0 as it is."""
    pred = (np.exp(0.8 * white_noise(32, 1.0, seed=25) - 0.32) - 1).astype(np.float32)
    truth = np.where(pred < 0, (1 + pred) ** 2 - 1, pred).astype(np.float32)
    x, y = stats.fit_void_map([(pred, truth)])
    mapped = stats.apply_void_map(pred, x, y)
    voids = pred < 0
    assert mapped.dtype == np.float32 and np.array_equal(mapped[~voids], pred[~voids])
    np.testing.assert_allclose(np.sum(1 + mapped[voids], dtype=np.float64),
                               np.sum(1 + pred[voids], dtype=np.float64), rtol=1e-5)
    factor = (1 + mapped[voids]) / (1 + truth[voids])
    dense_voids = voids & (truth > -0.9)           # away from 1 + delta = 0, where ratios are noise
    np.testing.assert_allclose(factor[dense_voids[voids]], np.median(factor), rtol=0.01)
    assert abs(np.median(factor) - 1) > 0.05      # the mass factor is not trivially 1 here
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= 0)


def test_void_map_rejects_bad_input():
    good = white_noise(8, 1.0, seed=26)
    with pytest.raises(InputError, match="at least one"):
        stats.fit_void_map([])
    with pytest.raises(InputError, match="no predicted voxel"):
        stats.fit_void_map([(np.abs(good), good)])
    with pytest.raises(InputError, match="single value"):
        stats.fit_void_map([(np.full_like(good, -0.5), good)])
    with pytest.raises(InputError, match="truth"):
        stats.fit_void_map([(good, good[:4, :4, :4])])


def test_calibrated_mean_r_matches_a_calibrated_ensemble_and_its_limits():
    """Truth mu + e and samples mu + e_i with e, e_i as strong (r(mu, t) = 0.8): the measured r of
    one sample and of the mean of 4 follow rho^2 = 0.64 and 0.64 / sqrt(0.64 + 0.09) = 0.749."""
    n, box, rho = 48, 50.0, 0.8
    rng = np.random.default_rng(5)
    mu = rho * rng.standard_normal((n, n, n))
    error = lambda: np.sqrt(1 - rho ** 2) * rng.standard_normal((n, n, n))
    truth = (mu + error()).astype(np.float32)
    samples = [(mu + error()).astype(np.float32) for _ in range(4)]
    many = stats.power_spectrum(truth, box).nmodes >= 4000
    r_one = stats.correlation(samples[0], truth, box)[1][many]
    r_four = stats.correlation(np.mean(samples, axis=0), truth, box)[1][many]
    np.testing.assert_allclose(r_one, stats.calibrated_mean_r(rho, 1), atol=0.02)
    np.testing.assert_allclose(r_four, stats.calibrated_mean_r(rho, 4), atol=0.02)
    assert stats.calibrated_mean_r(rho, 4) == pytest.approx(0.64 / np.sqrt(0.73))
    np.testing.assert_allclose(stats.calibrated_mean_r([0.3, 0.999], 10 ** 9), [0.3, 0.999], rtol=1e-6)
    np.testing.assert_allclose(stats.calibrated_mean_r(1.0, 4), 1.0)
    with pytest.raises(InputError, match="members"):
        stats.calibrated_mean_r(rho, 0)
