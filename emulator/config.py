"""Settings: the frozen, validated objects that say what a run does, written to every output.

``TrainConfig`` holds everything that determines a training run; ``emulator train`` resolves it
from defaults, an optional JSON file and command-line flags and writes ``RUN_DIR/config.json``.
A checkpoint stores ``to_dict()``; resuming checks that the stored and the new configuration
agree on every field except the run-length and bookkeeping ones in ``RESUMABLE_FIELDS``.
``GenerationSettings`` says how tiles are sampled (upsampling, outpainting, the training's
validation pass, the benchmarks) and is recorded in every emulated field.

Errors name the setting (``InputError("steps", ...)``); the command line maps settings to its
flags in one place (emulator.cli). This module does not import torch, so that ``emulator --help``
stays fast; the names it checks against are defined here and used by the modules that implement
them (emulator.denoiser, emulator.formulation, emulator.samplers).
"""
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from emulator.geometry import halo_width
from emulator.schedule import SPACINGS, LinearSchedule
from emulator.schedule import from_dict as schedule_from_dict
from sims.errors import InputError, check_choice, check_int, check_number

DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"
"""The packaged default model's directory (its model card is MODEL_CARD.md there)."""
MODEL_FILE = "model.pt"
"""The inference checkpoint inside a run directory (``emulator train --out``) or DEFAULT_MODEL."""
STUDENT_FILE = "student.pt"
"""The packaged default model distilled into a few-step student (emulator.distill), in DEFAULT_MODEL."""
PREDICTIONS = ("eps", "v")
"""Network targets (emulator.denoiser)."""
FORMULATIONS = ("palette", "residual")
"""What the network generates (emulator.formulation)."""
SAMPLER_SCHEDULES = {"ddpm": "trained", "ddim": "karras", "dpmpp-2m": "karras",
                     "dpmpp-2m-sde": "karras", "heun": "karras", "consistency": "karras"}
"""Every sampler of emulator.samplers.SAMPLERS with its default sigma schedule: ddpm walks the
trained levels (the reference baseline with all of them); the others use Karras et al.'s rho = 7
spacing; consistency (a distilled student's only sampler) walks a subset of its teacher's
Karras levels (emulator.distill)."""
DEFAULT_NORM_EPS = 0.1
"""eps of the log normalisation log(eps + 1 + delta) (emulator.normalization)."""
LEGACY_DEFAULTS = {"formulation": "palette", "lr_band": 0.0, "init_from": "", "lr_schedule": "constant",
                   "distill_steps": 0, "teacher_steps": 5, "spectral_weight": 0.0, "density_weight": 0.0}
"""Values of fields added after the first release, for configurations written before them."""
RENAMED_FIELDS = {"lr": "learning_rate"}
"""Old name -> new name of fields renamed since the first release."""
LR_SCHEDULES = ("constant", "cosine")
"""Learning-rate schedules of training (emulator.train.learning_rate_at)."""
MODEL_FIELDS = ("preset", "model_overrides", "tile", "core", "schedule", "prediction", "formulation",
                "lr_band", "norm_eps")
"""Fields that define what a trained network computes: a warm start (``init_from``) needs them equal,
except those in RETUNABLE_FIELDS."""
RETUNABLE_FIELDS = ("lr_band",)
"""MODEL_FIELDS a diffusion model's warm start may change: the band is a projection of the
network's estimate (emulator.formulation), not part of its weights, so a fine-tune can move it. A
student keeps its teacher's, whose samples it learns."""

RESUMABLE_FIELDS = frozenset({"data", "steps", "val_every", "save_every", "log_every", "num_workers"})
"""Fields that may change between an interrupted run and its ``--resume``."""


