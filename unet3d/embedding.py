"""Noise-level embedding: a sinusoidal code of one continuous scalar per sample, then a 2-layer MLP.

The network is given a scalar per sample, e.g. EDM's c_noise = ln(sigma) / 4 (Karras et al. 2022,
arXiv:2206.00364, Table 1), which spans about [-4, 4] for sigma in [1e-7, 1e7] and [-1.7, 1.3]
for the reference schedule (sigma from 1e-3 to 151).

Choice of frequencies. ADM (Dhariwal & Nichol 2021) and Palette embed a timestep t in [0, 1000]
(Palette: alpha_bar in [0, 1]) with periods 2 pi * 10000^(k/half), k = 0..half-1, i.e. periods
from 2 pi to 6e4. For an input of order 1 almost all of those sinusoids barely move (a period of
6e4 over a range of 1 is a constant), so only the few fastest channels carry information. Here
the periods are geometrically spaced from ``max_period`` (default 16: twice the width of the
range [-4, 4], so the slowest sine is monotonic and the slowest (cos, sin) pair is one-to-one
over the whole range) down to ``min_period`` (default 1/16: one period per factor
exp(4/16) = 1.28 in sigma, so noise levels 1% apart in sigma still turn the fastest channels by
0.25 rad). Every channel then varies by O(1) over the useful range.
"""
import math

import torch
from torch import nn


def sinusoidal_embedding(c_noise, dim, min_period, max_period):
    """Sinusoidal code [cos(2 pi c / P_k), sin(2 pi c / P_k)] of a scalar per sample.

    c_noise: (B,) tensor, any real values. dim: even code width; half = dim / 2 periods
    P_k = max_period * (min_period / max_period)^(k / (half - 1)), k = 0..half-1 (geometric).
    Returns a float32 (B, dim) tensor: the cosines first, then the sines
    (the layout of Ho et al. 2020 / ADM ``timestep_embedding``, with these periods).
    """
    half = dim // 2
    ratio = torch.linspace(0.0, 1.0, half, device=c_noise.device, dtype=torch.float32)
    periods = max_period * (min_period / max_period) ** ratio
    phase = (2.0 * math.pi) * c_noise.to(torch.float32)[:, None] / periods[None, :]
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)


class NoiseEmbedding(nn.Module):
    """Sinusoidal code of width ``channels`` followed by Linear-SiLU-Linear to ``embed_dim``
    (ADM's ``time_embed``: channels -> 4 channels -> 4 channels). Input (B,), output (B, embed_dim).
    """

    def __init__(self, channels, embed_dim, min_period, max_period):
        super().__init__()
        self.channels = channels
        self.min_period = min_period
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(channels, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, c_noise):
        return self.mlp(sinusoidal_embedding(c_noise, self.channels, self.min_period, self.max_period))
