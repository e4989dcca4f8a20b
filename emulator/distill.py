"""Distillation of a trained diffusion model (the teacher) into a few-step student.

Consistency distillation with the teacher's ODE solved to the end (Song et al. 2023,
arXiv:2303.01469, Sec. 4, with the full teacher trajectory in place of one ODE step and the
target network; the direct regression of Luhman & Luhman 2021, arXiv:2101.02388, at several
levels). The teacher's probability-flow ODE, solved with dpmpp-2m over its own S Karras levels
sigma_0 > ... > sigma_{S-1} > 0, maps a noisy field at a level to a sample. A student of N
steps is trained at N of those levels (:func:`student_sigmas`) so that its estimate is that
sample:

    x = x0 + sigma_j eps,  x0 a training crop,  target = ODE_teacher(x, sigma_j -> 0),
    loss = mean over unknown voxels of |project(D_student(x, sigma_j)) - target|^2,

weighted uniformly in target units (Song et al. use lambda = 1), with the same projection
(physical range, LR band) and outpainting context as the teacher's sampling. With
``spectral_weight`` w > 0 a power-spectrum term is added, which ties the student's samples to the
data rather than to the teacher (whose samples carry the network's excess power at the grid
scale): with P_j the power of a crop's overdensity in the integer mode shell j of the crop,

    loss += w mean over crops and shells j >= j_LR of (ln P_j(estimate) - ln P_j(x0))^2,

j_LR the LR Nyquist in crop modes (the scales the student adds), the estimate holding x0's
voxels where they are known. The student's estimate at every level is a sample of the field, so
its power is the data's in expectation (a posterior mean's would not be: the term is refused for
diffusion models). It is the spectral regularisation of Durall, Keuper & Keuper 2020
(arXiv:2003.01826, Sec. 4: the shell-averaged power of generated images against real ones, for
the excess high-frequency power of up-convolutions) with a log-spectral distance in 3D shells. The student starts
from the teacher's weights and samples with ``emulator.samplers.sample_consistency`` (Algorithm
1 of Song et al.): its estimate at sigma_0 is a sample, noised afresh to the next level and
estimated again. Training levels cycle with the optimiser step (step mod N), so every level
gets the same number of updates and a resumed run repeats an uninterrupted one.

A student is a checkpoint whose configuration has ``distill_steps`` = N >= 1, with the teacher's
path (``init_from``) and ``teacher_steps``; generation runs it only with the consistency sampler
in at most N steps, and refuses that sampler for a diffusion model (emulator.generate).
"""
import torch

from emulator import checkpoint as ckpt
from emulator.denoiser import masked_mean
from emulator.samplers import sample_dpmpp_2m
from emulator.schedule import karras_sigmas
from sims.errors import InputError


def teacher_sigmas(config):
    """The teacher's dpmpp-2m levels of a student configuration: ``teacher_steps`` Karras levels
    of its schedule (emulator.schedule.karras_sigmas), then 0, as floats."""
    return [float(s) for s in karras_sigmas(config.schedule, config.teacher_steps)]


def student_sigmas(config, steps=None):
    """Levels of a student of ``config`` sampling in ``steps`` (default, and at most, its
    ``distill_steps`` N), then 0. The N trained levels are the teacher's levels at indices
    floor(i S / N + 1/2), i < N (S = teacher_steps; always starting at sigma_max); fewer steps
    take the trained levels at floor(i N / steps + 1/2)."""
    trained, count = teacher_sigmas(config)[:-1], config.distill_steps
    steps = count if steps is None else steps
    if not 1 <= steps <= count:
        raise InputError("steps", f"this student was distilled to sample in 1 to {count} steps, not {steps}")
    levels = [trained[int(i * len(trained) / count + 0.5)] for i in range(count)]
    return [levels[int(i * count / steps + 0.5)] for i in range(steps)] + [0.0]


def training_level(config, step):
    """Noise level [target units] trained at optimiser step ``step`` (0-based): the student's
    levels in turn."""
    levels = student_sigmas(config)[:-1]
    return levels[step % len(levels)]


