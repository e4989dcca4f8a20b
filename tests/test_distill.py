"""Distillation into a few-step student (emulator.distill) and its consistency sampler."""
import math
import os

import numpy as np
import pytest
import torch

from emulator import distill
from emulator.checkpoint import load_model
from emulator.cli import main
from emulator.config import GenerationSettings, TrainConfig
from emulator.data import read_pair_box
from emulator.distill import Teacher, distillation_loss, student_sigmas, teacher_sigmas, training_level
from emulator.generate import generate_tiles, sampling_plan
from emulator.samplers import evaluations, sample_consistency
from emulator.schedule import karras_sigmas
from emulator.train import train
from sims.errors import InputError
from sims.stats import power_spectrum
from test_train import read_metrics, tiny_config, write_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def teacher_dir(data_dir, tmp_path_factory):
    """A tiny residual + band model trained briefly on the pairs: the teacher."""
    run = tmp_path_factory.mktemp("teacher")
    train(tiny_config(data_dir, steps=30, batch=4, p_mask=0.5, formulation="residual", lr_band=0.5),
          str(run), progress=False)
    return run


def test_student_levels_are_the_teachers_karras_levels():
    config = TrainConfig(init_from="teacher.pt", distill_steps=2, teacher_steps=5)
    grid = karras_sigmas(config.schedule, 5)
    assert teacher_sigmas(config) == pytest.approx(list(grid))
    # N = 2 of S = 5: indices floor(0 + 1/2) = 0 and floor(5/2 + 1/2) = 3
    assert student_sigmas(config) == pytest.approx([grid[0], grid[3], 0.0])
    assert student_sigmas(config, 1) == pytest.approx([grid[0], 0.0])
    assert student_sigmas(config)[0] == pytest.approx(config.schedule.sigma_max)
    assert [training_level(config, step) for step in range(4)] == pytest.approx([grid[0], grid[3]] * 2)
    four = config.replace(distill_steps=4)
    assert student_sigmas(four) == pytest.approx([grid[0], grid[1], grid[3], grid[4], 0.0])
    assert student_sigmas(four, 2) == pytest.approx([grid[0], grid[3], 0.0])
    with pytest.raises(InputError, match="steps: .*1 to 2 steps, not 3"):
        student_sigmas(config, 3)


def test_distillation_settings_are_checked():
    with pytest.raises(InputError, match="init_from: distillation needs its teacher"):
        TrainConfig(distill_steps=2)
    with pytest.raises(InputError, match="distill_steps: a student of 6 steps cannot learn from a teacher of 5"):
        TrainConfig(init_from="t.pt", distill_steps=6)
    with pytest.raises(InputError, match="teacher_steps"):
        TrainConfig(init_from="t.pt", distill_steps=1, teacher_steps=0)
    # configurations written before distillation are diffusion models
    stored = TrainConfig().to_dict()
    del stored["distill_steps"], stored["teacher_steps"]
    assert TrainConfig.from_stored(stored, "old").distill_steps == 0
    assert TrainConfig(init_from="t.pt", distill_steps=3).validation_settings().sampler == "consistency"


