"""Training loop of the conditional diffusion model.

AdamW on the denoising loss of emulator.denoiser (eps or v target; Ho et al. 2020 eq. 14 for
eps), taken on the voxels the outpainting mask leaves unknown. Noise levels are the discrete
training levels of the schedule: t uniform in 1..T and sigma = schedule.sigmas()[t - 1], as the
reference (Rouhiainen et al. 2023) and DDPM (Ho et al. 2020, Algorithm 1) do; the network sees
the continuous c_noise = ln(sigma) / 4, so samplers may use any sigma sequence.

EMA of the weights (the inference weights) with decay min(ema, (1 + n) / (10 + n)) after n
updates, the warm-up of TensorFlow's ExponentialMovingAverage, so short runs get usable EMA
weights. Gradient norm clipping, bf16 autocast on CUDA, DistributedDataParallel under torchrun
(RANK, WORLD_SIZE, LOCAL_RANK from the environment; nccl on GPU, gloo on CPU).

Every random draw is keyed by (seed, step, global example index): crops (emulator.data), noise
level and noise here, so a resumed run repeats an uninterrupted one exactly (on CPU, bitwise;
dropout's global RNG state is checkpointed) and the global batch does not depend on the number
of ranks. Rank 0 writes ``metrics.jsonl`` (one JSON object per line, ``kind`` "train" or
"val"), the checkpoint, and runs the validation pass: held-out crops generated from their LR by
emulator.generate with a fast sampler, compared with HR through sims.stats.
"""
import copy
import functools
import json
import math
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from emulator import checkpoint as ckpt
from emulator import distill
from emulator.config import MODEL_FIELDS, RETUNABLE_FIELDS
from emulator.data import CropDataset, StepBatches, find_pair_files, load_pairs, split_pairs
from emulator.denoiser import Denoiser, condition_channels, denoising_loss
from emulator.formulation import band_modes, fit_formulation
from emulator.generate import generate_tiles, native_bf16
from emulator.normalization import fit_normalization
from sims.errors import InputError
from sims.outputs import write_text
from sims.stats import band_figures, cross_power, fit_transfer, k_nyquist, power_spectrum, ratio_r

STREAM_NOISE, STREAM_VAL, STREAM_VAL_SEEDS = 2, 1, 3


@dataclass(frozen=True)
class DistEnv:
    """Process placement: rank, world size and the torch device of this process."""

    rank: int
    world: int
    device: torch.device


def distributed_env():
    """Read RANK / WORLD_SIZE / LOCAL_RANK (set by torchrun) and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world=world, device=device)


def seed_for(*key):
    """A 32-bit torch seed derived from a tuple of non-negative ints (numpy SeedSequence)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def example_noise(seed, step, indices, sigmas, shape):
    """Noise level and noise of each example ``(step, i)``: sigma (B,) from t uniform in 1..T and
    a standard normal (B, *shape), each example from its own generator."""
    sigma, noise = [], []
    for i in indices:
        g = torch.Generator().manual_seed(seed_for(seed, STREAM_NOISE, step, i))
        sigma.append(sigmas[torch.randint(len(sigmas), (1,), generator=g)])
        noise.append(torch.randn(shape, generator=g))
    return torch.cat(sigma), torch.stack(noise)


def ema_decay(ema, updates):
    """Effective EMA decay after ``updates`` updates: min(ema, (1 + n) / (10 + n))."""
    return min(ema, (1.0 + updates) / (10.0 + updates))


@torch.no_grad()
def update_ema(ema_net, net, decay):
    """ema <- decay * ema + (1 - decay) * net, parameter by parameter; buffers copied."""
    for e, p in zip(ema_net.parameters(), net.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema_net.buffers(), net.buffers()):
        e.copy_(b)


def check_conditioning(config, net):
    """The network's input channels must match the conditioning: 4 = [x, LR, known, mask]
    (outpainting-capable), 2 = [x, LR] (the reference layout, which cannot take masks)."""
    channels = net.config.in_channels
    if channels not in (2, 4):
        raise InputError("preset", f"the U-Net has {channels} input channels; training needs 4 "
                         "(noisy HR, LR, known values, mask) or 2 (noisy HR, LR)")
    if channels == 2 and config.p_mask > 0:
        raise InputError("p_mask", "a 2-channel network (noisy HR, LR) cannot see outpainting "
                         "masks: use --p-mask 0 or a 4-channel preset")
    if config.tile % net.downsample_factor:
        raise InputError("tile", f"tile {config.tile} is not a multiple of the U-Net's "
                         f"down-sampling factor {net.downsample_factor}")


