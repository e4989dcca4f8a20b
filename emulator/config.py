"""Training configuration: one frozen dataclass, validated at construction, written to every run.

``TrainConfig`` holds everything that determines a training run; ``emulator train`` resolves it
from defaults, an optional JSON file and command-line flags and writes ``RUN_DIR/config.json``.
A checkpoint stores ``to_dict()``; resuming checks that the stored and the new configuration
agree on every field except the run-length and bookkeeping ones in ``RESUMABLE_FIELDS``.
"""
import dataclasses
import json
import math
from dataclasses import dataclass, field

from emulator.denoiser import PREDICTIONS
from emulator.formulation import FORMULATIONS
from emulator.geometry import halo_width
from emulator.normalization import DEFAULT_EPS
from emulator.samplers import SAMPLERS
from emulator.schedule import LinearSchedule
from emulator.schedule import from_dict as schedule_from_dict
from sims.errors import InputError

LEGACY_DEFAULTS = {"formulation": "palette", "lr_band": 0.0}
"""Values of fields added after the first release, for configurations written before them."""

RESUMABLE_FIELDS = frozenset({"data", "steps", "val_every", "save_every", "log_every", "num_workers"})
"""Fields that may change between an interrupted run and its ``--resume``."""


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    data: directory of paired box files (datasets ``lr``, ``hr``).
    preset, model_overrides: the U-Net (``unet3d.build(preset, **model_overrides)``).
    tile, core: training crop side and outpainting core [voxels]; halo = (tile - core) / 2.
    batch: examples per rank and step. steps: optimiser steps in total.
    lr, weight_decay, grad_clip: AdamW learning rate, decoupled weight decay, max gradient norm.
    ema: EMA decay of the inference weights (warmed up as min(ema, (1 + n) / (10 + n))).
    p_mask: probability that an example carries an outpainting known-halo mask (phases 1..7).
    schedule: training noise schedule as ``emulator.schedule`` ``to_dict()`` output.
    prediction: network target, "v" or "eps" (the reference; at large sigma it amplifies the
        network's error by sigma, which a briefly trained residual model does not survive).
    formulation: what is generated (emulator.formulation): "palette" (the normalised HR, the
        reference) or "residual" (the HR's residual from the LR).
    lr_band: fraction of the LR Nyquist below which every x0 estimate takes the LR's modes, in
        training and sampling alike (0: off).
    norm_eps: eps of the log normalisation (emulator.normalization).
    val_files: paired files held out for validation (the last ones in sorted order).
    val_every, val_samples, val_sampler, val_steps: validation pass every N steps (0: never) on
        that many held-out crops, sampled with that sampler and number of steps.
    save_every, log_every: checkpoint and metrics-line intervals [steps].
    seed: seed of the initial weights and of every training draw.
    bf16: bf16 autocast on CUDA (ignored on CPU). num_workers: data-loader worker processes.
    """

    data: str = ""
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)
    tile: int = 48
    core: int = 24
    batch: int = 8
    steps: int = 100_000
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.9999
    p_mask: float = 0.8
    schedule: dict = field(default_factory=lambda: LinearSchedule().to_dict())
    prediction: str = "v"
    formulation: str = "residual"
    lr_band: float = 0.5
    norm_eps: float = DEFAULT_EPS
    val_files: int = 1
    val_every: int = 1000
    val_samples: int = 4
    val_sampler: str = "dpmpp-2m"
    val_steps: int = 20
    save_every: int = 1000
    log_every: int = 10
    seed: int = 0
    bf16: bool = True
    num_workers: int = 0

    def __post_init__(self):
        object.__setattr__(self, "model_overrides", dict(self.model_overrides))
        object.__setattr__(self, "schedule", schedule_from_dict(self.schedule).to_dict())
        for name in ("tile", "core", "batch", "steps", "val_samples", "val_steps", "save_every",
                     "log_every"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("val_files", "val_every", "seed", "num_workers"):
            _check_int(name, getattr(self, name), minimum=0)
        try:
            halo_width(self.tile, self.core)
        except ValueError as err:
            raise InputError("--tile", str(err)) from err
        _check_range("lr", self.lr, 0.0, math.inf, open_low=True)
        _check_range("weight_decay", self.weight_decay, 0.0, math.inf)
        _check_range("grad_clip", self.grad_clip, 0.0, math.inf, open_low=True)
        _check_range("ema", self.ema, 0.0, 1.0, open_high=True)
        _check_range("p_mask", self.p_mask, 0.0, 1.0)
        _check_range("norm_eps", self.norm_eps, 0.0, math.inf, open_low=True)
        _check_range("lr_band", self.lr_band, 0.0, 1.0)
        if self.formulation not in FORMULATIONS:
            raise InputError("--formulation", f"must be one of {FORMULATIONS}, got {self.formulation!r}")
        if self.val_sampler not in SAMPLERS:
            raise InputError("--val-sampler", f"unknown sampler {self.val_sampler!r}; choose one of "
                             f"{sorted(SAMPLERS)}")
        if self.prediction not in PREDICTIONS:
            raise InputError("--prediction", f"must be one of {PREDICTIONS}, got {self.prediction!r}")

    def to_dict(self):
        """Plain dict (JSON-ready) of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, source="config"):
        """Rebuild from ``to_dict()`` output; unknown keys are an InputError naming ``source``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(source, f"unknown training option(s) {unknown}; valid: {sorted(names)}")
        return cls(**d)

    @classmethod
    def from_stored(cls, d, source):
        """Rebuild a configuration written by a run, which may predate fields (LEGACY_DEFAULTS)."""
        return cls.from_dict({**LEGACY_DEFAULTS, **d}, source)

    def replace(self, **changes):
        """A validated copy with some fields changed."""
        return self.from_dict({**self.to_dict(), **changes})

    def differences(self, other):
        """Names of fields outside ``RESUMABLE_FIELDS`` whose values differ from ``other``'s."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in RESUMABLE_FIELDS and mine[k] != theirs[k])


def read_config_file(path):
    """The JSON object of a ``--config`` file (a dict of TrainConfig fields)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as err:
        raise InputError(path, f"cannot read config file ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from err
    if not isinstance(d, dict):
        raise InputError(path, "config file must hold a JSON object of training options")
    return d


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"--{name.replace('_', '-')}", f"must be an integer >= {minimum}, got {value!r}")


def _check_range(name, value, low, high, open_low=False, open_high=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise InputError(f"--{name.replace('_', '-')}", f"must be a number in {interval}, got {value!r}")
