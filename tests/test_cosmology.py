"""sims.cosmology against the published/checked values of docs/reference.md and analytic limits."""
import json
import warnings

import numpy as np
import pytest
from scipy.integrate import quad

from sims import cosmology as cm
from sims.errors import InputError

P18 = cm.PLANCK18
EDS = cm.Cosmology(Omega_m=1.0)

K_T = [0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0]
K_P = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


@pytest.mark.parametrize("wiggles, expected", [
    (True, [0.99229, 0.78088, 0.27224, 0.13189, 0.05541, 0.014201, 0.004722]),
    (False, [0.99211, 0.78682, 0.27948, 0.13404, 0.05501, 0.014198, 0.004691]),
])
def test_transfer_eh98_matches_reference_table(wiggles, expected):
    np.testing.assert_allclose(cm.transfer_eh98(P18, K_T, wiggles), expected, rtol=1e-3)


@pytest.mark.parametrize("wiggles, expected", [
    (True, [21191, 23177, 12203, 5596, 1930, 307.4, 66.4]),
    (False, [21375, 23238, 12777, 5743, 1890, 305.2, 65.1]),
])
def test_linear_power_matches_reference_table(wiggles, expected):
    np.testing.assert_allclose(cm.linear_power(P18, K_P, wiggles=wiggles), expected, rtol=1e-3)


def test_eh98_intermediate_scales():
    sc = cm.eh98_scales(P18)
    np.testing.assert_allclose([sc.s, sc.z_d, sc.alpha_c, sc.beta_c],
                               [150.93, 1020.8, 0.7708, 1.1786], rtol=1e-3)


def test_transfer_tends_to_one_on_large_scales():
    for wiggles in (True, False):
        assert abs(cm.transfer_eh98(P18, 1e-6, wiggles) - 1) < 1e-5


def test_zero_wavenumber_is_finite_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = np.array([0.0, 0.1])
        for wiggles in (True, False):
            np.testing.assert_array_equal(cm.transfer_eh98(P18, k, wiggles)[0], 1.0)
            assert cm.linear_power(P18, k, wiggles=wiggles)[0] == 0.0


def test_linear_growth_matches_reference_table():
    z = np.array([0.5, 1, 2, 3, 9, 49, 99])
    expected = [0.77001, 0.60804, 0.41823, 0.31628, 0.12725, 0.025460, 0.012730]
    np.testing.assert_allclose(cm.D1(P18, 1 / (1 + z)), expected, rtol=1e-3)
    assert cm.D1(P18, 1.0) == pytest.approx(1.0, abs=1e-14)


def test_growth_rate_matches_reference_values():
    assert cm.f1(P18, 1.0) == pytest.approx(0.5234, rel=1e-3)
    assert cm.f1(P18, 0.5) == pytest.approx(0.8748, rel=1e-3)


def test_growth_rates_are_log_derivatives():
    a = np.array([0.02, 0.3, 1.0, 3.0])
    h = 1e-5
    for D, f in ((cm.D1, cm.f1), (cm.D2, cm.f2)):
        numeric = (np.log(np.abs(D(P18, a * np.exp(h)))) - np.log(np.abs(D(P18, a * np.exp(-h))))) / (2 * h)
        np.testing.assert_allclose(f(P18, a), numeric, rtol=1e-7)


def test_einstein_de_sitter_limits_are_exact():
    a = np.array([1e-6, 0.01, 0.3, 1.0, 5.0])
    np.testing.assert_allclose(cm.D1(EDS, a), a, rtol=1e-12)
    np.testing.assert_allclose(cm.f1(EDS, a), 1.0, rtol=1e-12)
    np.testing.assert_allclose(cm.D2(EDS, a) / a ** 2, -3 / 7, rtol=1e-8)
    np.testing.assert_allclose(cm.f2(EDS, a), 2.0, rtol=1e-8)


def test_D2_against_bouchet_fit():
    """D2 ~ -(3/7) D1^2 Omega_m(a)^(-1/143) (Bouchet et al. 1995), good to well under 1%."""
    a = np.array([0.01, 0.1, 0.5, 1.0, 2.0])
    fit = -3 / 7 * cm.D1(P18, a) ** 2 * cm.Omega_m_of_a(P18, a) ** (-1 / 143)
    np.testing.assert_allclose(cm.D2(P18, a), fit, rtol=1e-2)
    assert np.all(cm.D2(P18, a) < 0)


def test_background():
    assert cm.E(P18, 1.0) == pytest.approx(1.0)
    assert cm.Omega_m_of_a(P18, 1.0) == pytest.approx(P18.Omega_m)
    a = 0.5
    assert cm.E(P18, a) ** 2 == pytest.approx(P18.Omega_m * 8 + 1 - P18.Omega_m)


def test_critical_density_from_the_nominal_solar_mass_parameter():
    """3 H0^2 / (8 pi G) at H0 = 100 km/s/Mpc from GM_sun = 1.3271244e20 m^3/s^2 (IAU 2015
    Resolution B3, nominal) and 1 Mpc = 648000e6 / pi au, au = 149597870700 m (IAU 2012)."""
    mpc = 648000e6 / np.pi * 149597870700.0                      # m
    G = 1.3271244e20 / mpc / 1e6                                  # Mpc (km/s)^2 / Msun
    assert cm.RHO_CRIT == pytest.approx(3 * 100.0 ** 2 / (8 * np.pi * G) / 1e10, rel=1e-8)


def test_sigma8_normalisation_and_independent_integral():
    """sigma(8) = sigma8 by construction; sigma(R) at another radius against adaptive quadrature."""
    assert cm.sigma_R(P18, 8.0) == pytest.approx(P18.sigma8, rel=1e-10)

    def integrand(lnk, R):
        k = np.exp(lnk)
        x = k * R
        w = 3 * (np.sin(x) - x * np.cos(x)) / x ** 3
        return k ** 3 * cm.linear_power(P18, k) * w ** 2 / (2 * np.pi ** 2)

    R = 20.0
    var, _ = quad(integrand, np.log(1e-5), np.log(50.0), args=(R,), limit=500)
    assert cm.sigma_R(P18, R) == pytest.approx(np.sqrt(var), rel=1e-5)
    assert cm.sigma_R(P18, R, z=1.0) == pytest.approx(np.sqrt(var) * cm.D1(P18, 0.5), rel=1e-5)


def test_linear_power_scales_with_growth():
    ratio = cm.linear_power(P18, 0.1, z=2.0) / cm.linear_power(P18, 0.1)
    assert ratio == pytest.approx(0.41823 ** 2, rel=2e-3)


@pytest.mark.parametrize("bad, name", [
    (dict(Omega_m=0.0), "Omega_m"), (dict(Omega_m=1.2), "Omega_m"),
    (dict(Omega_b=0.4), "Omega_b"), (dict(Omega_b=0.0), "Omega_b"),
    (dict(h=-0.7), "h"), (dict(sigma8=0.0), "sigma8"),
    (dict(n_s=2.5), "n_s"), (dict(n_s=0.0), "n_s"), (dict(T_cmb=0.0), "T_cmb"),
    (dict(h=float("nan")), "h"), (dict(h="fast"), "h"),
])
def test_invalid_parameters_rejected_by_name(bad, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        cm.Cosmology(**bad)


def test_dict_round_trip_and_unknown_keys():
    c = cm.Cosmology(h=0.7, Omega_m=0.25, sigma8=0.9)
    assert cm.Cosmology.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(InputError, match="Omega_k"):
        cm.Cosmology.from_dict({"Omega_k": 0.1})
