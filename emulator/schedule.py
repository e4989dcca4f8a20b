"""Noise schedules as data, and the sampling schedules (sigma sequences) built from them.

Two pictures of the same forward process (Kingma et al. 2021; Karras et al. 2022, arXiv:2206.00364):

    variance preserving (VP):  x_vp = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps
    variance exploding  (VE):  x    = x0 + sigma eps,   x = x_vp / sqrt(alpha_bar)

related by ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``, ``alpha_bar = 1 / (1 + sigma^2)``.
A training schedule is a discrete sequence of T noise levels (DDPM, Ho et al. 2020,
arXiv:2006.11239): ``alpha_bar_t = prod_{i <= t} (1 - beta_i)``, t = 1..T, stored here at index
t - 1, so ``sigmas()`` increases with the index. Training draws t uniformly and uses
``sigmas()[t - 1]``; the network is given a continuous function of sigma, so a sampler may use any
decreasing sigma sequence between ``sigma_min`` and ``sigma_max``.

Sampling schedules are plain functions ``(schedule, steps) -> float64 array (steps + 1,)``,
strictly decreasing from the schedule's ``sigma_max`` and ending in 0 (the k-diffusion
convention: the last step returns the x0 estimate). None of them uses the "leading" spacing that
starts below ``sigma_max`` (docs/reference.md: 58 instead of 151 for 10 steps), which would start
the sampler from noise that is too small.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sims.errors import InputError, check_int


def sigma_from_alpha_bar(alpha_bar):
    """VE noise level [normalised field units] of a VP level: sigma = sqrt((1 - alpha_bar) / alpha_bar)."""
    alpha_bar = np.asarray(alpha_bar, dtype=np.float64)
    return np.sqrt((1.0 - alpha_bar) / alpha_bar)


def alpha_bar_from_sigma(sigma):
    """VP signal fraction of a VE level: alpha_bar = 1 / (1 + sigma^2)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    return 1.0 / (1.0 + sigma**2)


class _Discrete:
    """Shared algebra of a discrete schedule defined by its ``betas()`` (T,)."""

    def log_alpha_bars(self):
        """ln alpha_bar_t = sum_{i <= t} ln(1 - beta_i), t = 1..T, float64 (T,), decreasing."""
        return np.cumsum(np.log1p(-self.betas()))

    def alpha_bars(self):
        """alpha_bar_t = prod_{i <= t} (1 - beta_i), t = 1..T, float64 (T,), decreasing."""
        return np.exp(self.log_alpha_bars())

    def sigmas(self):
        """Discrete training noise levels sigma_t, t = 1..T, float64 (T,), increasing, computed as
        sqrt(expm1(-ln alpha_bar)) so small levels keep full precision (1 - alpha_bar cancels)."""
        return np.sqrt(np.expm1(-self.log_alpha_bars()))

    @property
    def sigma_min(self):
        """Smallest trained noise level, sigma_1."""
        return float(self.sigmas()[0])

    @property
    def sigma_max(self):
        """Largest trained noise level, sigma_T: where every sampler starts."""
        return float(self.sigmas()[-1])

    def to_dict(self):
        """Plain dict (JSON-ready) with a ``kind`` key; :func:`from_dict` rebuilds the schedule."""
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class LinearSchedule(_Discrete):
    """DDPM linear betas (Ho et al. 2020 Sec. 4): beta_t linear from ``beta_start`` to ``beta_end``
    over ``steps`` = T levels. Defaults are the reference's (Rouhiainen et al. 2023): 1e-6 -> 0.01,
    T = 2000, giving alpha_bar_T = 4.4e-5 and sigma_max = 151.
    """

    kind: ClassVar[str] = "linear"
    beta_start: float = 1e-6
    beta_end: float = 0.01
    steps: int = 2000

    def __post_init__(self):
        check_int("schedule steps", self.steps, minimum=2)
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise InputError("schedule", "need 0 < beta_start <= beta_end < 1, got "
                             f"{self.beta_start} and {self.beta_end}")

    def betas(self):
        return np.linspace(self.beta_start, self.beta_end, self.steps, dtype=np.float64)