class Teacher:
    """The frozen teacher of a distillation: its denoiser and its sampling levels.

    model: emulator.checkpoint.LoadedModel of the teacher. config: the student's TrainConfig.
    autocast: as for emulator.denoiser.Denoiser.
    """

    def __init__(self, model, config, autocast=None):
        self.denoiser = model.denoiser(autocast=autocast)
        self.sigmas = teacher_sigmas(config)

    def sample_from(self, x, sigma, cond, project, known, mask):
        """The teacher's dpmpp-2m solution from x at its level ``sigma`` to 0, every estimate
        through ``project`` and holding ``known`` where ``mask`` (target units, like x)."""
        start = min(range(len(self.sigmas) - 1), key=lambda i: abs(self.sigmas[i] - sigma))
        denoised = lambda x, s: project(self.denoiser(x, s, cond))
        with torch.no_grad():
            return sample_dpmpp_2m(denoised, x, self.sigmas[start:], known=known, mask=mask)


def load_teacher(config, device, autocast=None):
    """The :class:`Teacher` of a student configuration, read from ``config.init_from``; a student
    is refused (its estimates are samples, which dpmpp-2m cannot integrate)."""
    path = ckpt.find_model(config.init_from, "init_from")
    model = ckpt.load_model(path, device)
    if model.config.distill_steps:
        raise InputError("init_from", f"{path} is a distilled student; distil a diffusion model")
    return Teacher(model, config, autocast)


def shell_power(field, first_shell):
    """Power of each crop of ``field`` (B, 1, t, t, t) in its integer mode shells j = floor(|m|)
    from ``first_shell`` to the corner, (B, shells): the mean of |rfft|^2 over the shell's modes
    (Hermitian weights), mean removed. Unnormalised: only ratios between fields of one shape mean
    something."""
    t = field.shape[-1]
    spectrum = torch.fft.rfftn(field - field.mean(dim=(-3, -2, -1), keepdim=True), dim=(-3, -2, -1))
    m = torch.fft.fftfreq(t, 1.0 / t, device=field.device)
    mz = torch.fft.rfftfreq(t, 1.0 / t, device=field.device)
    shell = torch.sqrt(m[:, None, None] ** 2 + m[None, :, None] ** 2 + mz[None, None, :] ** 2).floor().long()
    weight = torch.full_like(mz, 2.0)
    weight[0] = 1.0
    if t % 2 == 0:
        weight[-1] = 1.0
    weight = torch.broadcast_to(weight[None, None, :], shell.shape).flatten()
    shells, power = int(shell.max()) + 1, (spectrum.real ** 2 + spectrum.imag ** 2).flatten(1)
    totals = power.new_zeros(len(power), shells).index_add_(1, shell.flatten(), power * weight)
    counts = weight.new_zeros(shells).index_add_(0, shell.flatten(), weight)
    return (totals / counts.clamp_min(1.0))[:, int(first_shell):]


def distillation_loss(student, teacher, x0, cond, sigma, noise, project, known_mask, spectral=None):
    """Loss of the student's estimates at level ``sigma`` (float) against the teacher's samples
    from the same noisy crops (module docstring).

    student: emulator.denoiser.Denoiser being trained. x0: (B, 1, t, t, t) training targets;
    noise: standard normal of that shape; cond: condition channels; project: map of estimates
    (emulator.formulation.Formulation.project bound to the crops); known_mask: bool, True on
    the voxels given as outpainting context (excluded from the mean). spectral: None, or
    (weight w, first shell j_LR, map of target-unit fields to overdensity) of the power-spectrum
    term (module docstring).
    """
    x = x0 + sigma * noise
    target = teacher.sample_from(x, sigma, cond, project, x0, known_mask)
    estimate = project(student(x, sigma, cond))
    loss = masked_mean((estimate - target) ** 2, ~known_mask)
    if spectral is not None:
        weight, first_shell, to_delta = spectral
        have = shell_power(to_delta(torch.where(known_mask, x0, estimate)).float(), first_shell)
        want = shell_power(to_delta(x0).float(), first_shell)
        loss = loss + weight * (torch.log(have + 1e-30) - torch.log(want + 1e-30)).square().mean()
    return loss

