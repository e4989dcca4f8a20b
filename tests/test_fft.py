"""sims.fft: the rfft wrapper against numpy, Hermitian mode weights, wavenumbers."""
import numpy as np

from sims import fft


def test_rfftn_matches_numpy_and_round_trips():
    field = np.random.default_rng(0).standard_normal((8, 8, 8)).astype(np.float32)
    spectrum = fft.rfftn(field)
    np.testing.assert_allclose(spectrum, np.fft.rfftn(field), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fft.irfftn(spectrum, field.shape), field, atol=1e-5)


def test_irfftn_leaves_its_input_untouched():
    spectrum = fft.rfftn(np.random.default_rng(1).standard_normal((8, 8, 8)))
    before = spectrum.copy()
    fft.irfftn(spectrum, (8, 8, 8))
    np.testing.assert_array_equal(spectrum, before)


def test_hermitian_weights_count_full_space_modes():
    n = 6
    total = np.broadcast_to(fft.hermitian_weights(n), (n, n, n // 2 + 1)).sum()
    assert total == n ** 3


def test_wavenumbers_fundamental_and_nyquist():
    kx, _, kz = fft.wavenumbers(8, box_size=100.0)
    assert np.isclose(kx[1, 0, 0], 2 * np.pi / 100.0)
    assert np.isclose(abs(kx[4, 0, 0]), np.pi * 8 / 100.0)
    assert np.isclose(kz[0, 0, -1], np.pi * 8 / 100.0)
