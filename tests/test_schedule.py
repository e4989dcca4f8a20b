"""Noise schedules and sampling schedules (emulator.schedule)."""
import math

import numpy as np
import pytest

from emulator import schedule as S
from sims.errors import InputError


def test_reference_schedule_values():
    """docs/reference.md: linear beta 1e-6 -> 0.01, T = 2000 gives alpha_bar_T = 4.4e-5, sigma_max = 151."""
    sch = S.LinearSchedule()
    assert sch.alpha_bars()[-1] == pytest.approx(4.4e-5, rel=0.01)
    assert f"{sch.sigma_max:.3g}" == "151"
    # sigma_1 = sqrt(beta_1 / (1 - beta_1)) for the first level
    assert sch.sigma_min == pytest.approx(math.sqrt(1e-6 / (1 - 1e-6)), rel=1e-9)
    assert np.all(np.diff(sch.sigmas()) > 0) and len(sch.sigmas()) == 2000
    np.testing.assert_allclose(sch.sigmas(), S.sigma_from_alpha_bar(sch.alpha_bars()), rtol=1e-9)


def test_alpha_bar_sigma_round_trip():
    sigma = np.geomspace(1e-4, 1e4, 41)
    ab = S.alpha_bar_from_sigma(sigma)
    # 1 - alpha_bar cancels for small sigma: relative precision ~ 1e-16 / sigma^2
    np.testing.assert_allclose(S.sigma_from_alpha_bar(ab), sigma, rtol=1e-7)
    # VP identity: alpha_bar + alpha_bar sigma^2 = 1
    np.testing.assert_allclose(ab * (1 + sigma**2), 1.0, rtol=1e-12)


def test_cosine_matches_closed_form_before_the_clip():
    """Nichol & Dhariwal 2021 eq. 17: alpha_bar(t) = f(t) / f(0) wherever beta is not clipped."""
    sch = S.CosineSchedule(steps=1000)
    t = np.arange(1, 1001)
    f = np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    unclipped = sch.betas() < 0.999
    assert unclipped[:-1].all() and not unclipped[-1]
    np.testing.assert_allclose(sch.alpha_bars()[:-1], f[:-1], rtol=1e-9)
    assert sch.betas()[-1] == 0.999


def test_dict_round_trip_and_errors():
    for sch in (S.LinearSchedule(beta_end=0.02, steps=1000), S.CosineSchedule(offset=0.01)):
        again = S.from_dict(sch.to_dict())
        assert again == sch and again.sigma_max == sch.sigma_max
    with pytest.raises(InputError, match="unknown kind"):
        S.from_dict({"kind": "quadratic"})
    with pytest.raises(InputError, match="unknown field"):
        S.from_dict({"kind": "linear", "beta_max": 0.1})
    with pytest.raises(InputError, match="beta_start"):
        S.LinearSchedule(beta_start=0.1, beta_end=0.01)
    with pytest.raises(InputError, match="steps"):
        S.CosineSchedule(steps=1)


@pytest.mark.parametrize("spacing", sorted(S.SPACINGS))
@pytest.mark.parametrize("steps", [1, 2, 20])
def test_sampling_schedules_start_at_sigma_max_and_end_in_zero(spacing, steps):
    sch = S.LinearSchedule()
    sigmas = S.SPACINGS[spacing](sch, steps)
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0.0
    assert sigmas[0] == pytest.approx(sch.sigma_max, rel=1e-12)     # never the "leading" spacing
    assert np.all(np.diff(sigmas) < 0)
    if steps > 1:
        assert sigmas[-2] == pytest.approx(sch.sigma_min, rel=1e-9)


def test_karras_rho_one_is_linear_and_eq5_midpoint():
    sch = S.LinearSchedule()
    np.testing.assert_allclose(S.karras_sigmas(sch, 11, rho=1.0)[:-1],
                               np.linspace(sch.sigma_max, sch.sigma_min, 11), rtol=1e-9)
    # EDM eq. 5 at i = (N - 1) / 2: the rho-mean of the end points
    mid = S.karras_sigmas(sch, 21)[10]
    assert mid == pytest.approx(((sch.sigma_max ** (1 / 7) + sch.sigma_min ** (1 / 7)) / 2) ** 7, rel=1e-12)


def test_logsnr_is_uniform_in_log_snr():
    logsnr = -2 * np.log(S.logsnr_sigmas(S.CosineSchedule(), 16)[:-1])
    np.testing.assert_allclose(np.diff(logsnr), np.diff(logsnr)[0], rtol=1e-9)


def test_trained_sigmas_are_a_trailing_subsequence():
    sch = S.LinearSchedule()
    full = S.trained_sigmas(sch)
    np.testing.assert_array_equal(full[:-1], sch.sigmas()[::-1])
    ten = S.trained_sigmas(sch, 10)
    assert np.isin(ten[:-1], sch.sigmas()).all()
    assert ten[0] == sch.sigma_max
    # the "leading" spacing t = 0, 200, ..., 1800 would start at 58 (docs/reference.md), not 151
    assert sch.sigmas()[1800] == pytest.approx(58, abs=0.5)
    with pytest.raises(InputError, match="exceeds"):
        S.trained_sigmas(sch, 2001)
    with pytest.raises(InputError, match="steps: must be an integer >= 1"):
        S.karras_sigmas(sch, 0)
