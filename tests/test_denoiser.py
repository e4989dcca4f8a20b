"""Denoiser algebra, preconditioning and loss (emulator.denoiser)."""

import pytest
import torch

from emulator.denoiser import Denoiser, condition_channels, denoising_loss
from emulator.schedule import LinearSchedule

SCHEDULE = LinearSchedule()


class Oracle(torch.nn.Module):
    """A network that knows x0 and returns the exact eps or v, computed in the VP picture from its
    inputs alone: sigma = exp(4 c_noise), alpha_bar = 1 / (1 + sigma^2), x_vp = input channel 0,
    eps = (x_vp - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar), v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0
    (Salimans & Ho 2022 Sec. 4). It also records the condition channels it was given."""

    def __init__(self, x0, prediction):
        super().__init__()
        self.x0, self.prediction, self.seen = x0, prediction, []

    def forward(self, inputs, c_noise):
        self.seen.append(inputs[:, 1:])
        ab = (1.0 / (1.0 + torch.exp(4.0 * c_noise) ** 2)).reshape(-1, 1, 1, 1, 1)
        eps = (inputs[:, :1] - ab.sqrt() * self.x0) / (1.0 - ab).sqrt()
        return eps if self.prediction == "eps" else ab.sqrt() * eps - (1.0 - ab).sqrt() * self.x0


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_denoiser_with_the_true_eps_or_v_returns_x0(prediction):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn((4, 1, 4, 4, 4), generator=g, dtype=torch.float64)
    cond = torch.randn((4, 3, 4, 4, 4), generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.5, 3.0, 150.0], dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    net = Oracle(x0, prediction)
    D = Denoiser(net, SCHEDULE, prediction)
    x = x0 + sigma.reshape(-1, 1, 1, 1, 1) * noise
    torch.testing.assert_close(D(x, sigma, cond), x0, rtol=1e-9, atol=1e-9)
    assert torch.equal(net.seen[-1], cond)
    assert denoising_loss(D, x0, cond, sigma, noise).item() < 1e-18


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_target_and_masked_mean(prediction):
    """With a network that outputs zero the loss is the mean square of the target: eps for eps
    prediction (Ho et al. 2020 eq. 14), v = (eps - sigma x0) / sqrt(1 + sigma^2) for v."""
    g = torch.Generator().manual_seed(1)
    x0, noise = (torch.randn((2, 1, 4, 4, 4), generator=g, dtype=torch.float64) for _ in range(2))
    sigma = torch.tensor([0.3, 20.0], dtype=torch.float64)
    s = sigma.reshape(-1, 1, 1, 1, 1)
    target = noise if prediction == "eps" else (noise - s * x0) / torch.sqrt(1 + s**2)
    D = Denoiser(lambda inputs, c_noise: torch.zeros_like(inputs[:, :1]), SCHEDULE, prediction)
    torch.testing.assert_close(denoising_loss(D, x0, None, sigma, noise), (target**2).mean())
    weight = torch.rand(x0.shape, generator=g) < 0.3
    masked = denoising_loss(D, x0, None, sigma, noise, weight_mask=weight)
    torch.testing.assert_close(masked, (target[weight] ** 2).mean())


def test_denoiser_validation():
    D = Denoiser(lambda inputs, c_noise: 100.0 * torch.ones_like(inputs[:, :1]), SCHEDULE)
    with pytest.raises(ValueError, match="prediction"):
        Denoiser(None, SCHEDULE, "x0")
    with pytest.raises(ValueError, match="sigma"):
        D(torch.zeros((2, 1, 2, 2, 2)), torch.ones(3))
    lr, known, mask = torch.ones((1, 1, 2, 2, 2)), torch.full((1, 1, 2, 2, 2), 3.0), torch.zeros((1, 1, 2, 2, 2), dtype=bool)
    mask[..., 0] = True
    assert condition_channels(2, lr, known, mask) is lr
    four = condition_channels(4, lr, known, mask)
    assert four.shape == (1, 3, 2, 2, 2) and four[:, 1].sum() == 3.0 * 4 and four[:, 2].sum() == 4
