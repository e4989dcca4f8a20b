"""The 3D U-Net: ADM / Palette layout (Dhariwal & Nichol 2021, arXiv:2105.05233; Saharia et al.
2022, arXiv:2111.05826) ported to 3D as in Rouhiainen et al. 2023 (arXiv:2311.05217), with
periodic (circular) padding by default.

Layout, for widths w_0..w_L (L + 1 = len(channel_mults)) and n = num_res_blocks:
  input conv3 -> w_0
  encoder, level l: n ResBlocks (+ attention if l in attention_levels), then a ResBlock-down
      unless l = L; every block's output is kept as a skip connection (the input conv's too)
  middle: ResBlock - Attention - ResBlock at w_L
  decoder, level l = L..0: n + 1 ResBlocks, each fed [h, skip] concatenated on channels
      (+ attention), the last one followed by a ResBlock-up unless l = 0
  output: GroupNorm - SiLU - zero-initialised conv3 -> out_channels
"""
import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from unet3d.attention import AttentionBlock
from unet3d.blocks import Conv3d, EmbedSequential, GroupNorm32, ResBlock, zero_init
from unet3d.embedding import NoiseEmbedding


class UNet3D(nn.Module):
    """Noise-conditioned 3D U-Net: ``model(x, noise_level)``.

    x: (B, in_channels, D, H, W) with D, H, W multiples of ``model.downsample_factor``;
    noise_level: (B,) one scalar per sample (e.g. c_noise = ln(sigma) / 4).
    Returns (B, out_channels, D, H, W). The output is exactly zero at initialisation.
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.downsample_factor = config.downsample_factor
        self.embed = NoiseEmbedding(config.channels, config.embed_dim, config.embed_min_period, config.embed_max_period)
        self.input_conv = _conv(config)(config.in_channels, config.widths[0], 3)
        self.encoder, skip_channels = _encoder(config)
        self.middle = EmbedSequential([_res(config, config.widths[-1], config.widths[-1]),
                                       _attention(config, config.widths[-1]),
                                       _res(config, config.widths[-1], config.widths[-1])])
        self.decoder = _decoder(config, skip_channels)
        self.out = nn.Sequential(GroupNorm32(config.norm_groups, config.widths[0]), nn.SiLU(),
                                 zero_init(_conv(config)(config.widths[0], config.out_channels, 3)))
        if config.channels_last:
            self.to(memory_format=torch.channels_last_3d)

    def forward(self, x, noise_level):
        self._check_input(x, noise_level)
        emb = self.embed(noise_level)
        h = self.input_conv(x)
        skips = [h]
        for block in self.encoder:
            h = self._run(block, h, emb)
            skips.append(h)
        h = self._run(self.middle, h, emb)
        for block in self.decoder:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

    def _run(self, block, h, emb):
        if self.config.gradient_checkpointing:
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def _check_input(self, x, noise_level):
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x: expected shape (batch, {cfg.in_channels}, D, H, W), got {tuple(x.shape)}")
        if any(n % self.downsample_factor for n in x.shape[2:]):
            raise ValueError(f"x: spatial shape {tuple(x.shape[2:])} is not divisible by the U-Net's "
                             f"down-sampling factor {self.downsample_factor} (2^(levels-1))")
        if noise_level.shape != (x.shape[0],):
            raise ValueError(f"noise_level: expected shape ({x.shape[0]},), one value per sample, "
                             f"got {tuple(noise_level.shape)}")


def _conv(config):
    """Factory (in_channels, out_channels, kernel_size) -> Conv3d with the configured padding and
    memory format."""
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format
    return functools.partial(Conv3d, padding_mode=config.padding_mode, memory_format=memory_format)


def _res(config, in_channels, out_channels, resample=None):
    return ResBlock(in_channels, out_channels, config.embed_dim, config.dropout, config.norm_groups,
                    _conv(config), resample)


def _attention(config, channels):
    return AttentionBlock(channels, config.heads(channels), config.norm_groups)


def _unit(config, level, in_channels, width):
    """One ResBlock to ``width`` channels, followed by attention if ``level`` has it."""
    blocks = [_res(config, in_channels, width)]
    if level in config.attention_levels:
        blocks.append(_attention(config, width))
    return blocks


def _encoder(config):
    """Encoder units and the channel count of every skip connection, in order of creation."""
    units, skip_channels = nn.ModuleList(), [config.widths[0]]
    channels = config.widths[0]
    for level, width in enumerate(config.widths):
        for _ in range(config.num_res_blocks):
            units.append(EmbedSequential(_unit(config, level, channels, width)))
            channels = width
            skip_channels.append(channels)
        if level < len(config.widths) - 1:
            units.append(EmbedSequential([_res(config, channels, channels, "down")]))
            skip_channels.append(channels)
    return units, skip_channels


def _decoder(config, skip_channels):
    """Decoder units, consuming ``skip_channels`` (a copy) from the end."""
    units, skips = nn.ModuleList(), list(skip_channels)
    channels = config.widths[-1]
    for level in reversed(range(len(config.widths))):
        width = config.widths[level]
        for i in range(config.num_res_blocks + 1):
            blocks = _unit(config, level, channels + skips.pop(), width)
            channels = width
            if level > 0 and i == config.num_res_blocks:
                blocks.append(_res(config, channels, channels, "up"))
            units.append(EmbedSequential(blocks))
    return units