def band_cut(meta):
    """The trained band in modes of a training crop (emulator.formulation.band_modes), or None."""
    cfg = meta.config
    return band_modes(cfg.lr_band, cfg.tile, meta.spacing, meta.lr_spacing) if cfg.lr_band > 0 else None


def voxel_weights(mask, y_lr, normalization, alpha):
    """Weights of a diffusion model's loss per voxel: 0 where ``mask`` (1: known context) and
    the LR's (1 + delta_LR + eps)^alpha elsewhere, from its normalised field ``y_lr``.

    A y error dy is (1 + delta + eps) scale dy in delta (the chain rule of the log normalisation,
    emulator.normalization), so alpha = 2 would weigh errors as in delta and alpha = 1 counts each
    unit of mass, not each voxel, equally: the dense voxels that carry P(k) and the noise at the
    grid scale weigh more than the voids. The weight is the condition's, never the target's, so
    the loss's minimiser is still the posterior mean E[x0 | x, LR]: a positive factor that is a
    function of the conditioning scales the conditional risk and leaves its argmin."""
    weight = 1.0 - mask
    if alpha:
        weight = weight * torch.exp(alpha * (normalization.shift + normalization.scale * y_lr))
    return weight


def train_step(denoiser, optimizer, batch, sigma, noise, grad_clip, in_channels, meta, teacher=None):
    """One AdamW step on the loss over unknown voxels, for the formulation's target and through its
    band projection when it has one, or, with a ``teacher`` (emulator.distill.Teacher), on the
    distillation loss at the level sigma[0]; returns (loss, gradient norm) tensors."""
    optimizer.zero_grad(set_to_none=True)
    cond = condition_channels(in_channels, batch["lr"], batch["known"], batch["mask"])
    form, k_cut = meta.formulation, band_cut(meta)
    x0 = form.target(batch["hr"], batch["lr"])
    project = functools.partial(form.project, y_lr=batch["lr"], normalization=meta.normalization, k_cut=k_cut)
    if teacher is None:   # without a band the network is trained on the raw target, unclamped
        weight = voxel_weights(batch["mask"], batch["lr"], meta.normalization, meta.config.density_weight)
        loss = denoising_loss(denoiser, x0, cond, sigma, noise, weight_mask=weight,
                              project=None if k_cut is None else project)
    else:
        spectral = None
        if meta.config.spectral_weight:
            first_shell = math.ceil(band_modes(1.0, meta.config.tile, meta.spacing, meta.lr_spacing))
            spectral = (meta.config.spectral_weight, first_shell,
                        lambda x: meta.normalization.inverse(form.field(x, batch["lr"])))
        loss = distill.distillation_loss(denoiser, teacher, x0, cond, float(sigma[0]), noise, project,
                                         batch["mask"] > 0.5, spectral)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], grad_clip)
    optimizer.step()
    return loss.detach(), grad_norm.detach()


@dataclass
class Run:
    """Mutable training state: modules (bare, not DDP-wrapped), optimiser, completed steps."""

    meta: ckpt.ModelMeta
    net: torch.nn.Module
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int


def lr_transfer(train_boxes):
    """T(k) of the linear emulator (sims.stats.fit_transfer) on the training pairs, as
    {"k": [h/Mpc], "t": [...]}; None when the boxes differ in size (no common k bins)."""
    box = train_boxes[0]
    if any(b.hr.shape != box.hr.shape or b.box_size != box.box_size for b in train_boxes):
        return None
    k, t = fit_transfer([(b.lr, b.hr) for b in train_boxes], box.box_size)
    return {"k": k.tolist(), "t": t.tolist()}


