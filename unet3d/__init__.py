"""A pure-torch 3D diffusion U-Net: tensors in, tensors out; no files, no schedules.

``unet3d.build(preset, **overrides)`` returns a ``UNet3D``; call it as ``model(x, noise_level)``.
"""
from unet3d.config import PRESETS, ConfigError, UNetConfig
from unet3d.unet import UNet3D

__all__ = ["build", "ConfigError", "PRESETS", "UNetConfig", "UNet3D"]


def build(preset="small", **overrides):
    """The U-Net of a named preset ('paper', 'small', 'tiny'; see config.PRESETS), with any
    UNetConfig field overridden, e.g. ``build("paper", in_channels=4, padding_mode="zeros")``."""
    if preset not in PRESETS:
        raise ConfigError("preset", f"unknown U-Net preset {preset!r}; choose one of {sorted(PRESETS)}")
    return UNet3D(PRESETS[preset].replace(**overrides))
