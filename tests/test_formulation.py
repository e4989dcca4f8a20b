"""Formulations (what the network generates) and the band projection that ties estimates to the LR."""
import math

import numpy as np
import pytest
import torch

from emulator.formulation import Formulation, band_modes, fit_formulation, gaussian_smooth
from emulator.normalization import Normalization

NORM = Normalization(shift=-0.9, scale=1.2, upper=7.0)
N = 16


def lognormal(seed, sigma=0.8, shape=(2, 1, N, N, N)):
    """Overdensity fields with a lognormal one-point distribution and mean about 0 (float64)."""
    g = torch.Generator().manual_seed(seed)
    return torch.exp(sigma * torch.randn(shape, generator=g, dtype=torch.float64) - sigma**2 / 2) - 1


def smoothed_mass(delta, k):
    return gaussian_smooth(1 + delta, k)


def test_gaussian_smooth_is_the_analytic_window_on_a_plane_wave():
    """A cosine of mode m is multiplied by exp(-m^2 ln 2 / k_half^2): 1/2 at m = k_half."""
    i = torch.arange(N, dtype=torch.float64)
    for m in (1, 3, 5):
        wave = torch.cos(2 * math.pi * m * i / N)[:, None, None].expand(N, N, N)
        expected = math.exp(-m**2 * math.log(2) / 3.0**2)
        torch.testing.assert_close(gaussian_smooth(wave, 3.0), expected * wave)
    torch.testing.assert_close(gaussian_smooth(torch.full((N, N, N), 2.5, dtype=torch.float64), 3.0),
                               torch.full((N, N, N), 2.5, dtype=torch.float64))


def test_band_modes_puts_the_lr_nyquist_fraction_in_tile_modes():
    """A 32-voxel tile of 0.78 Mpc/h voxels, LR spacing 1.56 Mpc/h: the LR Nyquist pi / 1.56 is
    mode 8 of the tile (k = 2 pi m / 25 Mpc/h), half of it mode 4."""
    assert band_modes(1.0, 32, 0.78125, 1.5625) == pytest.approx(8.0)
    assert band_modes(0.5, 32, 0.78125, 1.5625) == pytest.approx(4.0)


@pytest.mark.parametrize("kind", ["palette", "residual"])
def test_target_and_field_are_inverse(kind):
    form = Formulation(kind, shift=0.3, scale=0.7) if kind == "residual" else Formulation(kind)
    y_lr, y_hr = NORM.forward(lognormal(1)), NORM.forward(lognormal(2))
    torch.testing.assert_close(form.field(form.target(y_hr, y_lr), y_lr), y_hr)
    if kind == "residual":          # an estimate of zero is the LR shifted by the mean residual
        torch.testing.assert_close(form.field(torch.zeros_like(y_lr), y_lr), y_lr + 0.3)


def test_fit_formulation_standardises_the_residual():
    pairs = [(NORM.forward(lognormal(s)).numpy(), NORM.forward(lognormal(s + 10)).numpy() + 0.4)
             for s in range(3)]
    form = fit_formulation("residual", 0.5, pairs)
    targets = np.concatenate([form.target(y_hr, y_lr).ravel() for y_lr, y_hr in pairs])
    assert abs(targets.mean()) < 1e-12 and targets.std() == pytest.approx(1.0, rel=1e-12)
    assert form.shift == pytest.approx(0.4, abs=0.1) and form.lr_band == 0.5
    assert fit_formulation("palette", 0.0, pairs) == Formulation("palette")


def test_formulation_rejects_inconsistent_settings():
    for bad in (dict(kind="bridge"), dict(kind="palette", scale=2.0), dict(kind="residual", scale=0.0),
                dict(kind="residual", lr_band=1.5)):
        with pytest.raises(ValueError):
            Formulation(**bad)
    assert Formulation.from_dict(None) == Formulation("palette")
    form = Formulation("residual", shift=0.1, scale=0.9, lr_band=0.25)
    assert Formulation.from_dict(form.to_dict()) == form


@pytest.mark.parametrize("kind", ["palette", "residual"])
def test_project_leaves_an_estimate_that_holds_the_lr_density(kind):
    """The LR itself already holds the LR's smoothed density: a fixed point of the projection."""
    form = Formulation(kind, shift=0.2, scale=0.8, lr_band=0.5) if kind == "residual" else Formulation(kind)
    lr = lognormal(3)
    y_lr = NORM.forward(lr)
    out = form.project(form.target(y_lr, y_lr), y_lr, NORM, k_cut=3.0)
    torch.testing.assert_close(NORM.inverse(form.field(out, y_lr)), lr)


def test_project_gives_a_field_of_the_wrong_mass_the_lr_mass():
    """rho_est = c rho_LR has G * rho_est = c G * rho_LR, so the correction is exactly 1 / c."""
    form = Formulation("residual", shift=0.2, scale=0.8)
    lr = lognormal(4)
    y_lr = NORM.forward(lr)
    y_est = NORM.forward(1.7 * (1 + lr) - 1)
    out = NORM.inverse(form.field(form.project(form.target(y_est, y_lr), y_lr, NORM, 3.0), y_lr))
    torch.testing.assert_close(out, lr)


def test_project_pulls_the_large_scales_to_the_lr_and_keeps_the_small_ones():
    """An estimate = truth with a wrong long-wavelength modulation (mode 1, 40 %): after the
    projection its smoothed density is the LR's to a few per cent of what it was off by, while
    its small-scale contrast (rho over its smoothed rho) is unchanged."""
    form = Formulation("residual", shift=0.0, scale=1.0)
    lr = lognormal(5)
    i = torch.arange(N, dtype=torch.float64)
    modulation = (1 + 0.4 * torch.cos(2 * math.pi * i / N))[:, None, None]
    estimate = (1 + lr) * modulation - 1
    y_lr = NORM.forward(lr)
    out = NORM.inverse(form.field(form.project(form.target(NORM.forward(estimate), y_lr), y_lr, NORM, 3.0),
                                  y_lr))
    before = (smoothed_mass(estimate, 3.0) - smoothed_mass(lr, 3.0)).abs().max()
    after = (smoothed_mass(out, 3.0) - smoothed_mass(lr, 3.0)).abs().max()
    assert after < 0.1 * before
    torch.testing.assert_close((1 + out) / smoothed_mass(lr, 3.0) * smoothed_mass(estimate, 3.0),
                               1 + estimate)


def test_project_keeps_any_estimate_in_the_physical_range():
    """Huge or tiny estimates end inside [delta = -1, the training maximum], finite."""
    form = Formulation("residual", shift=0.2, scale=0.8, lr_band=0.5)
    y_lr = NORM.forward(lognormal(6))
    for value in (1e6, -1e6):
        for k_cut in (None, 3.0):
            y = form.field(form.project(torch.full_like(y_lr, value), y_lr, NORM, k_cut), y_lr)
            assert torch.isfinite(y).all()
            assert y.min() >= NORM.lower - 1e-9 and y.max() <= NORM.upper + 1e-9
