"""Invertible field normalisation between overdensity and the network's working variable.

    y = (log(1 + delta + eps) - shift) / scale,        delta = exp(shift + scale * y) - 1 - eps

A log transform tames the heavy positive tail of the density (the reference, Rouhiainen et al.
2023 arXiv:2311.05217 Sec. III, uses log1p followed by a squashing). ``eps`` keeps it finite where
a field is empty (delta = -1): an LR run painted on a grid finer than its particle lattice has
many such cells, and so do HR voids. The default eps = 0.1 [mean density] maps empty cells to
log(0.1) = -2.3, a few standard deviations below typical HR voids (delta ~ -0.8 -> -1.1), so
they are not extreme outliers, while still resolving underdensities down to delta ~ -0.9.

One transform serves both channels: ``shift`` and ``scale`` are the mean and standard deviation
of log(1 + delta + eps) over the HR training fields, so the diffusion target has zero mean and
unit variance (sigma_data = 1). The LR condition goes through the same transform; its different
offset (sparser painting) is absorbed by the network's first convolution. ``lower`` (delta = -1)
and ``upper`` (the largest normalised HR training value) give the physical range for optional
clipping of x0 estimates when sampling. ``forward``/``inverse`` accept numpy arrays or torch
tensors and keep their type and dtype; ``inverse`` is exact, it does not clip values below -1.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from emulator.config import DEFAULT_NORM_EPS


def _log(a):
    return torch.log(a) if torch.is_tensor(a) else np.log(a)


def _exp(a):
    return torch.exp(a) if torch.is_tensor(a) else np.exp(a)


@dataclass(frozen=True)
class Normalization:
    """``y = (log(1 + delta + eps) - shift) / scale``; see the module docstring."""

    shift: float
    scale: float
    eps: float = DEFAULT_NORM_EPS
    upper: float = math.inf

    def __post_init__(self):
        for name in ("shift", "scale", "eps"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"normalisation {name} must be finite, got {getattr(self, name)}")
        if self.scale <= 0:
            raise ValueError(f"normalisation scale must be positive, got {self.scale}")
        if self.eps <= 0:
            raise ValueError(f"normalisation eps must be positive (log of empty cells), got {self.eps}")

    def forward(self, delta):
        """Overdensity (array or tensor, delta >= -1) -> normalised field of the same type/dtype."""
        return (_log(1.0 + self.eps + delta) - self.shift) / self.scale

    def inverse(self, y):
        """Normalised field -> overdensity (exact inverse of :meth:`forward`)."""
        return _exp(self.shift + self.scale * y) - (1.0 + self.eps)

    @property
    def lower(self):
        """Normalised value of an empty cell (delta = -1): the physical lower bound."""
        return (math.log(self.eps) - self.shift) / self.scale

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: float(v) for k, v in d.items()})


def fit_normalization(hr_fields, eps=DEFAULT_NORM_EPS):
    """Fit ``shift``, ``scale`` (mean, std of log(1 + delta + eps)) and ``upper`` on HR fields.

    ``hr_fields``: iterable of overdensity arrays (any shapes); moments are voxel-weighted over all
    of them, in float64, combined field by field with the pairwise update of Chan, Golub &
    LeVeque (1979) so no sum of squares cancels.
    """
    count, mean, m2, largest = 0, 0.0, 0.0, -math.inf
    for delta in hr_fields:
        u = np.log(1.0 + eps + np.asarray(delta, dtype=np.float64))
        n_b, mean_b = u.size, float(u.mean())
        m2_b = float(np.square(u - mean_b).sum())
        total = count + n_b
        diff = mean_b - mean
        mean, m2 = mean + diff * n_b / total, m2 + m2_b + diff**2 * count * n_b / total
        count, largest = total, max(largest, float(u.max()))
    if count == 0:
        raise ValueError("cannot fit a normalisation on no data")
    scale = math.sqrt(m2 / count)
    if scale == 0:
        raise ValueError("cannot fit a normalisation on constant HR fields")
    return Normalization(shift=mean, scale=scale, eps=eps, upper=(largest - mean) / scale)