def new_meta(config, train_boxes):
    """Metadata of a fresh run: normalisation fitted on the training HR, the formulation's
    residual statistics on the normalised pairs, grid spacings, the LR transfer function."""
    norm = fit_normalization([b.hr for b in train_boxes], eps=config.norm_eps)
    form = fit_formulation(config.formulation, config.lr_band,
                           [(norm.forward(b.lr), norm.forward(b.hr)) for b in train_boxes])
    box = train_boxes[0]
    return ckpt.ModelMeta(config=config, spacing=box.spacing, lr_spacing=box.box_size / box.n_lr,
                          normalization=norm, formulation=form, lr_transfer=lr_transfer(train_boxes))


def restore(path, run):
    """Load a training checkpoint into ``run`` after checking its configuration matches."""
    state = ckpt.read_checkpoint(path)
    if state.get("kind") != "training":
        raise InputError(path, "is an inference checkpoint (EMA weights only); cannot resume from it")
    stored = ckpt.ModelMeta.from_dict(state, path)
    changed = run.meta.config.differences(stored.config)
    if changed:
        old, new = stored.config.to_dict(), run.meta.config.to_dict()
        detail = "; ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise InputError(path, f"was written with a different configuration ({detail}); resume "
                         "with the same options or start a new run directory")
    ckpt.load_weights(run.net, state["net"], path, "network")
    ckpt.load_weights(run.ema, state["ema"], path, "EMA")
    run.optimizer.load_state_dict(state["optimizer"])
    ckpt.set_rng_state(state["rng"])
    # lr_spacing and lr_transfer describe the data, not the training state: take them from the
    # files as read now
    run.meta = ckpt.ModelMeta(config=run.meta.config, spacing=stored.spacing,
                              lr_spacing=run.meta.lr_spacing, normalization=stored.normalization,
                              formulation=stored.formulation, lr_transfer=run.meta.lr_transfer)
    run.step = int(state["step"])


def warm_start(run):
    """Start ``run`` from the EMA weights, normalisation and formulation statistics of the model
    checkpoint ``config.init_from``, after checking that it computes the same kind of network on
    data of the same grid spacing. A diffusion model may move the LR band (RETUNABLE_FIELDS): its
    formulation takes the configuration's band."""
    cfg = run.meta.config
    path = ckpt.find_model(cfg.init_from, "init_from")
    source = ckpt.load_model(path)
    old, new = source.config.to_dict(), cfg.to_dict()
    retunable = () if cfg.distill_steps else RETUNABLE_FIELDS
    changed = [k for k in MODEL_FIELDS if old[k] != new[k] and k not in retunable]
    if changed:
        detail = "; ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise InputError(path, f"cannot start from this model: its configuration differs ({detail})")
    for name in ("spacing", "lr_spacing"):
        if not np.isclose(getattr(source, name), getattr(run.meta, name), rtol=1e-6):
            raise InputError(path, f"cannot start from this model: it was trained on data of {name} "
                             f"{getattr(source, name):.6g} Mpc/h, these have {getattr(run.meta, name):.6g}")
    weights = source.net.state_dict()
    ckpt.load_weights(run.net, weights, path, "EMA")
    ckpt.load_weights(run.ema, weights, path, "EMA")
    run.meta = ckpt.ModelMeta(config=cfg, spacing=run.meta.spacing, lr_spacing=run.meta.lr_spacing,
                              normalization=source.normalization,
                              formulation=replace(source.formulation, lr_band=cfg.lr_band),
                              lr_transfer=run.meta.lr_transfer)


def learning_rate_at(config, step):
    """Learning rate of optimiser step ``step`` (0-based): constant, or cosine annealing from
    ``learning_rate`` to 0 at ``config.steps`` (Loshchilov & Hutter 2017, eq. 5, one cycle)."""
    if config.lr_schedule == "cosine":
        return 0.5 * config.learning_rate * (1.0 + math.cos(math.pi * min(step, config.steps) / config.steps))
    return config.learning_rate


