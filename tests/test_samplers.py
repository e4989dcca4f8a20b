"""Samplers on the exact denoiser of Gaussian data (emulator.samplers).

For data x0 ~ N(m, s^2) per voxel, E[x0 | x0 + sigma eps = x] = (s^2 x + sigma^2 m) / (s^2 + sigma^2),
and the probability-flow ODE dx/dsigma = (x - D) / sigma has the solution
x(sigma) = m + (x_T - m) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_max^2) (Karras et al. 2022 eq. 4).
"""
import math

import numpy as np
import pytest
import torch

from emulator import samplers as P
from emulator import schedule as S

M, STD = 0.3, 1.0          # unit variance, as the normalised fields (sigma_data = 1)
SCHEDULE = S.LinearSchedule()


def gaussian_denoiser(x, sigma):
    return (STD**2 * x + sigma**2 * M) / (STD**2 + sigma**2)


def start(shape=(4, 1, 16, 16, 16), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return SCHEDULE.sigma_max * torch.randn(shape, generator=g, dtype=dtype)


def exact_ode(x_T):
    return M + (x_T - M) * STD / math.sqrt(STD**2 + SCHEDULE.sigma_max**2)


CASES = {   # id: (sampler, options)
    "ddpm": ("ddpm", {}),
    "ddim": ("ddim", {}),
    "ddim-eta": ("ddim", {"eta": 0.5}),
    "dpmpp-2m": ("dpmpp-2m", {}),
    "dpmpp-2m-sde": ("dpmpp-2m-sde", {}),
    "heun": ("heun", {}),
    "heun-churn": ("heun", {"s_churn": 40.0}),
    "ddim-langevin": ("ddim", {"corrector": P.Langevin()}),
}


def run(case, steps, x=None, spacing=None, **kwargs):
    name, options = CASES[case]
    spacing = spacing or ("trained" if name == "ddpm" else "karras")
    sigmas = S.SPACINGS[spacing](SCHEDULE, steps)
    x = start() if x is None else x
    return P.SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(1),
                            **options, **kwargs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_moments_at_20_steps_and_converged(case):
    """Mean and standard deviation of 16384 samples. At 20 steps the discretisation error of the
    standard deviation is at most 17% (ddpm and ddim, first order; Langevin at snr 0.16); with
    many steps every sampler converges to N(m, s^2) within 3% (statistical error 0.6%)."""
    out = run(case, 20)
    assert abs(out.mean().item() - M) < 0.05
    assert abs(out.std().item() - STD) < 0.2
    converged = run(case, 2000 if case == "ddpm" else 300)
    assert abs(converged.mean().item() - M) < 0.03
    assert abs(converged.std().item() - STD) < 0.03


@pytest.mark.parametrize("name, order", [("ddim", 1.0), ("dpmpp-2m", 2.0), ("heun", 2.0)])
@pytest.mark.parametrize("spacing", ["karras", "logsnr"])
def test_deterministic_samplers_converge_to_the_ode_solution_with_their_order(name, order, spacing):
    x_T = start((64,), dtype=torch.float64)
    steps = np.array([10, 20, 40, 80, 160])
    exact = exact_ode(x_T)
    errors = [((run(name, n, x=x_T.clone(), spacing=spacing) - exact).abs().max() / (exact - M).abs().max()).item()
              for n in steps]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert -order - 0.3 < slope < -order + 0.3, (errors, slope)
    assert errors[-1] < (0.03 if order == 1.0 else 0.003)


@pytest.mark.parametrize("case", sorted(CASES))
def test_outpainting_context_is_exact_and_local(case):
    """Known voxels equal ``known`` exactly; with the (voxel-independent) denoiser the other
    voxels come out exactly as without context, the noise draws being the same (except with the
    Langevin corrector, whose step size depends on the whole sample)."""
    x = start()
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(x.shape, generator=g) < 0.4
    known = torch.randn(x.shape, generator=g) * 3.0
    free = run(case, 8, x=x.clone())
    out = run(case, 8, x=x.clone(), known=known, mask=mask)
    assert torch.equal(out[mask], known[mask])
    assert torch.equal(out[~mask], free[~mask]) or "langevin" in case


@pytest.mark.parametrize("case", ["ddim", "dpmpp-2m", "heun"])
def test_known_voxels_follow_known_plus_sigma_times_initial_noise(case):
    """On the ODE the known voxels of x are known + sigma * z with the fixed z = (x_T - known) /
    sigma_max: the training distribution of the noisy channel (x0 + sigma eps, x0 = known there)."""
    x = start()
    known = torch.full(x.shape, -2.0)
    z = (x - known) / SCHEDULE.sigma_max
    mask = torch.zeros(x.shape, dtype=torch.bool)
    mask[..., :5] = True
    levels = []

    def check(info):
        if info["sigma_next"] > 0:
            expected = known + info["sigma_next"] * z
            torch.testing.assert_close(info["x"][mask], expected[mask], rtol=1e-5, atol=1e-5)
            levels.append(info["sigma_next"])
    run(case, 10, x=x, known=known, mask=mask, callback=check)
    assert len(levels) == 9


@pytest.mark.parametrize("case", ["ddpm", "dpmpp-2m-sde", "heun-churn", "ddim-langevin"])
def test_one_generator_per_sample_makes_samples_independent_of_the_batch(case):
    name, options = CASES[case]
    x = start((3, 1, 8, 8, 8))
    sigmas = S.karras_sigmas(SCHEDULE, 6)

    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]
    batch = P.SAMPLERS[name](gaussian_denoiser, x.clone(), sigmas, generator=gens([7, 8, 9]), **options)
    alone = P.SAMPLERS[name](gaussian_denoiser, x[2:].clone(), sigmas, generator=gens([9]), **options)
    assert torch.equal(batch[2:], alone)
    with pytest.raises(ValueError, match="generator"):
        P.SAMPLERS[name](gaussian_denoiser, x.clone(), sigmas, **options)


