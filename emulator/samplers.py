"""Samplers: plain functions of a denoiser, in the style of k-diffusion (Crowson, k_diffusion/sampling.py).

Every sampler has the signature

    sampler(denoiser, x, sigmas, *, generator=None, known=None, mask=None, callback=None,
            corrector=None, **options) -> x0

denoiser(x, sigma) -> x0 estimate, with x (B, ...) in the VE picture x = x0 + sigma eps and sigma
a float (bind any conditioning in beforehand, e.g. with functools.partial).
x: the starting point, sigmas[0] * standard normal noise.
sigmas: strictly decreasing noise levels ending in 0 (emulator.schedule: karras_sigmas, ...).
generator: a torch.Generator, or a sequence of B generators, one per sample, so that a sample's
    noise depends on its own generator only (EDM's StackedRandomGenerator); only the
    stochastic samplers and the corrector draw from it. Deterministic samplers (ddim with
    eta = 0, dpmpp-2m, heun without churn) ignore it.
known, mask: outpainting context, tensors broadcastable to x (mask bool): the voxels where
    mask is True are known to equal ``known``. Handled in one place for every sampler: the x0
    estimate's known voxels are replaced by ``known`` (so the known voxels of x follow
    known + sigma * noise, as in training) and ``known`` is pasted into the result, whose known
    voxels equal it exactly.
callback: called after every step with {"i", "sigma", "sigma_next", "x", "denoised"}.
corrector: None or a :class:`Langevin` corrector, run at every new level sigma_next > 0.

Every step is written in terms of D alone; noise is added by one function, :func:`_renoise`.
"""
import functools
import math
from dataclasses import dataclass

import torch


def randn(shape, generator, *, dtype=torch.float32, device="cpu"):
    """Standard normal tensor of ``shape`` (B, ...) from ``generator``.

    generator: one torch.Generator, or a sequence of B generators (one per sample along the first
    axis). Drawn on the generator's device and then moved to ``device``, so the numbers depend on
    the generators only. Raises ValueError without a generator: no draw is left unseeded.
    """
    if generator is None:
        raise ValueError("this sampler draws noise: pass generator= (a torch.Generator or one per sample)")
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=g, device=g.device, dtype=dtype).to(device)
                        for g in generator])


def _renoise(x, sigma_from, sigma_to, noise, s_noise=1.0):
    """Raise x's noise level from sigma_from to sigma_to by adding independent Gaussian noise of
    standard deviation s_noise * sqrt(sigma_to^2 - sigma_from^2): the churn of EDM Algorithm 2
    line 6, the ancestral sigma_up and the SDE noise term are all this one operation."""
    if sigma_to <= sigma_from:
        return x
    return x + (s_noise * math.sqrt(sigma_to**2 - sigma_from**2)) * noise(x)


def ancestral_split(sigma_from, sigma_to, eta=1.0):
    """(sigma_down, sigma_up) of an ancestral step (k-diffusion ``get_ancestral_step``):
    sigma_up = min(sigma_to, eta sigma_to sqrt(1 - sigma_to^2 / sigma_from^2)),
    sigma_down = sqrt(sigma_to^2 - sigma_up^2). With eta = 1 a deterministic step to sigma_down
    followed by sigma_up noise is exactly the DDPM posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020
    eq. 7, variance beta_tilde) written in the VE picture; general eta is DDIM's (Song et al. 2021,
    arXiv:2010.02502, eq. 16)."""
    if sigma_to == 0.0:
        return 0.0, 0.0
    sigma_up = min(sigma_to, eta * sigma_to * math.sqrt(1.0 - sigma_to**2 / sigma_from**2))
    return math.sqrt(sigma_to**2 - sigma_up**2), sigma_up


@dataclass(frozen=True)
class Langevin:
    """Langevin corrector of predictor-corrector sampling (Song et al. 2021, arXiv:2011.13456,
    Algorithm 4, VE): ``steps`` times at level sigma,
        g = (D(x, sigma) - x) / sigma^2   (the score),   z ~ N(0, 1),
        epsilon = 2 (snr |z| / |g|)^2,   x <- x + epsilon g + sqrt(2 epsilon) z,
    with norms per sample (so a sample does not depend on its batch). Costs ``steps`` extra
    denoiser evaluations per level. Unadjusted Langevin is biased by its finite step: on Gaussian
    data (tests/test_samplers.py) the standard deviation comes out about 1.5% high at snr 0.16
    even with many steps. After a multistep predictor (dpmpp-2m, dpmpp-2m-sde) the history term
    mixes estimates from before and after the correction: pair it with ddim or heun.
    """

    steps: int = 1
    snr: float = 0.16

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"Langevin steps must be a positive integer, got {self.steps!r}")
        if not self.snr > 0.0:
            raise ValueError(f"Langevin snr must be positive, got {self.snr}")

    def __call__(self, denoiser, x, sigma, noise):
        for _ in range(self.steps):
            g = (denoiser(x, sigma) - x) / sigma**2
            z = noise(x)
            epsilon = 2.0 * (self.snr * _norm(z) / _norm(g).clamp_min(1e-30)) ** 2
            x = x + epsilon * g + torch.sqrt(2.0 * epsilon) * z
        return x


