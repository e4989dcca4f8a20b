"""Generate HR tiles from LR tiles (and outpainting context) with a trained model.

``generate_tiles`` is the one function outpainting calls: numpy overdensity in, numpy overdensity
out. A tile's result depends only on its inputs and its seed: its initial noise and every noise
draw of a stochastic sampler come from its own ``torch.Generator(seed)`` (on the CPU, so the
numbers do not depend on the device either), never on the batch it is generated in or the rank.
"""
import functools
import inspect

import numpy as np
import torch
from tqdm import tqdm

from emulator.denoiser import condition_channels
from emulator.distill import student_sigmas
from emulator.formulation import band_modes
from emulator.samplers import SAMPLERS, randn
from emulator.schedule import SPACINGS
from sims.errors import InputError
from sims.stats import apply_transfer, apply_void_map

CONTEXT_KEYWORDS = frozenset({"generator", "known", "mask", "callback"})
"""Sampler keywords that generate_tiles itself passes (emulator.samplers' common signature)."""


def conserve_mass(delta, lr, mask):
    """Rescale the generated voxels of each tile to hold the LR's mass there.

    Dark-matter mass is conserved and the LR and HR runs share their initial conditions, so a
    region several LR particle spacings wide holds nearly the same mass in both. With rho / rho_mean = 1 + delta
    and U_b the generated voxels of tile b (``mask`` False):

        1 + delta <- (1 + delta) sum_U (1 + delta_LR) / sum_U (1 + delta)    on U_b

    a multiplicative fix, so the fluctuations scale with the mass (an additive one would move the
    mean and leave them inflated). Known voxels are untouched; a tile whose generated mass is not
    positive is left as it is. delta, lr: float32 (B, t, t, t) overdensity on the HR grid; mask:
    bool (B, t, t, t). Returns a new float32 array.
    """
    free, axes = ~mask, (1, 2, 3)
    want = np.where(free, 1.0 + lr, 0.0).sum(axes, dtype=np.float64)
    have = np.where(free, 1.0 + delta, 0.0).sum(axes, dtype=np.float64)
    scale = np.divide(want, have, out=np.ones_like(want), where=have > 0)[:, None, None, None]
    return np.where(free, (1.0 + delta) * scale - 1.0, delta).astype(np.float32)


