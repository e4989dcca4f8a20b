"""Checkpoints: atomic files of state dicts plus the configuration that rebuilds everything.

A training checkpoint (``kind = "training"``) holds the network weights, the EMA weights, the
optimiser state, the step, the RNG states (torch CPU and CUDA, numpy, python; the data sampler's
state is the step itself, see emulator.data) and the metadata below. An inference checkpoint
(``kind = "inference"``, :func:`save_inference_model`) holds only the EMA weights in float16 and
the metadata: small enough to ship with the package.

Metadata: the resolved ``TrainConfig`` (U-Net preset + overrides, tile and core sizes, schedule,
prediction type, ...), the resolved ``UNetConfig``, the HR grid spacing ``spacing`` = box_size / n
[Mpc/h] of the training data, the LR's resolution ``lr_spacing`` = box_size / (LR particles per
side, or LR grid where unrecorded) [Mpc/h], the normalisation, the formulation (what the network
generates, emulator.formulation), the LR transfer function T(k) of the training pairs (the
"linear emulator" baseline; None in older checkpoints), the corner transfer and the void map of
the model's own output (outpaint.calibrate; None until fitted). A checkpoint older than formulations is a
palette model; one whose formulation disagrees with its configuration is refused.
No pickled code: everything is tensors and plain Python values, read with ``weights_only=True``.
"""
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import unet3d
from emulator.config import DEFAULT_MODEL, MODEL_FILE, TrainConfig
from emulator.denoiser import Denoiser
from emulator.formulation import Formulation
from emulator.normalization import Normalization
from sims.errors import InputError
from sims.outputs import atomic_path

FORMAT = "cosmo-sr-emulator checkpoint"
VERSION = 1


def checked_points(stored, name, keys, rule, valid, source):
    """``stored`` as it is when it is None, or a dict of two point lists ``keys`` (finite, of one
    length, at least 2, the first increasing) for which ``valid(first, second)`` holds; else
    InputError naming ``source`` and saying the points must be ``rule``."""
    if stored is None:
        return None
    try:
        first, second = (np.asarray(stored[key], dtype=float) for key in keys)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(source, f"{name} must hold lists {keys[0]!r} and {keys[1]!r} ({err})") from err
    if not (first.ndim == 1 and first.shape == second.shape and first.size >= 2
            and np.all(np.isfinite(first)) and np.all(np.isfinite(second)) and np.all(np.diff(first) > 0)
            and valid(first, second)):
        raise InputError(source, f"{name} points must be {rule}, of one length")
    return stored


def checked_void_map(void_map, source):
    """A checkpoint's void map (None, or a dict with points "x" increasing and "y" non-decreasing,
    finite overdensities >= -1 of one length), or InputError naming ``source``."""
    return checked_points(void_map, "void_map", ("x", "y"),
                          "finite overdensities >= -1, x increasing and y non-decreasing",
                          lambda x, y: np.all(np.diff(y) >= 0) and x[0] >= -1 and y[0] >= -1, source)


def checked_corner_transfer(transfer, source):
    """A checkpoint's corner transfer (None, or a dict with points "k" [h/Mpc], positive and
    increasing, and "t" in [0, 1], finite, of one length; sims.stats.corner_transfer), or
    InputError naming ``source``."""
    return checked_points(transfer, "corner_transfer", ("k", "t"),
                          "wavenumbers > 0, increasing, with values in [0, 1]",
                          lambda k, t: k[0] > 0 and np.all((t >= 0) & (t <= 1)), source)


@dataclass(frozen=True)
class ModelMeta:
    """What a checkpoint carries besides weights: config, grid spacings [Mpc/h], normalisation,
    formulation, LR transfer function ({"k": [h/Mpc], "t": [...]} or None), corner transfer (the
    same form, sims.stats.corner_transfer, or None), void map ({"x": [...], "y": [...]}
    overdensities, sims.stats.fit_void_map, or None)."""

    config: TrainConfig
    spacing: float
    lr_spacing: float
    normalization: Normalization
    formulation: Formulation | None = None
    lr_transfer: dict | None = None
    void_map: dict | None = None
    corner_transfer: dict | None = None

    def __post_init__(self):
        c = self.config
        if self.formulation is None:   # unfitted: residual statistics 0 and 1
            object.__setattr__(self, "formulation", Formulation(c.formulation, lr_band=c.lr_band))
        f = self.formulation
        if (f.kind, f.lr_band) != (c.formulation, c.lr_band):
            raise ValueError(f"formulation {f.kind} (band {f.lr_band}) disagrees with the configuration's "
                             f"{c.formulation} (band {c.lr_band})")

    def to_dict(self, net_config):
        return {"format": FORMAT, "version": VERSION, "config": self.config.to_dict(),
                "unet": net_config.to_dict(), "spacing": float(self.spacing),
                "lr_spacing": float(self.lr_spacing), "normalization": self.normalization.to_dict(),
                "formulation": self.formulation.to_dict(), "lr_transfer": self.lr_transfer,
                "void_map": self.void_map, "corner_transfer": self.corner_transfer}

    @classmethod
    def from_dict(cls, d, source):
        """From :meth:`to_dict` output; a checkpoint without a formulation is a palette model."""
        try:
            return cls(config=TrainConfig.from_stored(d["config"], source), spacing=float(d["spacing"]),
                       lr_spacing=float(d["lr_spacing"]),
                       normalization=Normalization.from_dict(d["normalization"]),
                       formulation=Formulation.from_dict(d.get("formulation")),
                       lr_transfer=d.get("lr_transfer"), void_map=checked_void_map(d.get("void_map"), source),
                       corner_transfer=checked_corner_transfer(d.get("corner_transfer"), source))
        except InputError:
            raise
        except KeyError as err:
            raise InputError(source, f"checkpoint metadata lacks {err}") from err
        except (TypeError, ValueError) as err:
            raise InputError(source, f"inconsistent checkpoint metadata ({err})") from err