def _norm(a):
    """Euclidean norm per sample, shaped (B, 1, ..., 1) for broadcasting."""
    return torch.linalg.vector_norm(a.reshape(a.shape[0], -1), dim=1).reshape((-1,) + (1,) * (a.ndim - 1))


def _checked_sigmas(sigmas):
    """sigmas -> list of floats, checking: at least one step, strictly decreasing, ends in 0."""
    sigmas = [float(s) for s in sigmas]
    if len(sigmas) < 2 or sigmas[-1] != 0.0 or min(sigmas[:-1]) <= 0.0:
        raise ValueError(f"sigmas must be positive levels followed by a final 0, got {sigmas}")
    if any(b >= a for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError("sigmas must be strictly decreasing")
    return sigmas


def _with_context(denoiser, known, mask):
    """The denoiser whose x0 estimate equals ``known`` where ``mask`` is True."""
    if known is None and mask is None:
        return denoiser
    if known is None or mask is None:
        raise ValueError("known and mask go together: give both or neither")

    def denoised(x, sigma):
        return torch.where(mask, known, denoiser(x, sigma))
    return denoised


def _integrate(step, denoiser, x, sigmas, generator, known, mask, callback, corrector):
    """The one loop every sampler runs: context, steps, corrector, callback, final paste.

    step(denoiser, x, sigma, sigma_next, previous, noise) -> (x_next, denoised), with
    ``previous`` = (sigma, denoised) of the step before, or None on the first step.
    """
    sigmas = _checked_sigmas(sigmas)
    denoiser = _with_context(denoiser, known, mask)

    def noise(like):
        return randn(like.shape, generator, dtype=like.dtype, device=like.device)

    previous = None
    for i, (sigma, sigma_next) in enumerate(zip(sigmas, sigmas[1:])):
        x, denoised = step(denoiser, x, sigma, sigma_next, previous, noise)
        if corrector is not None and sigma_next > 0.0:
            x = corrector(denoiser, x, sigma_next, noise)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x, "denoised": denoised})
        previous = (sigma, denoised)
    return x if mask is None else torch.where(mask, known, x)


def _ddim_step(denoiser, x, sigma, sigma_next, previous, noise, *, eta, s_noise):
    """DDIM (Song et al. 2021 eq. 12) in the VE picture: x0 + sigma_down * eps_hat, then noise
    up to sigma_next. The deterministic part is the Euler step of the probability-flow ODE
    dx/dsigma = (x - D) / sigma (Karras et al. 2022 eq. 4)."""
    denoised = denoiser(x, sigma)
    sigma_down, _ = ancestral_split(sigma, sigma_next, eta)
    x = denoised + (sigma_down / sigma) * (x - denoised)
    return _renoise(x, sigma_down, sigma_next, noise, s_noise), denoised


def _dpmpp_2m_step(denoiser, x, sigma, sigma_next, previous, noise):
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2) with h = ln(sigma / sigma_next):
    x_next = (sigma_next / sigma) x - expm1(-h) D_hat, D_hat = (1 + 1/2r) D - (1/2r) D_prev,
    r = h_prev / h; first order on the first step, and the last step returns D."""
    denoised = denoiser(x, sigma)
    if sigma_next == 0.0:
        return denoised, denoised
    h = math.log(sigma / sigma_next)
    d = denoised
    if previous is not None:
        sigma_prev, denoised_prev = previous
        half_inv_r = h / (2.0 * math.log(sigma_prev / sigma))
        d = (1.0 + half_inv_r) * denoised - half_inv_r * denoised_prev
    return (sigma_next / sigma) * x - math.expm1(-h) * d, denoised


def _dpmpp_2m_sde_step(denoiser, x, sigma, sigma_next, previous, noise, *, eta, s_noise):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Sec. 4 and App. B; k-diffusion
    ``sample_dpmpp_2m_sde``, midpoint form): with h = ln(sigma / sigma_next),
    x_next = (sigma_next / sigma) e^{-eta h} x + (1 - e^{-(1 + eta) h}) D
             + (1/2r)(1 - e^{-(1 + eta) h}) (D - D_prev) + sigma_next sqrt(1 - e^{-2 eta h}) z.
    eta = 0 is DPM-Solver++(2M)'s ODE in midpoint form; the last step returns D."""
    denoised = denoiser(x, sigma)
    if sigma_next == 0.0:
        return denoised, denoised
    h = math.log(sigma / sigma_next)
    decay = -math.expm1(-(1.0 + eta) * h)
    x = (sigma_next / sigma) * math.exp(-eta * h) * x + decay * denoised
    if previous is not None:
        sigma_prev, denoised_prev = previous
        x = x + (0.5 * decay * h / math.log(sigma_prev / sigma)) * (denoised - denoised_prev)
    return _renoise(x, sigma_next * math.exp(-eta * h), sigma_next, noise, s_noise), denoised