def test_ancestral_step_is_the_ddpm_posterior():
    """eta = 1 reproduces q(x_s | x_t, x0) of Ho et al. 2020 eq. 7, computed in the VP picture:
    mean sqrt(ab_s) beta_t / (1 - ab_t) x0 + sqrt(alpha_t) (1 - ab_s) / (1 - ab_t) x_t, variance
    beta_tilde = (1 - ab_s) / (1 - ab_t) beta_t, with alpha_t = ab_t / ab_s and beta_t = 1 - alpha_t."""
    ab = SCHEDULE.alpha_bars()
    ab_t, ab_s = ab[1200], ab[1150]
    sigma_t, sigma_s = (float(v) for v in S.sigma_from_alpha_bar([ab_t, ab_s]))
    alpha_t = ab_t / ab_s
    beta_tilde = (1 - ab_s) / (1 - ab_t) * (1 - alpha_t)
    _, sigma_up = P.ancestral_split(sigma_t, sigma_s, eta=1.0)
    assert sigma_up * math.sqrt(ab_s) == pytest.approx(math.sqrt(beta_tilde), rel=1e-9)

    x_t = torch.tensor([1.3], dtype=torch.float64) / math.sqrt(ab_t)      # VP 1.3 in the VE picture
    steps = []
    out = P.sample_ddim(lambda x, sigma: torch.full_like(x, 0.7), x_t, [sigma_t, sigma_s, 0.0], eta=1.0,
                        s_noise=0.0, generator=torch.Generator(), callback=steps.append)
    mean = math.sqrt(ab_s) * (1 - alpha_t) / (1 - ab_t) * 0.7 + math.sqrt(alpha_t) * (1 - ab_s) / (1 - ab_t) * 1.3
    assert steps[0]["x"].item() * math.sqrt(ab_s) == pytest.approx(mean, rel=1e-9)
    assert out.item() == pytest.approx(0.7, rel=1e-12)      # the last step returns the x0 estimate


@pytest.mark.parametrize("case", ["ddim", "heun", "ddim-langevin", "dpmpp-2m-sde"])
def test_evaluation_count(case):
    name, options = CASES[case]
    calls = []

    def counting(x, sigma):
        calls.append(sigma)
        return gaussian_denoiser(x, sigma)
    P.SAMPLERS[name](counting, start((1, 1, 4, 4, 4)), S.karras_sigmas(SCHEDULE, 7),
                     generator=torch.Generator().manual_seed(0), **options)
    assert len(calls) == P.evaluations(name, 7, options.get("corrector"))


def test_bad_sigmas_are_rejected():
    for sigmas in ([1.0], [2.0, 1.0], [1.0, 2.0, 0.0], [2.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="sigmas"):
            P.sample_dpmpp_2m(gaussian_denoiser, start((1, 1, 2, 2, 2)), sigmas)
    with pytest.raises(ValueError, match="together"):
        P.sample_ddim(gaussian_denoiser, start((1, 1, 2, 2, 2)), [1.0, 0.0], known=torch.zeros(1))


def test_every_sampler_has_a_default_schedule_and_an_evaluation_count():
    """The settings module names the samplers without importing torch; the three tables agree."""
    from emulator.config import SAMPLER_SCHEDULES
    assert set(P.SAMPLERS) == set(SAMPLER_SCHEDULES) == set(P.EVALUATIONS)
    assert P.evaluations("heun", 5) == 9 and P.evaluations("dpmpp-2m", 5) == 5