def build_net(config):
    """The U-Net of a TrainConfig (``unet3d.build(preset, **model_overrides)``); a bad setting is
    an InputError naming the ``preset`` setting or the ``model_overrides`` entry."""
    try:
        return unet3d.build(config.preset, **dict(config.model_overrides))
    except unet3d.ConfigError as err:
        source = "preset" if err.setting == "preset" else f"model_overrides ({err.setting})"
        raise InputError(source, err.problem) from err


def stored_net(state, path):
    """The U-Net described by a checkpoint's resolved ``unet`` configuration (robust to later
    changes of the presets), with no weights loaded."""
    try:
        return unet3d.UNet3D(unet3d.UNetConfig.from_dict(state["unet"]))
    except (unet3d.ConfigError, TypeError) as err:
        raise InputError(path, f"stored U-Net configuration is invalid ({err})") from err


def atomic_save(obj, path):
    """torch.save through sims.outputs.atomic_path: a kill never leaves a truncated ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state():
    """Global RNG states: torch CPU (and CUDA when available), numpy legacy, python."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                         for k, v in np_state["state"].items()}
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": np_state, "python": random.getstate()}


def set_rng_state(state):
    """Restore :func:`rng_state` output."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = dict(state["numpy"])
    np_state["state"] = {k: (np.asarray(v, dtype=np.uint32) if isinstance(v, list) else v)
                         for k, v in np_state["state"].items()}
    np.random.set_state(np_state)
    random.setstate(_as_tuples(state["python"]))


def _as_tuples(value):
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_training(path, meta, net, ema, optimizer, step):
    """Write a training checkpoint (atomic). ``net``, ``ema``: the bare modules (not DDP)."""
    atomic_save({**meta.to_dict(net.config), "kind": "training", "step": int(step),
                 "net": net.state_dict(), "ema": ema.state_dict(),
                 "optimizer": optimizer.state_dict(), "rng": rng_state()}, path)


def save_inference_model(path, meta, ema):
    """Write an inference checkpoint (atomic): EMA weights in float16 and the metadata only."""
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in ema.state_dict().items()}
    atomic_save({**meta.to_dict(ema.config), "kind": "inference", "ema": weights}, path)


def read_checkpoint(path):
    """The checkpoint dict of ``path``; InputError naming the file when missing or not ours."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "checkpoint file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise InputError(path, f"not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(path, "not an emulator checkpoint")
    if state.get("version") != VERSION:
        raise InputError(path, f"checkpoint version {state.get('version')} is not {VERSION}")
    return state


def load_weights(module, weights, path, what):
    """``module.load_state_dict(weights)`` (strict), with a mismatch reported as InputError."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise InputError(path, f"{what} weights do not fit the configured network: {detail}") from err


@dataclass(frozen=True)
class LoadedModel:
    """An inference-ready model: ``net`` holds the EMA weights in eval mode on ``device``.

    config: TrainConfig of the run (its ``schedule`` is the training schedule); normalization:
    field transform (``forward(delta)``, ``inverse(x)``); formulation: what ``net`` generates
    (emulator.formulation); lr_transfer: T(k) of the training pairs or None; corner_transfer: the
    damping of the generated tiles' corner shells and void_map: the map of generated underdense
    voxels (outpaint.calibrate), each or None; spacing: HR grid spacing, lr_spacing: LR
    resolution (see :class:`emulator.data.PairBox`), both [Mpc/h] of the training data.
    """

    net: torch.nn.Module
    config: TrainConfig
    normalization: Normalization
    formulation: Formulation
    lr_transfer: dict | None
    void_map: dict | None
    device: torch.device
    spacing: float
    lr_spacing: float
    corner_transfer: dict | None = None

    @property
    def tile(self):
        return self.config.tile

    @property
    def core(self):
        return self.config.core

    @property
    def schedule(self):
        return self.config.schedule

    @property
    def prediction(self):
        return self.config.prediction

    def denoiser(self, autocast=None):
        """The :class:`emulator.denoiser.Denoiser` around ``net`` (estimates in target units)."""
        return Denoiser(self.net, self.schedule, self.config.prediction, autocast=autocast)


def loaded_model(meta, ema, device):
    """A :class:`LoadedModel` around an EMA module already holding its weights."""
    ema = ema.to(device).eval().requires_grad_(False)
    return LoadedModel(net=ema, config=meta.config, normalization=meta.normalization, formulation=meta.formulation,
                       lr_transfer=meta.lr_transfer, void_map=meta.void_map, device=torch.device(device),
                       spacing=meta.spacing, lr_spacing=meta.lr_spacing, corner_transfer=meta.corner_transfer)


def load_model(path, device="cpu"):
    """Load the EMA weights of a training or inference checkpoint for inference (float32)."""
    state = read_checkpoint(path)
    meta = ModelMeta.from_dict(state, os.fspath(path))
    net = stored_net(state, path)
    load_weights(net, {k: v.float() if v.is_floating_point() else v for k, v in state["ema"].items()},
                 path, "EMA")
    return loaded_model(meta, net, device)


def find_model(path, setting="model"):
    """The checkpoint file of a model setting (``setting``: its name): the path itself, or
    MODEL_FILE inside a directory (a training run or DEFAULT_MODEL); InputError naming the
    setting when missing."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        hint = " (no default model is installed: train one with 'emulator train' and pass " \
               "--model RUN_DIR)" if path.parent == DEFAULT_MODEL else ""
        raise InputError(setting, f"{path} does not exist{hint}")
    return str(path)