def _heun_step(denoiser, x, sigma, sigma_next, previous, noise, *, gamma, s_tmin, s_tmax, s_noise):
    """EDM Algorithm 2 (Karras et al. 2022), one iteration: churn sigma up to
    sigma_hat = (1 + gamma) sigma (only for s_tmin <= sigma <= s_tmax), an Euler step to
    sigma_next and, unless sigma_next = 0, Heun's second-order correction."""
    sigma_hat = sigma * (1.0 + gamma) if s_tmin <= sigma <= s_tmax else sigma
    x = _renoise(x, sigma, sigma_hat, noise, s_noise)
    denoised = denoiser(x, sigma_hat)
    d = (x - denoised) / sigma_hat
    x_next = x + (sigma_next - sigma_hat) * d
    if sigma_next > 0.0:
        d_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
        x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
    return x_next, denoised


def _consistency_step(denoiser, x, sigma, sigma_next, previous, noise):
    """Multistep consistency sampling (Song et al. 2023, arXiv:2303.01469, Algorithm 1): the
    student's estimate is a sample, not a posterior mean; it is noised afresh to the next level
    (the estimate itself at sigma_next = 0)."""
    denoised = denoiser(x, sigma)
    return _renoise(denoised, 0.0, sigma_next, noise), denoised


def sample_consistency(denoiser, x, sigmas, *, generator=None, known=None, mask=None, callback=None,
                       corrector=None):
    """A distilled student's sampler (emulator.distill): one denoiser call per level, fresh noise
    between levels (stochastic from the second step on). With a diffusion model's denoiser it
    returns blurred posterior means: generation allows it for students only."""
    return _integrate(_consistency_step, denoiser, x, sigmas, generator, known, mask, callback, corrector)


def sample_ddim(denoiser, x, sigmas, *, generator=None, known=None, mask=None, callback=None,
                corrector=None, eta=0.0, s_noise=1.0):
    """DDIM: deterministic first-order ODE solver for eta = 0, ancestral for eta = 1."""
    step = functools.partial(_ddim_step, eta=eta, s_noise=s_noise)
    return _integrate(step, denoiser, x, sigmas, generator, known, mask, callback, corrector)


def sample_ddpm(denoiser, x, sigmas, *, generator=None, known=None, mask=None, callback=None,
                corrector=None):
    """Ancestral DDPM sampling (Ho et al. 2020 Algorithm 2): DDIM with eta = 1. Over all trained
    levels (``emulator.schedule.trained_sigmas(schedule)``) it is the reference's 2000-step baseline."""
    return sample_ddim(denoiser, x, sigmas, generator=generator, known=known, mask=mask,
                       callback=callback, corrector=corrector, eta=1.0)


def sample_dpmpp_2m(denoiser, x, sigmas, *, generator=None, known=None, mask=None, callback=None,
                    corrector=None):
    """DPM-Solver++(2M): deterministic, second order, one denoiser call per step."""
    return _integrate(_dpmpp_2m_step, denoiser, x, sigmas, generator, known, mask, callback, corrector)


def sample_dpmpp_2m_sde(denoiser, x, sigmas, *, generator=None, known=None, mask=None, callback=None,
                        corrector=None, eta=1.0, s_noise=1.0):
    """SDE-DPM-Solver++(2M): stochastic, one denoiser call per step."""
    step = functools.partial(_dpmpp_2m_sde_step, eta=eta, s_noise=s_noise)
    return _integrate(step, denoiser, x, sigmas, generator, known, mask, callback, corrector)


def sample_heun(denoiser, x, sigmas, *, generator=None, known=None, mask=None, callback=None,
                corrector=None, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, s_noise=1.0):
    """EDM Algorithm 2: Heun's second-order method, 2N - 1 denoiser calls for N steps, with
    churn gamma = min(s_churn / N, sqrt(2) - 1) (s_churn = 0: deterministic)."""
    gamma = min(s_churn / (len(sigmas) - 1), math.sqrt(2.0) - 1.0)
    step = functools.partial(_heun_step, gamma=gamma, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
    return _integrate(step, denoiser, x, sigmas, generator, known, mask, callback, corrector)


SAMPLERS = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp-2m": sample_dpmpp_2m,
    "dpmpp-2m-sde": sample_dpmpp_2m_sde,
    "heun": sample_heun,
    "consistency": sample_consistency,
}


EVALUATIONS = {
    "ddpm": lambda steps: steps,
    "ddim": lambda steps: steps,
    "dpmpp-2m": lambda steps: steps,
    "dpmpp-2m-sde": lambda steps: steps,
    "heun": lambda steps: 2 * steps - 1,          # no correction on the last step, to sigma = 0
    "consistency": lambda steps: steps,
}
"""Denoiser evaluations of each sampler over a number of steps (corrector aside)."""


def evaluations(sampler, steps, corrector=None):
    """Number of denoiser evaluations (NFE) of ``SAMPLERS[sampler]`` over ``steps`` steps."""
    return EVALUATIONS[sampler](steps) + (0 if corrector is None else corrector.steps * (steps - 1))
