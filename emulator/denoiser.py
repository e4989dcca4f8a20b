"""The denoiser D(x, sigma) around the network, and the training loss.

Samplers work in the variance-exploding (VE) picture x = x0 + sigma eps and need only
D(x, sigma) ~ E[x0 | x] (Karras et al. 2022, arXiv:2206.00364, "EDM", Sec. 2 and Table 1):

    D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

where F is the network. The network is a VP (DDPM) network: it sees the variance-preserving
input x_vp = x / sqrt(1 + sigma^2), i.e. c_in = 1 / sqrt(1 + sigma^2), whatever it predicts.

    eps prediction (Ho et al. 2020):          F ~ eps,  c_skip = 1,  c_out = -sigma
    v prediction (Salimans & Ho 2022, arXiv:2202.00512, Sec. 4 and App. D), with
        alpha_bar = 1 / (1 + sigma^2), v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0:
                                              c_skip = 1 / (1 + sigma^2), c_out = -sigma / sqrt(1 + sigma^2)

(the k-diffusion VDenoiser with sigma_data = 1, the unit variance our normalisation gives).

Noise level: the network receives c_noise = ln(sigma) / 4 (EDM Table 1), a continuous scalar
spanning [-1.7, 1.3] for the reference schedule (sigma 1e-3 .. 151), the range unet3d's
sinusoidal embedding is tuned for. The reference fed continuous alpha_bar instead; ln(sigma)
resolves the low-noise end, where alpha_bar = 1 - sigma^2 is nearly constant.

Conditioning: the network input is [noisy HR, cond channels] along the channel axis, with
``cond`` = [LR, known * mask, mask] (:func:`condition_channels`), or just [LR] for a network
with 2 input channels (the reference layout; outpainting context then enters only through the
sampler's replacement of known voxels).
"""
import contextlib

import torch

from emulator.config import PREDICTIONS


def condition_channels(in_channels, lr, known, mask):
    """Condition tensor (B, C_cond, D, H, W) of a network with ``in_channels`` inputs from
    normalised (B, 1, D, H, W) tensors: [lr] for 2 (the reference layout, which cannot see
    outpainting context), else [lr, known * mask, mask] with the mask as 0/1 in lr's dtype
    (known values are zeroed where unknown, so the channel carries no HR information about the
    voxels to generate). Used by training and generation alike.
    """
    if in_channels == 2:
        return lr
    mask = mask.to(lr.dtype)
    return torch.cat([lr, known * mask, mask], dim=1)


class Denoiser:
    """D(x, sigma, cond) -> x0 estimate, around ``net(x, noise_level)`` (see the module docstring).

    net: module mapping (B, 1 + C_cond, D, H, W) and c_noise (B,) to (B, 1, D, H, W).
    schedule: the training schedule (emulator.schedule); samplers start at its sigma_max.
    prediction: "eps" or "v", what the network was trained to output.
    autocast: None, or a dtype (e.g. torch.bfloat16) for the network pass under torch.autocast;
        the preconditioning arithmetic stays in x's dtype.
    """

    def __init__(self, net, schedule, prediction="eps", autocast=None):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.net = net
        self.schedule = schedule
        self.prediction = prediction
        self.autocast = autocast

    def scalings(self, sigma):
        """(c_skip, c_out, c_in) for a (B,) sigma tensor, each shaped (B, 1, 1, 1, 1)."""
        s = sigma.reshape(-1, 1, 1, 1, 1)
        c_in = torch.rsqrt(1.0 + s**2)
        if self.prediction == "eps":
            return torch.ones_like(s), -s, c_in
        return 1.0 / (1.0 + s**2), -s * c_in, c_in

    def network_output(self, x, sigma, cond=None):
        """Raw network output F(c_in x, ln(sigma) / 4) in x's dtype; sigma (B,) tensor, all > 0."""
        _, _, c_in = self.scalings(sigma)
        inputs = c_in * x if cond is None else torch.cat([c_in * x, cond.to(x.dtype)], dim=1)
        c_noise = torch.log(sigma) / 4.0
        autocast = contextlib.nullcontext() if self.autocast is None else \
            torch.autocast(x.device.type, dtype=self.autocast)
        with autocast:
            out = self.net(inputs, c_noise)
        return out.to(x.dtype)

    def __call__(self, x, sigma, cond=None):
        """x0 estimate, shape and dtype of x (B, 1, D, H, W); sigma a float or (B,) tensor > 0."""
        sigma = _per_sample(sigma, x)
        c_skip, c_out, _ = self.scalings(sigma)
        return c_skip * x + c_out * self.network_output(x, sigma, cond)


def _per_sample(sigma, x):
    """sigma (float, 0-d or (B,) tensor) -> (B,) tensor on x's device and dtype, checked > 0."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or shaped ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma


def denoising_loss(denoiser, x0, cond, sigma, noise, weight_mask=None, project=None):
    """Training loss: mean squared error of the network output against its target.

    x = x0 + sigma * noise; the target is what makes D exact, (x0 - c_skip x) / c_out
    (EDM eq. 8 with lambda(sigma) = 1 / c_out^2), which is ``noise`` for eps prediction
    (Ho et al. 2020 eq. 14, the reference's loss) and v for v prediction.
    project: None, or a map of x0 estimates (emulator.formulation.Formulation.project) that
    sampling applies too: the loss is then |project(D(x, sigma)) - project(x0)|^2 / c_out^2, the
    same weighting in x0 units, so the network is trained through the projection it is sampled
    with. The target is projected as well: the truth does not hold the constraint exactly (its
    smoothed density is not the LR's), and |project(D) - x0| would keep a floor that 1 / c_out^2
    blows up at small sigma; project is smooth, so the projected difference vanishes with D - x0.
    x0, noise: (B, 1, D, H, W); cond: (B, C_cond, D, H, W) or None; sigma: (B,) tensor > 0.
    weight_mask: None, or weights >= 0 (0/1 or bool: the unknown voxels when training for
    outpainting) broadcastable to x0: the loss is the mean weighted by them.
    """
    sigma = _per_sample(sigma, x0)
    x = x0 + sigma.reshape(-1, 1, 1, 1, 1) * noise
    c_skip, c_out, _ = denoiser.scalings(sigma)
    if project is None:
        sq = (denoiser.network_output(x, sigma, cond) - (x0 - c_skip * x) / c_out) ** 2
    else:
        with torch.no_grad():
            target = project(x0)
        sq = ((project(denoiser(x, sigma, cond)) - target) / c_out) ** 2
    return masked_mean(sq, weight_mask)


def masked_mean(values, weight_mask=None):
    """Mean of ``values`` weighted by ``weight_mask`` (weights >= 0; 0/1 or bool: the mean over its
    nonzero voxels; broadcastable); the plain mean without a mask, 0 when the mask is empty."""
    if weight_mask is None:
        return values.mean()
    weight = torch.broadcast_to(weight_mask.to(values.dtype), values.shape)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)

