"""What the diffusion model generates, and how its estimates are tied to the LR.

Two formulations, chosen at training time and stored in every checkpoint:

- ``palette``: the target is the normalised HR field y_HR (Saharia et al. 2022, "Palette",
  arXiv:2111.05826; the reference work, Rouhiainen et al. 2023 arXiv:2311.05217). Sampling starts
  from pure noise and the LR enters only as a condition channel, so the network has to relearn
  every scale the LR already holds.
- ``residual``: the target is the standardised residual between the normalised HR and the
  normalised LR on the same grid,

      x0 = (y_HR - y_LR - shift) / scale,        y_HR = y_LR + shift + scale x0,

  with ``shift`` and ``scale`` the mean and standard deviation of y_HR - y_LR over the training
  pairs (so x0 has zero mean and unit variance, the sigma_data = 1 of the denoiser). This is the
  residual diffusion of CorrDiff (Mardani et al. 2023, arXiv:2309.15214, eq. 4) with the LR
  itself as the base: an x0 estimate of zero returns the LR, so what the LR knows is where
  every estimate starts, not something to relearn.

Either can add **band consistency** (``lr_band`` = f > 0): every x0 estimate, in training and in
sampling alike, takes its large scales from the LR. Mass is conserved and both runs share their
initial conditions, so the density smoothed on scales the LR resolves is the LR's. With
rho = 1 + delta and G a Gaussian of half power at k_f = f times the LR Nyquist,

    rho_0 <- rho_0 * (G * rho_LR) / (G * rho_0),

the local form of mass conservation (on scales above 1 / k_f; k = 0 is exactly the per-tile mass
rescaling of emulator.generate.conserve_mass). A multiplicative, positive kernel keeps rho >= 0;
an additive band replacement (delta_0 + lowpass(delta_LR - delta_0), the projection of the
inverse-problem samplers, Chung et al. 2022 arXiv:2206.00941) rings below delta = -1 on these
heavy-tailed fields and empties most cells once clamped. The network is trained through the
projection, so sampling and training agree.

Every estimate is also clamped to the physical range [normalised delta = -1, largest normalised
HR training value] (the reference clips to its normalisation's range), so no sample can leave it.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from emulator.config import FORMULATIONS

SMOOTH_FLOOR = 1e-3
"""Least smoothed density [mean] divided by in the band projection (an empty region stays empty)."""


def gaussian_smooth(field, k_half):
    """``field`` (..., n, n, n) smoothed by a Gaussian whose transfer exp(-m^2 R^2 / 2) is 1/2 at
    |m| = k_half (R = sqrt(2 ln 2) / k_half), m the integer mode vector of the periodic cube."""
    n = field.shape[-1]
    m = torch.fft.fftfreq(n, 1.0 / n, device=field.device, dtype=field.dtype)
    mz = torch.fft.rfftfreq(n, 1.0 / n, device=field.device, dtype=field.dtype)
    m2 = m[:, None, None] ** 2 + m[None, :, None] ** 2 + mz[None, None, :] ** 2
    window = torch.exp(-m2 * (math.log(2.0) / k_half**2))
    spectrum = torch.fft.rfftn(field, dim=(-3, -2, -1))
    return torch.fft.irfftn(spectrum * window, s=field.shape[-3:], dim=(-3, -2, -1))


def band_modes(lr_band, tile, spacing, lr_spacing):
    """Band edge in modes of a ``tile``-voxel cube for the fraction ``lr_band`` of the LR Nyquist
    pi / lr_spacing: k = 2 pi m / (tile spacing) gives m = f tile spacing / (2 lr_spacing)."""
    return lr_band * tile * spacing / (2.0 * lr_spacing)


@dataclass(frozen=True)
class Formulation:
    """The target transform and band of a model (see the module docstring).

    kind: "palette" or "residual". shift, scale: residual statistics in normalised units (0 and 1
    for palette). lr_band: fraction of the LR Nyquist taken from the LR (0: none).
    """

    kind: str = "palette"
    shift: float = 0.0
    scale: float = 1.0
    lr_band: float = 0.0

    def __post_init__(self):
        if self.kind not in FORMULATIONS:
            raise ValueError(f"formulation must be one of {FORMULATIONS}, got {self.kind!r}")
        if not (math.isfinite(self.shift) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError("residual shift and scale must be finite, scale > 0; got "
                             f"{self.shift}, {self.scale}")
        if self.kind == "palette" and (self.shift, self.scale) != (0.0, 1.0):
            raise ValueError("a palette formulation has no residual statistics")
        if not 0.0 <= self.lr_band <= 1.0:
            raise ValueError(f"lr_band must be a fraction of the LR Nyquist in [0, 1], got {self.lr_band}")

    def target(self, y_hr, y_lr):
        """Normalised HR (and LR) -> what the network generates (arrays or tensors)."""
        if self.kind == "palette":
            return y_hr
        return (y_hr - y_lr - self.shift) / self.scale

    def field(self, x0, y_lr):
        """Inverse of :meth:`target`: generated x0 -> normalised HR field."""
        if self.kind == "palette":
            return x0
        return y_lr + self.shift + self.scale * x0

    def project(self, x0, y_lr, normalization, k_cut=None):
        """An x0 estimate (target units, (B, 1, t, t, t) tensor) clamped to the physical range and,
        when ``k_cut`` is given, holding the LR's density smoothed at the band edge ``k_cut``
        [tile modes] (module docstring). y_lr: the normalised LR of the same tiles.

        Approximate: the Gaussian is periodic over a tile that is not, so it mixes opposite faces
        (the same in training and sampling).
        """
        lower, upper = normalization.lower, normalization.upper
        y = self.field(x0, y_lr).clamp(lower, upper)
        if k_cut is not None:
            rho = 1.0 + normalization.inverse(y).clamp_min(-1.0)
            want = gaussian_smooth(1.0 + normalization.inverse(y_lr).clamp_min(-1.0), k_cut)
            have = gaussian_smooth(rho, k_cut)
            rho = rho * want.clamp_min(0.0) / have.clamp_min(SMOOTH_FLOOR)
            y = normalization.forward(rho - 1.0).clamp(lower, upper)
        return self.target(y, y_lr)

    def constrained(self, denoiser, y_lr, normalization, k_cut=None):
        """The denoiser(x, sigma) whose every estimate goes through :meth:`project`."""
        def denoised(x, sigma):
            return self.project(denoiser(x, sigma), y_lr, normalization, k_cut)
        return denoised

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """From :meth:`to_dict` output; None (a checkpoint older than formulations) is palette."""
        return cls() if d is None else cls(kind=str(d["kind"]), shift=float(d["shift"]),
                                           scale=float(d["scale"]), lr_band=float(d["lr_band"]))


def fit_formulation(kind, lr_band, pairs):
    """A :class:`Formulation` of ``kind`` whose residual statistics are fitted on ``pairs`` of
    normalised (y_lr, y_hr) arrays: mean and standard deviation of y_hr - y_lr over all voxels
    (float64 sums, voxel-weighted)."""
    if kind == "palette":
        return Formulation(kind, lr_band=lr_band)
    count, total, squares = 0, 0.0, 0.0
    for y_lr, y_hr in pairs:
        d = np.asarray(y_hr, dtype=np.float64) - np.asarray(y_lr, dtype=np.float64)
        count, total = count + d.size, total + float(d.sum())
    mean = total / count
    for y_lr, y_hr in pairs:
        d = np.asarray(y_hr, dtype=np.float64) - np.asarray(y_lr, dtype=np.float64) - mean
        squares += float(np.square(d).sum())
    return Formulation(kind, shift=mean, scale=math.sqrt(squares / count), lr_band=lr_band)