def fields_from_dict(cls, d, source, what):
    """``cls(**d)`` for a settings dataclass; unknown keys are an InputError naming ``source``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(source, f"unknown {what} {unknown}; valid: {sorted(names)}")
    return cls(**d)


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    data: directory of paired box files (datasets ``lr``, ``hr``).
    preset, model_overrides: the U-Net (``unet3d.build(preset, **dict(model_overrides))``);
        overrides are stored as sorted (name, value) pairs and given as a dict or such pairs.
    tile, core: training crop side and outpainting core [voxels]; halo = (tile - core) / 2.
    batch: examples per rank and step. steps: optimiser steps in total.
    learning_rate, weight_decay, grad_clip: AdamW (peak) learning rate, decoupled weight decay,
        max gradient norm.
    lr_schedule: "constant", or "cosine" (from learning_rate at step 0 to 0 at ``steps``).
    init_from: a model checkpoint (training or inference) whose EMA weights, normalisation and
        formulation statistics start the run, with a fresh optimiser ("": weights from ``seed``);
        its MODEL_FIELDS must equal this configuration's (a diffusion model may change
        RETUNABLE_FIELDS).
    distill_steps: 0 for a diffusion model; N >= 1 distils the model ``init_from`` (the teacher)
        into a student that samples in N steps (emulator.distill).
    teacher_steps: dpmpp-2m steps of the teacher whose samples the student learns.
    spectral_weight: weight of the power-spectrum term of a student's loss (emulator.distill;
        0: none; students only).
    density_weight: exponent alpha of the LR-density weight of a diffusion model's loss, each
        unknown voxel counting (1 + delta_LR + eps)^alpha (emulator.train.voxel_weights; 0:
        uniform; diffusion models only).
    ema: EMA decay of the inference weights (warmed up as min(ema, (1 + n) / (10 + n))).
    p_mask: probability that an example carries an outpainting known-halo mask (phases 1..7).
    schedule: training noise schedule (emulator.schedule; given as one or as its ``to_dict()``).
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
    bf16: bf16 autocast where the device computes bf16 natively (emulator.generate.native_bf16:
        CUDA; CPUs with avx512_bf16 or AMX), float32 elsewhere. num_workers: data-loader worker
        processes.
    """

    data: str = ""
    preset: str = "small"
    model_overrides: tuple = ()
    tile: int = 48
    core: int = 24
    batch: int = 8
    steps: int = 100_000
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    init_from: str = ""
    distill_steps: int = 0
    teacher_steps: int = 5
    spectral_weight: float = 0.0
    density_weight: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema: float = 0.9999
    p_mask: float = 0.8
    schedule: LinearSchedule = LinearSchedule()
    prediction: str = "v"
    formulation: str = "residual"
    lr_band: float = 0.5
    norm_eps: float = DEFAULT_NORM_EPS
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
        overrides = self.model_overrides
        pairs = overrides.items() if isinstance(overrides, dict) else overrides
        object.__setattr__(self, "model_overrides", tuple(sorted((str(k), v) for k, v in pairs)))
        if isinstance(self.schedule, dict):
            object.__setattr__(self, "schedule", schedule_from_dict(self.schedule))
        for name in ("tile", "core", "batch", "steps", "val_samples", "val_steps", "save_every",
                     "log_every"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("val_files", "val_every", "seed", "num_workers", "distill_steps"):
            check_int(name, getattr(self, name), minimum=0)
        try:
            halo_width(self.tile, self.core)
        except ValueError as err:
            raise InputError("tile", str(err)) from err
        check_number("learning_rate", self.learning_rate, 0.0, math.inf, open_low=True)
        check_number("weight_decay", self.weight_decay, 0.0, math.inf)
        check_number("grad_clip", self.grad_clip, 0.0, math.inf, open_low=True)
        check_number("ema", self.ema, 0.0, 1.0, open_high=True)
        check_number("p_mask", self.p_mask, 0.0, 1.0)
        check_number("norm_eps", self.norm_eps, 0.0, math.inf, open_low=True)
        check_number("lr_band", self.lr_band, 0.0, 1.0)
        check_number("spectral_weight", self.spectral_weight, 0.0, math.inf)
        check_number("density_weight", self.density_weight, 0.0, 4.0)
        check_choice("formulation", self.formulation, FORMULATIONS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("val_sampler", self.val_sampler, SAMPLER_SCHEDULES)
        check_choice("prediction", self.prediction, PREDICTIONS)
        check_int("teacher_steps", self.teacher_steps, minimum=1)
        if self.distill_steps and not self.init_from:
            raise InputError("init_from", "distillation needs its teacher: pass the model to distil as --init-from")
        if self.spectral_weight and not self.distill_steps:
            raise InputError("spectral_weight", "the power-spectrum term is a student's (its estimates "
                             "are samples); a diffusion model's are posterior means: use --distill-steps")
        if self.density_weight and self.distill_steps:
            raise InputError("density_weight", "the density weight is a diffusion model's; a student "
                             "learns its teacher's weighting (train the teacher with it)")
        if self.distill_steps > self.teacher_steps:
            raise InputError("distill_steps", f"a student of {self.distill_steps} steps cannot learn from a "
                             f"teacher of {self.teacher_steps} (--teacher-steps)")

    def to_dict(self):
        """Plain dict (JSON-ready) of every field."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**d, "model_overrides": dict(self.model_overrides), "schedule": self.schedule.to_dict()}

    @classmethod
    def from_dict(cls, d, source="config"):
        """Rebuild from ``to_dict()`` output; unknown keys are an InputError naming ``source``."""
        return fields_from_dict(cls, d, source, "training option(s)")

    @classmethod
    def from_stored(cls, d, source):
        """Rebuild a configuration written by a run, which may predate fields (LEGACY_DEFAULTS)
        or use old names (RENAMED_FIELDS)."""
        d = {RENAMED_FIELDS.get(k, k): v for k, v in d.items()}
        return cls.from_dict({**LEGACY_DEFAULTS, **d}, source)

    def replace(self, **changes):
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def differences(self, other):
        """Names of fields outside ``RESUMABLE_FIELDS`` whose values differ from ``other``'s."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in RESUMABLE_FIELDS and mine[k] != theirs[k])

    def validation_settings(self):
        """The GenerationSettings of the validation pass (a student's own sampler and steps),
        which are also the model's default sampling (GenerationSettings.for_model)."""
        if self.distill_steps:
            return GenerationSettings(sampler="consistency", steps=self.distill_steps)
        return GenerationSettings(sampler=self.val_sampler, steps=self.val_steps)


@dataclass(frozen=True)
class GenerationSettings:
    """How tiles are sampled (emulator.generate.generate_tiles).

    sampler: a sampler of emulator.samplers.SAMPLERS. steps: its number of steps. Either None:
        the model's own (:meth:`for_model`), filled in when the model is known.
    sigma_schedule: noise levels of the steps, a key of emulator.schedule.SPACINGS (None: the
        sampler's default, SAMPLER_SCHEDULES; stored resolved once the sampler is known).
    lr_consistency: None (the model's trained band, if any), or a fraction in (0, 1] of the LR
        Nyquist below which every x0 estimate takes the LR's modes.
    mass_conservation: the generated voxels of each tile hold the LR's mass there.
    corner_filter: the generated tiles go through the model's corner transfer (outpaint.calibrate;
        first of the three corrections); resolved to False for a model without one.
    void_map: the generated underdense voxels go through the model's void map (outpaint.calibrate;
        before mass conservation); resolved to False for a model without one (:meth:`for_model`).
    bf16: bf16 autocast of the network where the device computes bf16 natively (a CUDA GPU; a
        CPU with avx512_bf16 or AMX), float32 elsewhere (emulator.generate.native_bf16).
    sampler_options: further keywords of the sampler (eta, s_churn, s_noise, ...), as sorted
        (name, value) pairs with JSON values; given as a dict or such pairs, checked against
        the sampler's signature.
    """

    sampler: str | None = None
    steps: int | None = None
    sigma_schedule: str | None = None
    lr_consistency: float | None = None
    mass_conservation: bool = True
    corner_filter: bool = True
    void_map: bool = True
    bf16: bool = True
    sampler_options: tuple = ()

    def __post_init__(self):
        if self.sampler is not None:
            check_choice("sampler", self.sampler, SAMPLER_SCHEDULES)
        if self.steps is not None:
            check_int("steps", self.steps)
        if self.sigma_schedule is None and self.sampler is not None:
            object.__setattr__(self, "sigma_schedule", SAMPLER_SCHEDULES[self.sampler])
        if self.sigma_schedule is not None:
            check_choice("sigma_schedule", self.sigma_schedule, SPACINGS)
        if self.lr_consistency is not None:
            check_number("lr_consistency", self.lr_consistency, 0.0, 1.0, open_low=True)
        options = self.sampler_options
        pairs = options.items() if isinstance(options, dict) else options
        object.__setattr__(self, "sampler_options", tuple(sorted((str(k), v) for k, v in pairs)))

    def for_model(self, model):
        """These settings resolved for ``model`` (emulator.checkpoint.LoadedModel): an unset
        sampler or steps taken from its TrainConfig (a distilled student's consistency in its
        steps, a diffusion model's validation sampler and steps,
        TrainConfig.validation_settings), and ``corner_filter`` and ``void_map`` off where it has
        no corner transfer or void map."""
        own = model.config.validation_settings()
        return self.replace(sampler=self.sampler or own.sampler, steps=self.steps or own.steps,
                            corner_filter=self.corner_filter and model.corner_transfer is not None,
                            void_map=self.void_map and model.void_map is not None)

    def to_dict(self):
        """Plain dict (JSON-ready) of every field."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**d, "sampler_options": dict(self.sampler_options)}

    @classmethod
    def from_dict(cls, d, source="generation settings"):
        """Rebuild from ``to_dict()`` output; unknown keys are an InputError naming ``source``."""
        return fields_from_dict(cls, d, source, "generation setting(s)")

    def replace(self, **changes):
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


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