def open_run(config, out_dir, resume, train_boxes, device):
    """Build network, EMA and optimiser (initial weights from ``config.seed`` or, with
    ``config.init_from``, from that model); continue from ``out_dir/checkpoint.pt`` when
    ``resume`` and it exists."""
    path = os.path.join(out_dir, "checkpoint.pt")
    if os.path.exists(path) and not resume:
        raise InputError(out_dir, "already holds checkpoint.pt; pass --resume to continue that run "
                         "or choose a new --out")
    torch.manual_seed(config.seed)
    net = ckpt.build_net(config)
    check_conditioning(config, net)
    net = net.to(device).train()
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    run = Run(meta=new_meta(config, train_boxes), net=net, ema=ema, optimizer=optimizer, step=0)
    if resume and os.path.exists(path):
        restore(path, run)
    elif config.init_from:
        warm_start(run)
    return run


def write_json_atomic(path, obj):
    """Write ``obj`` as indented JSON atomically (sims.outputs.write_text)."""
    write_text(path, json.dumps(obj, indent=2))


def trim_metrics(path, step):
    """Drop metric lines after ``step`` (written after the checkpoint a resumed run restarts from)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    write_text(path, "".join(kept))


def append_metrics(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def mean_over_ranks(value, env):
    """Average a scalar tensor over ranks (identity in a single process)."""
    if env.world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= env.world
    return float(value)


def spectra_summary(sr, hr, lr, box_size, k_split):
    """P(k) ratio and r(k) of generated crops ``sr`` against ``hr``, and r(k) of ``lr``.

    sr, hr, lr: (B, t, t, t) overdensity; spectra are summed over crops before the ratios.
    Summaries over k < ``k_split`` (half the LR Nyquist) and over k < k_Nyq of the crop.
    """
    def total(fn, *fields):
        return sum(fn(*f, box_size).power for f in zip(*fields))
    p_sr, p_hr, p_lr = (total(power_spectrum, f) for f in (sr, hr, lr))
    ratio = p_sr / p_hr
    r_sr, r_lr = ratio_r(total(cross_power, sr, hr), p_sr, p_hr), ratio_r(total(cross_power, lr, hr), p_lr, p_hr)
    k = power_spectrum(hr[0], box_size).k
    out = {"k": k.tolist(), "pk_ratio": ratio.tolist(), "r": r_sr.tolist(), "r_lr": r_lr.tolist()}
    for name, k_max in (("low", k_split), ("all", k_nyquist(hr.shape[-1], box_size))):
        band = band_figures(k, k_max, ratio, r_sr, r_lr)
        if band:
            out.update({f"pk_ratio_{name}": band["pk_ratio_mean"], f"pk_maxdev_{name}": band["pk_ratio_maxdev"],
                        f"r_{name}": band["r_mean"], f"r_lr_{name}": band["r_reference_mean"]})
    return out


def validate(run, boxes, device):
    """Generate held-out crops from their LR alone (EMA weights, fast sampler) and compare with HR.

    The crops are the same at every pass (keys (0, i) of the validation stream). x0 estimates are
    kept in the physical range (emulator.formulation), which keeps an early, barely trained
    model's samples finite."""
    cfg = run.meta.config
    ds = CropDataset([(b.lr, b.hr) for b in boxes], cfg.tile, cfg.core, 0.0, cfg.seed, STREAM_VAL)
    examples = [ds[(0, i)] for i in range(cfg.val_samples)]
    lr, hr = (np.stack([e[key][0].numpy() for e in examples]) for key in ("lr", "hr"))
    seeds = [seed_for(cfg.seed, STREAM_VAL_SEEDS, i) for i in range(cfg.val_samples)]
    model = ckpt.loaded_model(run.meta, run.ema, device)
    settings = cfg.validation_settings().replace(bf16=cfg.bf16)
    sr = generate_tiles(model, settings, lr, None, None, seeds)
    return spectra_summary(sr, hr, lr, cfg.tile * run.meta.spacing, 0.5 * np.pi / run.meta.lr_spacing)


def make_loader(dataset, run, env, device):
    """Batches of this rank from the current step to the last; a private generator keeps the
    loader from drawing on the global RNG (which dropout uses and the checkpoint restores)."""
    cfg = run.meta.config
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=StepBatches(run.step, cfg.steps, cfg.batch, env.rank),
        num_workers=cfg.num_workers, generator=torch.Generator(), pin_memory=device.type == "cuda")