@dataclass(frozen=True)
class CosineSchedule(_Discrete):
    """Cosine schedule (Nichol & Dhariwal 2021, arXiv:2102.09672, eq. 17):
    alpha_bar(t) = f(t) / f(0), f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, realised through
    beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), max_beta) as in their code. The clip at
    t = T makes sigma_max large (about 4e4 for T = 2000); sampling from it costs a few extra steps.
    """

    kind: ClassVar[str] = "cosine"
    steps: int = 2000
    offset: float = 0.008
    max_beta: float = 0.999

    def __post_init__(self):
        check_int("schedule steps", self.steps, minimum=2)
        if not self.offset > 0.0:
            raise InputError("schedule", f"cosine offset s must be positive, got {self.offset}")
        if not 0.0 < self.max_beta < 1.0:
            raise InputError("schedule", f"max_beta must be in (0, 1), got {self.max_beta}")

    def betas(self):
        t = np.arange(self.steps + 1, dtype=np.float64) / self.steps
        f = np.cos((t + self.offset) / (1.0 + self.offset) * math.pi / 2) ** 2
        return np.minimum(1.0 - f[1:] / f[:-1], self.max_beta)


SCHEDULES = {cls.kind: cls for cls in (LinearSchedule, CosineSchedule)}


def from_dict(d):
    """Rebuild a schedule from :meth:`to_dict` output; unknown kinds or fields are an InputError."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in SCHEDULES:
        raise InputError("schedule", f"unknown kind {kind!r}; known: {sorted(SCHEDULES)}")
    cls = SCHEDULES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    if set(d) - names:
        raise InputError("schedule", f"unknown field(s) {sorted(set(d) - names)} for {kind}")
    return cls(**d)


def karras_sigmas(schedule, steps, rho=7.0):
    """EDM time steps (Karras et al. 2022, eq. 5): for i = 0..N-1,
    sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    then sigma_N = 0. One step (N = 1) goes from sigma_max straight to 0.
    """
    check_int("steps", steps)
    ramp = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    lo, hi = schedule.sigma_min ** (1.0 / rho), schedule.sigma_max ** (1.0 / rho)
    return np.append((hi + ramp * (lo - hi)) ** rho, 0.0)


def logsnr_sigmas(schedule, steps):
    """Uniform in log-SNR = -2 ln sigma (the DPM-Solver "logSNR" spacing, Lu et al. 2022,
    arXiv:2206.00927 Sec. 3.3): sigma geometric from sigma_max to sigma_min, then 0."""
    check_int("steps", steps)
    ramp = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    lo, hi = math.log(schedule.sigma_min), math.log(schedule.sigma_max)
    return np.append(np.exp(hi + ramp * (lo - hi)), 0.0)


def trained_sigmas(schedule, steps=None):
    """A subsequence of the discrete training levels with "trailing" spacing (Lin et al. 2024,
    arXiv:2305.08891 Table 2): t = round(linspace(T, 1, N)), so it starts at sigma_T = sigma_max
    and ends at sigma_1 = sigma_min, then 0. ``steps=None`` gives all T levels: the reference's
    ancestral DDPM over the training steps.
    """
    trained = schedule.sigmas()
    steps = len(trained) if steps is None else steps
    check_int("steps", steps)
    if steps > len(trained):
        raise InputError("steps", f"{steps} exceeds the {len(trained)} trained noise levels")
    index = np.round(np.linspace(len(trained) - 1, 0, steps)).astype(np.int64)
    return np.append(trained[index], 0.0)


SPACINGS = {"karras": karras_sigmas, "logsnr": logsnr_sigmas, "trained": trained_sigmas}