def test_the_command_line_names_the_missing_teacher(data_dir, tmp_path, capsys):
    out = tmp_path / "student"
    assert main(["train", "--data", data_dir, "--out", str(out), "--distill-steps", "2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--init-from: distillation needs its teacher" in lines[0]
    assert not out.exists()


def test_consistency_sampler_returns_the_estimate_and_keeps_the_context():
    """With an oracle whose estimate is the truth whatever its input, every step returns the truth;
    known voxels equal the context exactly; one evaluation per level; the input of the second
    level is the first estimate plus fresh noise of that level's standard deviation."""
    truth = torch.randn(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    known = torch.full_like(truth, 3.0)
    mask = torch.zeros_like(truth, dtype=torch.bool)
    mask[..., :2] = True
    inputs = []

    def oracle(x, sigma):
        inputs.append((x.clone(), sigma))
        return truth

    sigmas = [80.0, 0.5, 0.0]
    x = sigmas[0] * torch.randn(truth.shape, generator=torch.Generator().manual_seed(2))
    out = sample_consistency(oracle, x, sigmas, generator=torch.Generator().manual_seed(3), known=known, mask=mask)
    assert torch.equal(out[mask], known[mask]) and torch.equal(out[~mask], truth[~mask])
    assert len(inputs) == evaluations("consistency", 2) == 2
    second, sigma = inputs[1]
    expected = torch.where(mask, known, truth)
    assert sigma == 0.5
    assert (second - expected).std().item() == pytest.approx(0.5, rel=0.1)
    assert abs((second - expected).mean().item()) < 0.05
    # one generator per sample: a sample does not depend on its batch
    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]
    batch = sample_consistency(lambda x, sigma: 0.5 * x / sigma, x, sigmas, generator=gens([7, 8]))
    alone = sample_consistency(lambda x, sigma: 0.5 * x / sigma, x[1:], sigmas, generator=gens([8]))
    assert torch.equal(batch[1:], alone) and not torch.equal(batch[0], batch[1])


def test_a_one_step_teacher_is_its_own_one_step_student(teacher_dir):
    """With teacher_steps = 1 the teacher's dpmpp-2m sample from sigma_max is its projected
    estimate there, so a student holding the teacher's weights has zero distillation loss; with
    two teacher steps the target is a different sample and the loss is positive."""
    model = load_model(teacher_dir / "model.pt")
    config = model.config.replace(init_from="teacher", distill_steps=1, teacher_steps=1)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 1, 16, 16, 16, generator=g)
    lr = torch.randn(2, 1, 16, 16, 16, generator=g) * 0.3
    mask = torch.zeros_like(x0, dtype=torch.bool)
    mask[..., :4] = True
    cond = torch.cat([lr, torch.where(mask, x0, 0.0), mask.float()], dim=1)
    noise = torch.randn(x0.shape, generator=g)

    def project(estimate):
        return model.formulation.project(estimate, lr, model.normalization, 2.0)

    sigma = training_level(config, 0)
    with torch.no_grad():
        same = distillation_loss(model.denoiser(), Teacher(model, config), x0, cond, sigma, noise, project, mask)
        two = distillation_loss(model.denoiser(), Teacher(model, config.replace(teacher_steps=2)), x0, cond,
                                sigma, noise, project, mask)
    assert same.item() == pytest.approx(0.0, abs=1e-10)
    assert two.item() > 1e-4


def test_a_distilled_student_learns_its_teacher_and_samples_in_its_steps(data_dir, teacher_dir, tmp_path):
    """Distilled for 60 steps into 1 step, the student's loss (distance to the teacher's 3-step
    samples) falls; its checkpoint is a student that samples only with 'consistency' in one step,
    whose outpainting context is kept exactly, and the teacher refuses that sampler."""
    config = tiny_config(data_dir, steps=60, batch=4, p_mask=0.5, formulation="residual", lr_band=0.5,
                         learning_rate=2e-3, init_from=str(teacher_dir), distill_steps=1, teacher_steps=3)
    train(config, str(tmp_path), progress=False)
    losses = np.array([r["loss"] for r in read_metrics(tmp_path)])
    assert np.isfinite(losses).all() and losses[-15:].mean() < 0.7 * losses[:5].mean(), losses
    student, teacher = load_model(tmp_path / "model.pt"), load_model(teacher_dir / "model.pt")
    assert student.config.distill_steps == 1 and student.config.init_from == str(teacher_dir)
    held_out = read_pair_box(os.path.join(data_dir, "pair1.h5"))
    lr = np.stack([held_out.lr] * 2)
    known = np.stack([held_out.hr] * 2)
    mask = np.zeros(lr.shape, dtype=bool)
    mask[:, :4] = True
    out = generate_tiles(student, GenerationSettings(sampler="consistency", steps=1), lr, known, mask, [5, 6])
    assert np.isfinite(out).all() and np.array_equal(out[mask], known[mask])
    assert not np.array_equal(out[0], out[1])
    # unset sampler and steps are the student's own: the same samples
    assert np.array_equal(generate_tiles(student, GenerationSettings(), lr, known, mask, [5, 6]), out)
    with pytest.raises(InputError, match="sampler: this model is a student distilled to 1 step"):
        sampling_plan(student, GenerationSettings(sampler="dpmpp-2m", steps=1))
    with pytest.raises(InputError, match="steps: .*1 to 1 steps, not 2"):
        sampling_plan(student, GenerationSettings(sampler="consistency", steps=2))
    with pytest.raises(InputError, match="sampler: 'consistency' samples distilled students only"):
        sampling_plan(teacher, GenerationSettings(sampler="consistency", steps=1))
    # a student is no teacher: its estimates are samples, not the means dpmpp-2m integrates
    with pytest.raises(InputError, match="init_from: .*model.pt is a distilled student"):
        train(config.replace(init_from=str(tmp_path), steps=1), str(tmp_path / "again"), progress=False)
    assert not (tmp_path / "again").exists()


def test_shell_power_of_a_plane_wave_and_of_white_noise():
    """A cosine of integer wave vector (3, 4, 0) puts all its power in shell 5 (|m| = 5), amplitude
    a -> |rfft|^2 = (a t^3 / 2)^2 on its 2 full-space modes among the shell's; on a random field
    it is the project's P(k) estimator (sims.stats.power_spectrum, shells of the same integer
    bins, DC dropped) times t^6 / L^3."""
    t = 16
    x = torch.arange(t, dtype=torch.float64)
    wave = 0.3 * torch.cos(2 * math.pi * (3 * x[:, None, None] + 4 * x[None, :, None]) / t) + 0 * x[None, None, :]
    power = distill.shell_power(wave[None, None], 0)[0]
    assert int(torch.argmax(power)) == 5 and torch.count_nonzero(power > 1e-9) == 1
    index = shell_index(t)
    modes_in_shell = float(((index == 5) * hermitian(t)).sum())
    np.testing.assert_allclose(float(power[5]), 2 * (0.3 * t ** 3 / 2) ** 2 / modes_in_shell, rtol=1e-10)
    field = torch.randn((1, 1, t, t, t), generator=torch.Generator().manual_seed(0), dtype=torch.float64) ** 3
    ours = distill.shell_power(field, 3)[0].numpy()
    box = 20.0
    reference = power_spectrum(field[0, 0].numpy(), box).power[2:] * t ** 6 / box ** 3
    assert ours.shape == reference.shape == (int(index.max()) + 1 - 3,)
    np.testing.assert_allclose(ours, reference, rtol=1e-9)


def shell_index(t):
    m = np.fft.fftfreq(t, 1.0 / t)
    mz = np.fft.rfftfreq(t, 1.0 / t)
    return np.floor(np.sqrt(m[:, None, None] ** 2 + m[None, :, None] ** 2 + mz[None, None, :] ** 2)).astype(int)


def hermitian(t):
    w = np.full(t // 2 + 1, 2.0)
    w[0] = w[-1] = 1.0
    return np.broadcast_to(w, (t, t, t // 2 + 1))


def test_spectral_weight_needs_a_student():
    with pytest.raises(InputError, match="spectral_weight"):
        TrainConfig(spectral_weight=0.1)
    assert TrainConfig(spectral_weight=0.1, distill_steps=2, init_from="teacher.pt").spectral_weight == 0.1


def test_spectral_term_is_the_mean_squared_log_power_ratio():
    """A student returning c x0 (known voxels: x0) against a teacher returning zeros: the loss is
    the masked mean of (c x0)^2 plus w (ln c^2)^2 when no voxel is known, plus nothing from the
    spectral term for c = 1; with every voxel known, the estimate is x0 and the term vanishes."""
    class ZeroTeacher:
        def sample_from(self, x, sigma, cond, project, known, mask):
            return torch.zeros_like(x)

    x0 = torch.randn((2, 1, 8, 8, 8), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    noise = torch.zeros_like(x0)
    none, every = torch.zeros_like(x0, dtype=torch.bool), torch.ones_like(x0, dtype=torch.bool)
    for c in (1.0, 3.0):
        student = lambda x, sigma, cond, c=c: c * x0
        plain = distillation_loss(student, ZeroTeacher(), x0, None, 1.0, noise, lambda e: e, none)
        spectral = distillation_loss(student, ZeroTeacher(), x0, None, 1.0, noise, lambda e: e, none,
                                     (0.5, 2, lambda e: e))
        assert float(plain) == pytest.approx(float((c * x0).square().mean()))
        assert float(spectral - plain) == pytest.approx(0.5 * math.log(c ** 2) ** 2, rel=1e-6, abs=1e-7)
        known = distillation_loss(student, ZeroTeacher(), x0, None, 1.0, noise, lambda e: e, every,
                                  (0.5, 2, lambda e: e))
        assert float(known) == pytest.approx(0.0, abs=1e-12)
