"""Flat LCDM cosmology: background, exact linear growth to second order, the Eisenstein & Hu
(1998) transfer function and the sigma8-normalised linear power spectrum.

Radiation is ignored: E^2(a) = Omega_m a^-3 + Omega_L with Omega_L = 1 - Omega_m (it changes
H(a) by < 1e-4 relative below z ~ 1 and does not enter the growth of matter in this model).
Units: k in h/Mpc, lengths in Mpc/h, power in (Mpc/h)^3. Functions of the scale factor ``a``
accept scalars or arrays and broadcast.
"""
import functools
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.integrate import simpson, solve_ivp
from scipy.special import hyp2f1

from sims.errors import InputError


@dataclass(frozen=True)
class Cosmology:
    """Flat LCDM parameters (default: Planck 2018 TT,TE,EE+lowE+lensing+BAO, Table 2 col. 6).

    ``h`` = H0 / (100 km/s/Mpc); density parameters today; ``n_s`` scalar spectral index;
    ``sigma8`` rms linear overdensity in top-hat spheres of 8 Mpc/h at z = 0; ``T_cmb`` [K].
    Invalid values raise :class:`~sims.errors.InputError` (a ``ValueError``) naming the parameter.
    """

    h: float = 0.6766
    Omega_m: float = 0.3111
    Omega_b: float = 0.04897
    n_s: float = 0.9665
    sigma8: float = 0.8102
    T_cmb: float = 2.7255

    def __post_init__(self):
        for name in ("h", "Omega_m", "Omega_b", "n_s", "sigma8", "T_cmb"):
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        checks = (
            ("h", self.h > 0, "must be > 0"),
            ("Omega_m", 0 < self.Omega_m <= 1, "must be in (0, 1] (flat LCDM, Omega_L = 1 - Omega_m)"),
            ("Omega_b", 0 < self.Omega_b < self.Omega_m, f"must be in (0, Omega_m = {self.Omega_m})"),
            ("n_s", 0 < self.n_s < 2, "must be in (0, 2)"),
            ("sigma8", self.sigma8 > 0, "must be > 0"),
            ("T_cmb", self.T_cmb > 0, "must be > 0 [K]"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise InputError(name, f"{rule}, got {getattr(self, name)}")

    @property
    def Omega_L(self):
        """Cosmological-constant density today, 1 - Omega_m (flat, radiation ignored)."""
        return 1.0 - self.Omega_m

    def to_dict(self):
        """Plain dict of the parameters (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take the defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError("cosmology", f"unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def _as_float(name, value):
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"must be a number, got {value!r}") from None


PLANCK18 = Cosmology()

# Critical density today, rho_crit = 3 H0^2 / (8 pi G) with H0 = 100 h km/s/Mpc:
# 2.77536627e11 h^2 Msun / Mpc^3 (Particle Data Group, Review of Particle Physics, table 2.1
# "Astrophysical constants and parameters"), here in the Gadget units 1e10 Msun/h per (Mpc/h)^3,
# which take out the h^2.
RHO_CRIT = 27.7536627


# ---------------------------------------------------------------- background


def E(cosmo, a):
    """H(a) / H0 = sqrt(Omega_m a^-3 + Omega_L) (flat LCDM, radiation ignored)."""
    a = np.asarray(a, dtype=float)
    return np.sqrt(cosmo.Omega_m * a ** -3 + cosmo.Omega_L)


def Omega_m_of_a(cosmo, a):
    """Matter density parameter at scale factor a: Omega_m a^-3 / E^2(a)."""
    a = np.asarray(a, dtype=float)
    return cosmo.Omega_m * a ** -3 / E(cosmo, a) ** 2


# ---------------------------------------------------------------- linear growth


def _growth_x(cosmo, a):
    """Argument -a^3 Omega_L / Omega_m of the hypergeometric growth solution."""
    return -np.asarray(a, dtype=float) ** 3 * cosmo.Omega_L / cosmo.Omega_m


def _D1_unnormalised(cosmo, a):
    """Growing mode D(a) = a 2F1(1/3, 1; 11/6; -a^3 Omega_L/Omega_m) (flat LCDM closed form;
    e.g. Demianski et al. 2005 eq. 12), with D -> a in matter domination."""
    return np.asarray(a, dtype=float) * hyp2f1(1 / 3, 1, 11 / 6, _growth_x(cosmo, a))


def D1(cosmo, a):
    """Linear growth factor normalised to D1(a=1) = 1 (exact closed form, see _D1_unnormalised)."""
    return _D1_unnormalised(cosmo, a) / _D1_unnormalised(cosmo, 1.0)


def f1(cosmo, a):
    """Linear growth rate dlnD1/dlna, from the derivative of the closed form:
    d 2F1(a,b;c;x)/dx = (ab/c) 2F1(a+1,b+1;c+1;x) and dx/dlna = 3x give
    f1 = 1 + (6/11) x 2F1(4/3, 2; 17/6; x) / 2F1(1/3, 1; 11/6; x)."""
    x = _growth_x(cosmo, a)
    return 1 + (6 / 11) * x * hyp2f1(4 / 3, 2, 17 / 6, x) / hyp2f1(1 / 3, 1, 11 / 6, x)


_A_START = 1e-5  # matter-dominated start of the D2 integration: Omega_L/Omega_m a^3 ~ 1e-15
_A_END = 100.0   # largest scale factor D2 and f2 are defined for


@functools.lru_cache(maxsize=32)
def _D2_solution(cosmo):
    """Dense solution of the second-order growth equation in N = ln a (Bouchet et al. 1995 eq. A.2,
    standard sign):  D2'' + (2 + dlnE/dN) D2' - (3/2) Omega_m(a) D2 = -(3/2) Omega_m(a) D1^2,
    with dlnE/dN = -(3/2) Omega_m(a). Starts at a = 1e-5 on the matter-dominated solution
    D2 = -(3/7) D1^2, D2' = 2 f1 D2; rtol 1e-10."""
    def rhs(N, y):
        a = np.exp(N)
        om = Omega_m_of_a(cosmo, a)
        return [y[1], -(2 - 1.5 * om) * y[1] + 1.5 * om * (y[0] - D1(cosmo, a) ** 2)]

    d2 = -3 / 7 * D1(cosmo, _A_START) ** 2
    return solve_ivp(rhs, (np.log(_A_START), np.log(_A_END)),
                     [d2, 2 * f1(cosmo, _A_START) * d2],
                     method="DOP853", rtol=1e-10, atol=1e-30, dense_output=True).sol


def _D2_state(cosmo, a):
    a = np.asarray(a, dtype=float)
    if np.any(a <= 0) or np.any(a > _A_END):
        raise ValueError(f"second-order growth is defined for 0 < a <= {_A_END}")
    state = _D2_solution(cosmo)(np.log(np.clip(a, _A_START, None)).ravel())
    early = (a < _A_START).ravel()
    d1 = D1(cosmo, a).ravel()
    state[0, early] = -3 / 7 * d1[early] ** 2       # matter domination, exact to ~1e-15
    state[1, early] = 2 * state[0, early]
    return state[0].reshape(a.shape), state[1].reshape(a.shape)


def D2(cosmo, a):
    """Second-order growth factor (negative; D2 ~ -(3/7) D1^2 Omega_m(a)^(-1/143)), D1(1) = 1 units.
    Exact numerical solution of the ODE in :func:`_D2_solution`; 0 < a <= 100."""
    return _D2_state(cosmo, a)[0]


def f2(cosmo, a):
    """Second-order growth rate dlnD2/dlna (~ 2 Omega_m(a)^(6/11)); 0 < a <= 100."""
    d2, d2_prime = _D2_state(cosmo, a)
    return d2_prime / d2


# ---------------------------------------------------------------- Eisenstein & Hu 1998


@dataclass(frozen=True)
class EH98Scales:
    """Derived quantities of Eisenstein & Hu 1998 (ApJ 496, 605), eqs. 2-15, 23-24 and 31.

    Wavenumbers in 1/Mpc, lengths in Mpc (no h), as in the paper. As in the authors' reference
    code (tf_fit.c), the eq. 2 expression is 1 + z_eq, and R (eq. 5) is evaluated at 1 + z.
    """

    z_eq: float      # eq. 2
    k_eq: float      # eq. 3 [1/Mpc]
    z_d: float       # eq. 4
    s: float         # eq. 6, sound horizon at the drag epoch [Mpc]
    k_silk: float    # eq. 7 [1/Mpc]
    alpha_c: float   # eq. 11
    beta_c: float    # eq. 12
    alpha_b: float   # eq. 14
    beta_b: float    # eq. 24
    beta_node: float  # eq. 23
    s_fit: float     # eq. 26, fitted sound horizon for the no-wiggle form [Mpc]
    alpha_gamma: float  # eq. 31


@functools.lru_cache(maxsize=32)
def eh98_scales(cosmo):
    """The scale-independent ingredients of the EH98 transfer functions (see :class:`EH98Scales`)."""
    theta = cosmo.T_cmb / 2.7
    w_m, w_b = cosmo.Omega_m * cosmo.h ** 2, cosmo.Omega_b * cosmo.h ** 2
    f_b = cosmo.Omega_b / cosmo.Omega_m
    f_c = 1 - f_b
    z_eq = 2.50e4 * w_m * theta ** -4 - 1
    k_eq = 7.46e-2 * w_m * theta ** -2
    b1 = 0.313 * w_m ** -0.419 * (1 + 0.607 * w_m ** 0.674)
    b2 = 0.238 * w_m ** 0.223
    z_d = 1291 * w_m ** 0.251 / (1 + 0.659 * w_m ** 0.828) * (1 + b1 * w_b ** b2)
    R_d, R_eq = (31.5 * w_b * theta ** -4 * 1e3 / (1 + z) for z in (z_d, z_eq))   # eq. 5
    s = (2 / (3 * k_eq) * np.sqrt(6 / R_eq)
         * np.log((np.sqrt(1 + R_d) + np.sqrt(R_d + R_eq)) / (1 + np.sqrt(R_eq))))
    k_silk = 1.6 * w_b ** 0.52 * w_m ** 0.73 * (1 + (10.4 * w_m) ** -0.95)
    a1 = (46.9 * w_m) ** 0.670 * (1 + (32.1 * w_m) ** -0.532)
    a2 = (12.0 * w_m) ** 0.424 * (1 + (45.0 * w_m) ** -0.582)
    bc1 = 0.944 / (1 + (458 * w_m) ** -0.708)
    bc2 = (0.395 * w_m) ** -0.0266
    y = (1 + z_eq) / (1 + z_d)
    G = y * (-6 * np.sqrt(1 + y) + (2 + 3 * y) * np.log((np.sqrt(1 + y) + 1) / (np.sqrt(1 + y) - 1)))
    return EH98Scales(
        z_eq=z_eq, k_eq=k_eq, z_d=z_d, s=s, k_silk=k_silk,
        alpha_c=a1 ** -f_b * a2 ** -(f_b ** 3),
        beta_c=1 / (1 + bc1 * (f_c ** bc2 - 1)),
        alpha_b=2.07 * k_eq * s * (1 + R_d) ** -0.75 * G,
        beta_b=0.5 + f_b + (3 - 2 * f_b) * np.sqrt((17.2 * w_m) ** 2 + 1),
        beta_node=8.41 * w_m ** 0.435,
        s_fit=44.5 * np.log(9.83 / w_m) / np.sqrt(1 + 10 * w_b ** 0.75),
        alpha_gamma=1 - 0.328 * np.log(431 * w_m) * f_b + 0.38 * np.log(22.3 * w_m) * f_b ** 2,
    )


def _T0_tilde(q, alpha, beta):
    """EH98 eqs. 19-20: pressureless transfer shape T0~(k, alpha, beta) of q = k / (13.41 k_eq)."""
    L = np.log(np.e + 1.8 * beta * q)
    C = 14.2 / alpha + 386 / (1 + 69.9 * q ** 1.08)
    return L / (L + C * q ** 2)


def _transfer_bao(cosmo, k_mpc):
    """EH98 eqs. 16-24: baryon + CDM transfer function with acoustic oscillations, k in 1/Mpc."""
    sc = eh98_scales(cosmo)
    f_b = cosmo.Omega_b / cosmo.Omega_m
    q = k_mpc / (13.41 * sc.k_eq)
    ks = k_mpc * sc.s
    f = 1 / (1 + (ks / 5.4) ** 4)
    T_c = f * _T0_tilde(q, 1, sc.beta_c) + (1 - f) * _T0_tilde(q, sc.alpha_c, sc.beta_c)
    s_tilde = sc.s / np.cbrt(1 + (sc.beta_node / ks) ** 3)
    T_b = (_T0_tilde(q, 1, 1) / (1 + (ks / 5.2) ** 2)
           + sc.alpha_b / (1 + (sc.beta_b / ks) ** 3) * np.exp(-(k_mpc / sc.k_silk) ** 1.4))
    T_b = T_b * np.sinc(k_mpc * s_tilde / np.pi)        # j0(x) = sin(x)/x = np.sinc(x/pi)
    return f_b * T_b + (1 - f_b) * T_c


def _transfer_no_wiggle(cosmo, k_mpc):
    """EH98 eqs. 26-31: the zero-baryon-oscillation form with a scale-dependent shape Gamma_eff."""
    sc = eh98_scales(cosmo)
    gamma_eff = cosmo.Omega_m * cosmo.h * (
        sc.alpha_gamma + (1 - sc.alpha_gamma) / (1 + (0.43 * k_mpc * sc.s_fit) ** 4))
    q = k_mpc * (cosmo.T_cmb / 2.7) ** 2 / (gamma_eff * cosmo.h)
    L0 = np.log(2 * np.e + 1.8 * q)
    C0 = 14.2 + 731 / (1 + 62.5 * q)
    return L0 / (L0 + C0 * q ** 2)


def transfer_eh98(cosmo, k, wiggles=True):
    """Eisenstein & Hu 1998 matter transfer function T(k); k in h/Mpc (>= 0), T(0) = 1 exactly
    (so that a whole FFT grid, DC mode included, can be passed).

    ``wiggles=True``: full fit with baryon acoustic oscillations (eqs. 16-24);
    ``False``: the no-wiggle form (eqs. 26-31).
    """
    k_mpc = np.asarray(k, dtype=float) * cosmo.h
    positive = k_mpc > 0
    k_safe = np.where(positive, k_mpc, 1.0)
    T = _transfer_bao(cosmo, k_safe) if wiggles else _transfer_no_wiggle(cosmo, k_safe)
    return np.where(positive, T, 1.0)


# ---------------------------------------------------------------- normalised linear power


def _tophat_window(x):
    """Fourier transform of a unit top-hat sphere, W(x) = 3 (sin x - x cos x) / x^3."""
    x = np.asarray(x, dtype=float)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    return np.where(small, 1 - x ** 2 / 10, 3 * (np.sin(xs) - xs * np.cos(xs)) / xs ** 3)


_LNX = np.linspace(np.log(1e-5), np.log(1e3), 16385)   # ln(kR) grid of the sigma_R integral


def _sigma2_shape(cosmo, R, wiggles):
    """Unnormalised sigma^2(R) = int dlnk k^3 k^n_s T^2(k) W^2(kR) / (2 pi^2), Simpson on a dense
    ln k grid covering kR in [1e-5, 1e3] (the integrand is < 1e-9 of its peak outside)."""
    k = np.exp(_LNX) / R
    integrand = k ** (3 + cosmo.n_s) * transfer_eh98(cosmo, k, wiggles) ** 2 * _tophat_window(k * R) ** 2
    return simpson(integrand, x=_LNX) / (2 * np.pi ** 2)


@functools.lru_cache(maxsize=64)
def _amplitude(cosmo, wiggles):
    """A such that P(k) = A k^n_s T^2(k) has sigma(R = 8 Mpc/h, z = 0) = sigma8."""
    return cosmo.sigma8 ** 2 / _sigma2_shape(cosmo, 8.0, wiggles)


def linear_power(cosmo, k, z=0.0, wiggles=True):
    """Linear matter power P(k, z) = A k^n_s T_EH98^2(k) D1^2(z) [(Mpc/h)^3], k in h/Mpc
    (P(0) = 0), normalised so that the top-hat rms at R = 8 Mpc/h and z = 0 is sigma8 (each variant separately)."""
    k = np.asarray(k, dtype=float)
    growth = D1(cosmo, 1 / (1 + np.asarray(z, dtype=float)))
    return _amplitude(cosmo, wiggles) * k ** cosmo.n_s * transfer_eh98(cosmo, k, wiggles) ** 2 * growth ** 2


def sigma_R(cosmo, R, z=0.0, wiggles=True):
    """rms linear overdensity in top-hat spheres of radius R [Mpc/h] at redshift z (scalar R)."""
    growth = D1(cosmo, 1 / (1 + float(z)))
    return float(np.sqrt(_amplitude(cosmo, wiggles) * _sigma2_shape(cosmo, float(R), wiggles)) * growth)