def save(run, out_dir):
    ckpt.save_training(os.path.join(out_dir, "checkpoint.pt"), run.meta, run.net, run.ema,
                       run.optimizer, run.step)


def train(config, out_dir, resume=False, progress=True):
    """Train per ``config``, writing ``out_dir``/{config.json, metrics.jsonl, checkpoint.pt,
    model.pt (EMA, float16, at the end)}. Returns the number of completed steps."""
    env = distributed_env()
    boxes = load_pairs(find_pair_files(config.data), config.tile)
    train_boxes, val_boxes = split_pairs(boxes, config.val_files)
    autocast = torch.bfloat16 if config.bf16 and native_bf16(env.device) else None
    teacher = distill.load_teacher(config, env.device, autocast) if config.distill_steps else None
    os.makedirs(out_dir, exist_ok=True)
    run = open_run(config, out_dir, resume, train_boxes, env.device)
    metrics = os.path.join(out_dir, "metrics.jsonl")
    if env.rank == 0:
        write_json_atomic(os.path.join(out_dir, "config.json"), config.to_dict())
        trim_metrics(metrics, run.step)
    model = run.net
    if env.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            run.net, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    schedule = config.schedule
    denoiser = Denoiser(model, schedule, config.prediction, autocast=autocast)
    sigmas = torch.as_tensor(schedule.sigmas(), dtype=torch.float32)
    dataset = CropDataset([(run.meta.normalization.forward(b.lr), run.meta.normalization.forward(b.hr))
                           for b in train_boxes], config.tile, config.core, config.p_mask, config.seed)
    loop(run, denoiser, make_loader(dataset, run, env, env.device), sigmas, val_boxes, env,
         out_dir, metrics, progress, teacher)
    if env.rank == 0:
        save(run, out_dir)
        ckpt.save_inference_model(os.path.join(out_dir, "model.pt"), run.meta, run.ema)
    if env.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return run.step


def loop(run, denoiser, loader, sigmas, val_boxes, env, out_dir, metrics, progress, teacher=None):
    """The optimisation loop from ``run.step`` to ``config.steps``; logs, validates, saves. With a
    ``teacher`` every step distils at the student level of that step (emulator.distill)."""
    cfg = run.meta.config
    in_channels = run.net.config.in_channels
    shape = (1, cfg.tile, cfg.tile, cfg.tile)
    start, loss_sum, count = time.perf_counter(), torch.zeros((), device=env.device), 0
    with tqdm(total=cfg.steps, initial=run.step, disable=not progress or env.rank != 0,
              desc="train", unit="step") as bar:
        for batch in loader:
            indices = range(env.rank * cfg.batch, (env.rank + 1) * cfg.batch)
            sigma, noise = example_noise(cfg.seed, run.step, indices, sigmas, shape)
            if teacher is not None:
                sigma = torch.full_like(sigma, distill.training_level(cfg, run.step))
            batch = {k: v.to(env.device, non_blocking=True) for k, v in batch.items()}
            for group in run.optimizer.param_groups:
                group["lr"] = learning_rate_at(cfg, run.step)
            loss, grad_norm = train_step(denoiser, run.optimizer, batch, sigma.to(env.device),
                                         noise.to(env.device), cfg.grad_clip, in_channels, run.meta,
                                         teacher)
            update_ema(run.ema, run.net, ema_decay(cfg.ema, run.step))
            run.step += 1
            loss_sum, count = loss_sum + loss, count + 1
            bar.update(1)
            if run.step % cfg.log_every == 0 or run.step == cfg.steps:
                record = {"kind": "train", "step": run.step, "loss": mean_over_ranks(loss_sum / count, env),
                          "lr": run.optimizer.param_groups[0]["lr"], "grad_norm": float(grad_norm),
                          "seconds": time.perf_counter() - start}
                loss_sum, count = torch.zeros_like(loss_sum), 0
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                if env.rank == 0:
                    append_metrics(metrics, record)
            if env.rank == 0 and cfg.val_every and run.step % cfg.val_every == 0:
                append_metrics(metrics, {"kind": "val", "step": run.step,
                                         **validate(run, val_boxes, env.device)})
            if env.rank == 0 and run.step % cfg.save_every == 0:
                save(run, out_dir)