def native_bf16(device):
    """Whether ``device`` computes bf16 matrix products in hardware: a CUDA GPU that supports bf16,
    or a CPU with the avx512_bf16 or AMX-bf16 instructions (Linux /proc/cpuinfo; elsewhere False).
    Elsewhere bf16 is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def sampling_plan(model, settings, tile=None):
    """(sampler function, sigmas, band cut in modes of a ``tile``-voxel cube (default the model's)
    or None) of GenerationSettings ``settings`` for ``model``; InputError naming the setting of
    one the sampler does not take, and for a sampler that is not the model's kind (a distilled
    student samples only with ``consistency``, in at most its steps). Callers check settings
    with it before they touch any output. Unset sampler or steps are the model's
    (GenerationSettings.for_model)."""
    settings = settings.for_model(model)
    sample = SAMPLERS[settings.sampler]
    accepted = {name for name, p in inspect.signature(sample).parameters.items()
                if p.kind is p.KEYWORD_ONLY} - CONTEXT_KEYWORDS
    unknown = sorted(set(dict(settings.sampler_options)) - accepted)
    if unknown:
        raise InputError("sampler_options", f"{settings.sampler} takes {sorted(accepted)}, not {unknown}")
    student = model.config.distill_steps
    if student and settings.sampler != "consistency":
        raise InputError("sampler", f"this model is a student distilled to {student} step(s): it samples "
                         "only with 'consistency'")
    if settings.sampler == "consistency" and not student:
        raise InputError("sampler", "'consistency' samples distilled students only (emulator train "
                         "--distill-steps); this model is a diffusion model")
    if student:
        sigmas = student_sigmas(model.config, settings.steps)
    else:
        sigmas = SPACINGS[settings.sigma_schedule](model.schedule, settings.steps)
    fraction = model.formulation.lr_band if settings.lr_consistency is None else settings.lr_consistency
    k_cut = band_modes(fraction, tile or model.tile, model.spacing, model.lr_spacing) if fraction > 0 else None
    return sample, sigmas, k_cut


def generate_tiles(model, settings, lr, known, mask, seeds, batch_size=None, progress=False):
    """Sample HR tiles given their LR and known context.

    model: emulator.checkpoint.LoadedModel. settings: emulator.config.GenerationSettings.
    lr, known: float32 (B, t, t, t) overdensity on the HR grid (known is ignored where mask is
    False; None: no context); mask: bool (B, t, t, t) or None. seeds: B ints, tile b's noise
    comes from torch.Generator().manual_seed(seeds[b]). batch_size: tiles per network batch
    (default: all); a batch that runs out of device memory is halved and run again, down to one
    tile. Every x0 estimate goes through the model's
    :meth:`emulator.formulation.Formulation.project`: kept in the physical range, so no output
    is non-finite, and tied to the LR's large scales when the model has a band or the settings
    ask for LR consistency. The sampled tiles then go through :func:`finish_tiles`: the model's
    corner transfer (settings.corner_filter; clipped at delta = -1 keeping their mass), its void
    map (settings.void_map) and mass conservation. A network that returns NaN is an InputError
    naming the tiles' seeds.
    Returns float32 (B, t, t, t) overdensity whose known voxels equal ``known`` exactly.
    """
    lr, known, mask = _checked_tiles(lr, known, mask, seeds)
    settings = settings.for_model(model)
    sample, sigmas, k_cut = sampling_plan(model, settings, lr.shape[-1])
    use_bf16 = settings.bf16 and native_bf16(model.device)
    denoiser = model.denoiser(autocast=torch.bfloat16 if use_bf16 else None)
    options = dict(settings.sampler_options)
    out = np.empty_like(lr)
    bar = tqdm(total=len(lr) * (len(sigmas) - 1), unit="step", disable=not progress)
    batch, start = batch_size or len(lr), 0
    while start < len(lr):
        part = slice(start, start + batch)
        try:
            out[part] = _generate_batch(model, denoiser, sample, sigmas, lr[part], known[part], mask[part],
                                        seeds[part], options, k_cut,
                                        callback=lambda info, n=len(lr[part]): bar.update(n))
        except torch.OutOfMemoryError as err:
            if batch == 1:
                raise InputError("batch_size", f"one {lr.shape[-1]}^3 tile does not fit in the memory "
                                 f"of {model.device}") from err
            batch = (batch + 1) // 2       # the result does not depend on the batch: retry smaller
            if model.device.type == "cuda":
                torch.cuda.empty_cache()
            bar.n = start * (len(sigmas) - 1)
            continue
        start += batch
    bar.close()
    broken = np.flatnonzero(~np.isfinite(out).all(axis=(1, 2, 3)))
    if broken.size:       # the projection bounds every estimate: only NaN from the network gets here
        raise InputError("model", f"the network returned NaN for tile(s) with seed(s) "
                         f"{[int(seeds[b]) for b in broken[:4]]}: its weights are not usable")
    return finish_tiles(model, settings, out, lr, known, mask)


def finish_tiles(model, settings, out, lr, known, mask):
    """Sampled tiles ``out`` through the corrections of ``settings`` (resolved for ``model``):
    its corner transfer, its void map, the known voxels put back and mass conservation; arrays
    float32 / bool (B, t, t, t) as in :func:`generate_tiles`. Returns new float32 tiles."""
    settings = settings.for_model(model)
    if settings.corner_filter:
        side = lr.shape[-1] * model.spacing
        out = np.stack([apply_transfer(tile, side, model.corner_transfer["k"], model.corner_transfer["t"],
                                       keep_mass=True) for tile in out])
    if settings.void_map:
        out = apply_void_map(out, model.void_map["x"], model.void_map["y"])
    out = np.where(mask, known, out)
    return conserve_mass(out, lr, mask) if settings.mass_conservation else out


def _generate_batch(model, denoiser, sample, sigmas, lr, known, mask, seeds, options, k_cut, callback):
    """One network batch: normalise, build the condition, sample the formulation's target with
    estimates projected (:meth:`Formulation.project`), back to overdensity."""
    norm, form, device = model.normalization, model.formulation, model.device

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a))[:, None].to(device)

    lr_n = tensor(norm.forward(lr))
    known_n, mask_t = tensor(norm.forward(np.where(mask, known, 0.0).astype(np.float32))), tensor(mask)
    cond = condition_channels(model.net.config.in_channels, lr_n, known_n, mask_t)
    D = form.constrained(functools.partial(denoiser, cond=cond), lr_n, norm, k_cut)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x = sigmas[0] * randn(lr_n.shape, generators, device=device)
    with torch.inference_mode():
        x0 = sample(D, x, sigmas, generator=generators, known=form.target(known_n, lr_n), mask=mask_t,
                    callback=callback, **options)
    return norm.inverse(form.field(x0, lr_n)[:, 0].float().cpu().numpy())


def _checked_tiles(lr, known, mask, seeds):
    """Arrays as float32 / bool (B, t, t, t) with matching shapes and B seeds (ValueError otherwise)."""
    lr = np.asarray(lr, dtype=np.float32)
    if lr.ndim != 4 or len(set(lr.shape[1:])) != 1:
        raise ValueError(f"lr must be (B, t, t, t) tiles, got shape {lr.shape}")
    known = np.zeros_like(lr) if known is None else np.asarray(known, dtype=np.float32)
    mask = np.zeros(lr.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if known.shape != lr.shape or mask.shape != lr.shape:
        raise ValueError(f"lr {lr.shape}, known {known.shape} and mask {mask.shape} must have one shape")
    if len(seeds) != len(lr):
        raise ValueError(f"{len(seeds)} seeds for {len(lr)} tiles")
    return lr, known, mask
