"""Building blocks of the 3D guided-diffusion U-Net (Dhariwal & Nichol 2021, arXiv:2105.05233,
code ``guided_diffusion/unet.py``): fp32 GroupNorm, padded 3D convolutions, the residual block
with scale-shift (FiLM) noise conditioning and BigGAN-style resampling inside the block.

Tensors are shaped (batch, channel, x, y, z); the noise embedding is (batch, embed_dim).
"""
import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (safe under bf16 autocast), and
    returned in the input dtype (ADM's ``GroupNorm32``)."""

    def forward(self, x):
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


class Conv3d(nn.Conv3d):
    """Conv3d with 'same' padding (odd kernel), 'circular' or 'zeros', that runs on its input made
    contiguous in ``memory_format``.

    Circular padding is an explicit F.pad; F.pad (and CPU average pooling) return NCDHW tensors
    whatever their input, which would silently undo torch.channels_last_3d, hence the explicit
    format (a no-op when the input already has it). Zero padding is left to the convolution.
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding_mode="circular",
                 memory_format=torch.contiguous_format):
        half = kernel_size // 2
        circular = padding_mode == "circular" and half > 0
        super().__init__(in_channels, out_channels, kernel_size, padding=0 if circular else half)
        self.circular_padding = (half,) * 6 if circular else None
        self.memory_format = memory_format

    def forward(self, x):
        if self.circular_padding is not None:
            x = F.pad(x, self.circular_padding, mode="circular")
        return super().forward(x.contiguous(memory_format=self.memory_format))

    def extra_repr(self):
        return super().extra_repr() + f", circular_padding={self.circular_padding}"


def zero_init(module):
    """Zero every parameter of ``module`` in place and return it: the block it closes starts as the
    identity (residual) or as zero output (ADM's ``zero_module``)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def resampler(resample):
    """Parameter-free BigGAN resampling: 'down' = 2x2x2 average pool, 'up' = nearest-neighbour 2x,
    None = identity (ADM's Downsample/Upsample with use_conv=False)."""
    if resample == "down":
        return nn.AvgPool3d(2)
    if resample == "up":
        return nn.Upsample(scale_factor=2, mode="nearest")
    if resample is None:
        return nn.Identity()
    raise ValueError(f"resample must be 'down', 'up' or None, got {resample!r}")


class ResBlock(nn.Module):
    """Residual block with FiLM noise conditioning (ADM ``ResBlock``, use_scale_shift_norm=True):

        h = conv3(resample(SiLU(GN(x))))
        h = conv3_0(dropout(SiLU(GN(h) * (1 + scale) + shift))),  (scale, shift) = Linear(SiLU(emb))
        out = skip(resample(x)) + h

    conv3_0 is zero-initialised, so the block starts as skip(resample(x)). skip is the identity
    when the channel count is unchanged and a 1x1x1 convolution otherwise. resample is 'down'
    (BigGAN down block), 'up' (BigGAN up block) or None; it halves or doubles every spatial size.
    conv: factory (in_channels, out_channels, kernel_size) -> module, e.g. a partial of Conv3d
    fixing the padding mode and memory format.
    """

    def __init__(self, in_channels, out_channels, embed_dim, dropout, norm_groups, conv, resample=None):
        super().__init__()
        self.in_norm = GroupNorm32(norm_groups, in_channels)
        self.resample = resampler(resample)
        self.in_conv = conv(in_channels, out_channels, 3)
        self.embed = nn.Linear(embed_dim, 2 * out_channels)
        self.out_norm = GroupNorm32(norm_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero_init(conv(out_channels, out_channels, 3))
        self.skip = nn.Identity() if in_channels == out_channels else conv(in_channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_conv(self.resample(F.silu(self.in_norm(x))))
        scale, shift = self.embed(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        h = self.out_conv(self.dropout(F.silu(h)))
        return self.skip(self.resample(x)) + h


class EmbedSequential(nn.ModuleList):
    """A sequence of blocks that all take (x, emb) and return x: one unit of the U-Net, the
    granularity of gradient checkpointing and of skip connections."""

    def forward(self, x, emb):
        for block in self:
            x = block(x, emb)
        return x
