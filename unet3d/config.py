"""The U-Net's configuration: one frozen dataclass, validated at construction, and named presets.

A checkpoint stores ``UNetConfig.to_dict()`` and rebuilds the network with
``UNetConfig.from_dict(d)``; nothing else is needed to recreate the architecture.
"""
import dataclasses
import math
from dataclasses import dataclass

PADDING_MODES = ("circular", "zeros")


class ConfigError(ValueError):
    """An invalid U-Net setting: ``setting`` names the field (or ``preset``), ``problem`` says
    what is wrong. The package that turned user input into the setting maps it to its flag."""

    def __init__(self, setting, problem):
        self.setting = str(setting)
        self.problem = str(problem)
        super().__init__(f"{self.setting}: {self.problem}")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the 3D guided-diffusion U-Net (Dhariwal & Nichol 2021, arXiv:2105.05233).

    in_channels, out_channels: channels of the input x and of the output.
    channels: width of the first level; level i has width ``channels * channel_mults[i]``.
    channel_mults: one entry per resolution level; the grid is halved between levels, so the
        total down-sampling factor is ``2 ** (len(channel_mults) - 1)``.
    num_res_blocks: residual blocks per level on the encoder side (the decoder has one more).
    attention_levels: level indices (0 = full resolution) that get self-attention after each
        residual block; the middle block always has attention.
    num_heads: attention heads, used when ``head_channels`` is None.
    head_channels: channels per attention head (overrides ``num_heads``: heads = width / this).
    dropout: dropout probability inside every residual block.
    norm_groups: GroupNorm groups; must divide every level width.
    padding_mode: "circular" (periodic boxes) or "zeros", for every convolution that pads.
    embed_min_period, embed_max_period: shortest and longest period of the sinusoidal
        noise-level embedding, in units of the scalar the network is given (see embedding.py).
    gradient_checkpointing: recompute each block's activations in the backward pass.
    channels_last: keep weights and activations in torch.channels_last_3d memory format.
    """

    in_channels: int = 4
    out_channels: int = 1
    channels: int = 64
    channel_mults: tuple = (1, 2, 4)
    num_res_blocks: int = 1
    attention_levels: tuple = ()
    num_heads: int = 8
    head_channels: int | None = None
    dropout: float = 0.0
    norm_groups: int = 32
    padding_mode: str = "circular"
    embed_min_period: float = 1.0 / 16.0
    embed_max_period: float = 16.0
    gradient_checkpointing: bool = False
    channels_last: bool = False

    def __post_init__(self):
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        for name in ("in_channels", "out_channels", "channels", "num_res_blocks", "num_heads", "norm_groups"):
            _check_positive_int(name, getattr(self, name))
        if not self.channel_mults:
            raise ConfigError("channel_mults", "needs at least one level")
        for mult in self.channel_mults:
            _check_positive_int("channel_mults", mult)
        if self.head_channels is not None:
            _check_positive_int("head_channels", self.head_channels)
        self._check_widths()
        self._check_attention()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.padding_mode not in PADDING_MODES:
            raise ConfigError("padding_mode", f"must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        if not 0.0 < self.embed_min_period < self.embed_max_period < math.inf:
            raise ConfigError("embed_min_period", "need 0 < embed_min_period < embed_max_period < inf, got "
                             f"{self.embed_min_period} and {self.embed_max_period}")
        if self.channels % 2:
            raise ConfigError("channels", f"must be even (sine and cosine embedding halves), got {self.channels}")

    def _check_widths(self):
        for width in self.widths:
            if width % self.norm_groups:
                raise ConfigError("norm_groups", f"{self.norm_groups} groups do not divide the level width {width} "
                                 f"(channels {self.channels} x mults {self.channel_mults})")

    def _check_attention(self):
        for level in self.attention_levels:
            if level not in range(len(self.channel_mults)):
                raise ConfigError("attention_levels", f"level {level} does not exist; levels are "
                                 f"0..{len(self.channel_mults) - 1}")
        for width in {self.widths[level] for level in self.attention_levels} | {self.widths[-1]}:
            self.heads(width)

    @property
    def widths(self):
        """Channel width of every level, full resolution first."""
        return tuple(self.channels * mult for mult in self.channel_mults)

    @property
    def downsample_factor(self):
        """Total down-sampling factor: every spatial size must be a multiple of it."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def embed_dim(self):
        """Width of the noise-level embedding fed to every residual block (4 x channels, as ADM)."""
        return 4 * self.channels

    def heads(self, width):
        """Number of attention heads for a block of ``width`` channels (raises if it does not divide)."""
        if self.head_channels is None:
            if width % self.num_heads:
                raise ConfigError("num_heads", f"{self.num_heads} heads do not divide the attention width {width}")
            return self.num_heads
        if width % self.head_channels:
            raise ConfigError("head_channels", f"{self.head_channels} does not divide the attention width {width}")
        return width // self.head_channels

    def to_dict(self):
        """Plain dict (JSON-ready) of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Rebuild from ``to_dict()`` output (lists from JSON become tuples); unknown keys are an error."""
        return cls(**_checked_fields(cls, d))

    def replace(self, **overrides):
        """A validated copy with some fields changed; unknown field names are an error."""
        return dataclasses.replace(self, **_checked_fields(type(self), overrides))


def _checked_fields(cls, d):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(", ".join(unknown), f"unknown option(s) {unknown}; valid options: {sorted(names)}")
    return dict(d)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, f"must be a positive integer, got {value!r}")


PRESETS = {
    # The reference network (Rouhiainen et al. 2023, arXiv:2311.05217): Palette's 3D U-Net with
    # widths 64/128/256, one residual block per level, attention at the bottleneck only with 8 heads,
    # dropout 0.2, 2 input channels (noisy HR, LR): 31,511,425 parameters.
    "paper": UNetConfig(in_channels=2, out_channels=1, channels=64, channel_mults=(1, 2, 4),
                        num_res_blocks=1, num_heads=8, dropout=0.2),
    # The shipped default: the paper's layout at 3/8 of its width (24/48/96, heads of 32 channels as
    # in the paper), 4 inputs (noisy HR, LR, known values, known mask): 4,439,521 parameters.
    # benchmarks/bench_unet.py measures its throughput against the other presets.
    "small": UNetConfig(in_channels=4, out_channels=1, channels=24, channel_mults=(1, 2, 4),
                        num_res_blocks=1, head_channels=32, norm_groups=8, dropout=0.1),
    # For tests: a narrow two-level network with every part (attention, GroupNorm), quick on a CPU.
    "tiny": UNetConfig(in_channels=4, out_channels=1, channels=8, channel_mults=(1, 2),
                       num_res_blocks=1, num_heads=2, norm_groups=4, dropout=0.0),
}
