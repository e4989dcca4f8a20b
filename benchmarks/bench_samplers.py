"""The headline benchmark: fast samplers against the reference's 2000-step ddpm.

For held-out paired boxes, ``--crops`` tile-sized crops per file (LR and HR, periodic, positions
drawn from ``--seed``; a box of exactly one tile gives one crop) are generated from their LR alone
by every model of ``--model`` with every sampler at every NFE it accepts (network evaluations per
sample; converted to steps with ``emulator.samplers.evaluations``: heun makes 2N - 1 of them in N
steps, so it gets the most steps that fit; a distilled student samples only with ``consistency``,
in at most its distilled steps, and a diffusion model never with it), over ``--seeds`` seeds,
with and without the LR-consistent band replacement. Every sample is measured four times, free
of network cost (``emulator.generate.finish_tiles``): as the sampler left it or through its
model's corner transfer and void map (cal off / on; on is what generation applies), each as
generated (mass off) and with its mass set to the LR's (mass on). The baseline is the first
model's ``ddpm`` over ``--baseline-steps`` trained levels without LR consistency (the
reference's method), sampled with the same seeds (give a student's teacher first: its baseline
is the teacher's); each row compares with the baseline measured the same way. Per
configuration, with P the mean over crops and seeds of each sample's P(k), sigma the seed
scatter of P (standard deviation over seeds, pooled over crops: a single sample's scatter, not
that of the mean) and k_Nyq = pi / HR spacing:

    dP/2, dP      max |P / P_base - 1| over k < k_Nyq / 2 and over k < k_Nyq
    z             max |P - P_base| / sigma_base over k < k_Nyq: below 1, the configuration's mean
                  P(k) is within the baseline's own seed scatter everywhere (the goal)
    s/s_b         mean over k < k_Nyq of sigma / sigma_base (sample diversity; 1 is the baseline's)
    r/2, rmin/2   mean and minimum over k < k_Nyq / 2 of r(k) with the HR truth
    P/Pt lo       mean of P / P_truth over k < half the LR Nyquist (pi / (2 LR spacing))
    r lo, rLR lo  mean r(k) with the truth there, of the samples and of the LR itself
    s/sample      wall seconds of generation per sample (batch ``--batch``, after a warm-up call)

Spectra: ``sims.stats.ensemble`` (the convention of ``sims.stats``, no window deconvolution) on
the tile as a periodic cube of side tile x spacing [Mpc/h]. Bands with no shell give NaN (JSON null).

    python benchmarks/bench_samplers.py [--model CKPT [CKPT ...]] [--pairs FILE ...] [--json OUT]
    python benchmarks/bench_samplers.py --quick   # smoke run (~400 tile evaluations)

``--baseline-cache FILE`` keeps the baseline's spectra (an .npz keyed by the SHA-256 of the first
model's checkpoint, the crops and the baseline's settings, seeds and batch): a rerun with the same
key takes them from the file instead of regenerating them (a 2000-step baseline is most of a
run's time); any other key regenerates and replaces them.

Without ``--pairs`` a one-tile held-out pair (seed 90210) is simulated at the model's spacings.
Each finished configuration is printed, and the JSON rewritten, as the run goes.
"""
import argparse
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

from emulator.checkpoint import load_model
from emulator.checkpoint import find_model
from emulator.config import DEFAULT_MODEL, GenerationSettings
from emulator.data import load_pairs
from emulator.generate import finish_tiles, generate_tiles, sampling_plan
from emulator.geometry import periodic_crop
from emulator.runtime import hold_freed_memory
from emulator.samplers import SAMPLERS, evaluations
from heldout import HELD_OUT_SEED, held_out_pair
from sims import stats
from sims.errors import InputError
from sims.outputs import atomic_path
from sims.validation import jsonable, write_report

FULL = {"samplers": "ddpm,ddim,dpmpp-2m,dpmpp-2m-sde,heun", "nfe": "5,10,20,50,100", "seeds": 8,
        "baseline_steps": 2000, "crops": 4}
QUICK = {**FULL, "seeds": 2, "nfe": "5,10", "baseline_steps": 50, "crops": 1}
"""Option defaults of a full run and of ``--quick`` (a smoke run); explicit options override both."""


def steps_for(sampler, nfe):
    """The most steps of ``sampler`` whose network evaluations do not exceed ``nfe``."""
    return max(s for s in range(1, nfe + 1) if evaluations(sampler, s) <= nfe)


def model_label(path):
    """Short name of a checkpoint for the table: its file stem, or its folder's name for model.pt."""
    path = os.path.normpath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.dirname(path)) if stem == "model" else stem


def accepts(model, settings):
    """Whether ``model`` samples with ``settings`` (emulator.generate.sampling_plan)."""
    try:
        sampling_plan(model, settings)
    except InputError:
        return False
    return True


def held_out_crops(paths, model, crops, seed):
    """(lr, hr) float32 (C, t, t, t) overdensity crops on the HR grid: ``crops`` per file at
    origins from ``np.random.default_rng([seed, file index])``, or the whole box if it is one tile."""
    tile = model.tile
    lr, hr = [], []
    for i, box in enumerate(load_pairs(paths, tile)):
        for name, have, want in (("HR", box.spacing, model.spacing), ("LR", box.box_size / box.n_lr, model.lr_spacing)):
            if abs(have / want - 1) > 1e-6:
                raise InputError(box.source, f"{name} grid spacing {have:.6g} Mpc/h differs from the "
                                             f"model's {want:.6g} Mpc/h")
        n = box.hr.shape[0]
        origins = np.zeros((1, 3), int) if n == tile else np.random.default_rng([seed, i]).integers(0, n, (crops, 3))
        lr += [periodic_crop(box.lr, o, tile) for o in origins]
        hr += [periodic_crop(box.hr, o, tile) for o in origins]
    return np.stack(lr), np.stack(hr)


MEASURES = tuple(itertools.product((False, True), (False, True)))
"""The (cal, mass) ways every sample is measured (module docstring)."""


def sample_spectra(model, lr, hr, n_seeds, settings, batch, first_seed=0, progress=False):
    """Generate ``n_seeds`` samples of every crop (seed first_seed + c * n_seeds + s for crop c,
    sample s) with ``settings`` less its corrections (``progress``: a bar of the sampler's steps);
    returns ({(cal, mass): (P(k), r(k) with the truth)} for each of MEASURES, each (C, S, nbins),
    and seconds per sample."""
    tiles = np.repeat(lr, n_seeds, axis=0)
    seeds = list(range(first_seed, first_seed + len(tiles)))
    raw_settings = settings.replace(corner_filter=False, void_map=False, mass_conservation=False)
    start = time.perf_counter()
    raw = generate_tiles(model, raw_settings, tiles, None, None, seeds, batch, progress)
    seconds = (time.perf_counter() - start) / len(tiles)
    box, spectra, unknown = model.tile * model.spacing, {}, np.zeros(raw.shape, bool)
    for cal, mass in MEASURES:
        fields = finish_tiles(model, settings.replace(corner_filter=cal, void_map=cal, mass_conservation=mass),
                              raw, tiles, raw, unknown)
        ens = [stats.ensemble(truth, fields[c * n_seeds:(c + 1) * n_seeds], box) for c, truth in enumerate(hr)]
        spectra[cal, mass] = np.stack([e.pk_samples for e in ens]), np.stack([e.r_samples for e in ens])
    return spectra, seconds


def baseline_key(model_path, lr, settings, n_seeds, batch):
    """SHA-256 (hex) of what the baseline's spectra depend on: the checkpoint's bytes, the LR
    crops, the baseline's generation ``settings``, the seeds per crop and the batch."""
    digest = hashlib.sha256()
    with open(model_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(np.ascontiguousarray(lr, dtype=np.float32).tobytes())
    digest.update(json.dumps([settings.to_dict(), n_seeds, batch]).encode())
    return digest.hexdigest()


def cached_spectra(path, key):
    """(spectra, seconds) of :func:`sample_spectra` stored at ``path`` under ``key``, or None when
    there is no such file or it holds another key."""
    if not path or not os.path.exists(path):
        return None
    with np.load(path) as f:
        if str(f["key"]) != key:
            return None
        return ({(cal, mass): (f[f"pk_{cal:d}{mass:d}"], f[f"r_{cal:d}{mass:d}"]) for cal, mass in MEASURES},
                float(f["seconds"]))


def store_spectra(path, key, spectra, seconds):
    """Write (spectra, seconds) of :func:`sample_spectra` under ``key`` to ``path`` (.npz, atomically)."""
    arrays = {f"{name}_{cal:d}{mass:d}": values for (cal, mass), (pk, r) in spectra.items()
              for name, values in (("pk", pk), ("r", r))}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, key=key, seconds=seconds, **arrays)


def band_mean(values, band):
    """Mean of ``values`` over the shells in ``band`` (NaN when the band is empty)."""
    return float(values[band].mean()) if band.any() else float("nan")


def summarize(pk, r, base_pk, truth, bands):
    """The table's figures (module docstring) of samples ``pk``, ``r`` (C, S, nbins) against the
    baseline's ``base_pk`` and the ``truth`` dict (pk, r_lr: (C, nbins)); per-k arrays too."""
    half, full, low = bands
    mean, base = pk.mean(axis=(0, 1)), base_pk.mean(axis=(0, 1))
    scatter, base_scatter = (np.sqrt(p.var(axis=1, ddof=1).mean(axis=0)) for p in (pk, base_pk))
    dev, z = mean / base - 1, np.abs(mean - base) / base_scatter
    r_mean, truth_ratio = r.mean(axis=(0, 1)), mean / truth["pk"].mean(axis=0)
    return {"dP_half": float(np.abs(dev[half]).max()), "dP_nyq": float(np.abs(dev[full]).max()),
            "z_max": float(z[full].max()), "scatter_ratio": band_mean(scatter / base_scatter, full),
            "r_half": band_mean(r_mean, half), "r_min_half": float(r_mean[half].min()),
            "pk_truth_low": band_mean(truth_ratio, low),
            "r_low": band_mean(r_mean, low), "r_lr_low": band_mean(truth["r_lr"].mean(axis=0), low),
            "per_k": {"pk_ratio_baseline": dev + 1, "z": z, "scatter_ratio": scatter / base_scatter,
                      "r": r_mean, "pk_ratio_truth": truth_ratio}}


COLUMNS = (("model", "model", "s"), ("sampler", "sampler", "s"), ("NFE", "nfe", "d"), ("steps", "steps", "d"),
           ("LRc", "lr_consistency", "g"), ("cal", "calibration", "s"), ("mass", "mass", "s"), ("dP/2", "dP_half", ".4f"),
           ("dP", "dP_nyq", ".4f"), ("z", "z_max", ".2f"), ("s/s_b", "scatter_ratio", ".3f"), ("r/2", "r_half", ".4f"),
           ("rmin/2", "r_min_half", ".4f"), ("P/Pt lo", "pk_truth_low", ".4f"),
           ("r lo", "r_low", ".4f"), ("rLR lo", "r_lr_low", ".4f"), ("s/sample", "seconds", ".3f"))
"""Table columns: header, result key, number format (LRc: the LR band fraction imposed at sampling, or
"model": the model's own trained band, none for a model trained without one; cal: without or
with the model's corner transfer and void map; mass: generated mass as is, or set to the LR's)."""


def table(rows):
    """Aligned plain-text table of result rows (one line per configuration)."""
    cells = [[head for head, _, _ in COLUMNS]]
    cells += [["model" if row[key] is None else format(row[key], fmt) for _, key, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in cells)


def truth_spectra(lr, hr, box_size):
    """k [h/Mpc], the HR truth's P(k) and the LR's r(k) with it, (C, nbins), of every crop."""
    ens = [stats.ensemble(truth, [crop], box_size) for truth, crop in zip(hr, lr)]
    return {"k": ens[0].k, "pk": np.stack([e.pk_truth for e in ens]),
            "r_lr": np.stack([e.r_samples[0] for e in ens])}


def baseline_settings(steps, bf16):
    """The baseline's generation settings: ddpm over ``steps`` trained levels without LR consistency."""
    return GenerationSettings("ddpm", steps, bf16=bf16)


def run_benchmark(models, lr, hr, samplers, nfes, lr_modes, n_seeds, baseline_steps, batch, bf16,
                  report=lambda shells, rows: None, baseline_cache=None):
    """Baseline (the first model's) first, then every (LR mode, model, sampler, NFE) the model
    accepts; ``models``: {label: LoadedModel} on one tile and grid. Returns (shells, result rows)
    with shells = {k, k_nyquist, k_lr_half} [h/Mpc]. ``report(shells, rows)`` is called after
    each row (a long run keeps what it has measured). ``baseline_cache``: None or (.npz path, key
    of :func:`baseline_key`) to take the baseline's spectra from, or to store them in."""
    model = next(iter(models.values()))
    box_size = model.tile * model.spacing
    truth = truth_spectra(lr, hr, box_size)
    k, k_nyq = truth["k"], stats.k_nyquist(model.tile, box_size)
    k_lr_half = 0.5 * np.pi / model.lr_spacing
    bands = (k < k_nyq / 2, k < k_nyq, k < k_lr_half)
    shells = {"k": k, "k_nyquist": k_nyq, "k_lr_half": k_lr_half}
    configs = [(next(iter(models)), baseline_settings(baseline_steps, bf16))]
    for fraction in lr_modes:
        for label, candidate in models.items():
            for sampler in samplers:
                for steps in sorted({steps_for(sampler, n) for n in nfes}):
                    settings = GenerationSettings(sampler, steps, lr_consistency=fraction, bf16=bf16)
                    if accepts(candidate, settings):
                        configs.append((label, settings))
    cache_path, cache_key = baseline_cache or (None, None)
    cached = cached_spectra(cache_path, cache_key)
    if cached:
        tqdm.write(f"baseline spectra from {cache_path}")
    to_sample = configs[1:] if cached else configs
    first_of_each = {label: settings for label, settings in reversed(to_sample)}
    for label, settings in first_of_each.items():                  # warm up every model once
        generate_tiles(models[label], settings.replace(steps=1), lr[:batch], None, None,
                       range(min(batch, len(lr))), batch)
    bar = tqdm(total=sum(evaluations(s.sampler, s.steps) for _, s in to_sample) * len(lr) * n_seeds, unit="eval")
    rows, base = [], {}
    for index, (label, settings) in enumerate(configs):
        sampler, steps, fraction = settings.sampler, settings.steps, settings.lr_consistency
        bar.set_postfix_str(f"{label} {sampler} x{steps} LRc {fraction}")
        if index == 0 and cached:
            spectra, seconds = cached
        else:
            spectra, seconds = sample_spectra(models[label], lr, hr, n_seeds, settings, batch,
                                              progress=index == 0)     # the baseline takes most of the time
            bar.update(evaluations(sampler, steps) * len(lr) * n_seeds)
            if index == 0 and cache_path:
                store_spectra(cache_path, cache_key, spectra, seconds)
        for (cal, mass), (pk, r) in spectra.items():
            base.setdefault((cal, mass), pk)
            rows.append({"model": label, "sampler": sampler, "nfe": evaluations(sampler, steps), "steps": steps,
                         "lr_consistency": fraction, "calibration": "on" if cal else "off",
                         "mass": "on" if mass else "off", "seconds": seconds,
                         **summarize(pk, r, base[cal, mass], truth, bands)})
        report(shells, rows)
    bar.close()
    return shells, rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", default=[str(DEFAULT_MODEL)],
                   help="Model checkpoints (training or inference) or run directories on one tile and grid; "
                        "the first one's ddpm is the baseline (default: the packaged model).")
    p.add_argument("--pairs", nargs="+", metavar="FILE",
                   help="Held-out paired box files (datasets lr, hr) on the model's grid spacings "
                        f"(default: simulate one tile-sized pair, seed {HELD_OUT_SEED}).")
    p.add_argument("--samplers", help=f"Comma-separated samplers (default {FULL['samplers']}).")
    p.add_argument("--nfe", help=f"Comma-separated network evaluations per sample (default {FULL['nfe']}).")
    p.add_argument("--seeds", type=int, help=f"Samples per crop, at least 2 (default {FULL['seeds']}).")
    p.add_argument("--baseline-steps", type=int,
                   help=f"Steps of the ddpm baseline over the trained levels (default {FULL['baseline_steps']}).")
    p.add_argument("--crops", type=int,
                   help=f"Tile-sized crops per file; one if the box is one tile (default {FULL['crops']}).")
    p.add_argument("--lr-consistency", choices=("both", "on", "off"), default="both",
                   help="Sample with the LR-consistent band replacement of --lr-fraction (on), with the model's "
                        "own trained band only (off; no band for a model trained without one), or both "
                        "(default both).")
    p.add_argument("--lr-fraction", type=float, default=0.5,
                   help="With LR consistency on, the band below this fraction of the LR Nyquist "
                        "comes from the LR (default 0.5).")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the network where the device computes bf16 natively "
                        "(CUDA; a CPU with avx512_bf16 or AMX; float32 elsewhere).")
    p.add_argument("--batch", type=int, default=8, help="Tiles per network batch (default 8).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the crop positions (default 0).")
    p.add_argument("--device", default=None, help="Torch device (default cuda when available, else cpu).")
    p.add_argument("--quick", action="store_true",
                   help=f"Smoke run: defaults {', '.join(f'{k} {v}' for k, v in QUICK.items() if FULL[k] != v)}.")
    p.add_argument("--json", default=None, help="Also write the results to this JSON file (atomically).")
    p.add_argument("--baseline-cache", metavar="FILE.npz",
                   help="Take the baseline's spectra from this file when it holds the same baseline "
                        "(checkpoint, crops, settings, seeds, batch), else store them there.")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def checked_lists(args):
    """(samplers, nfes, LR modes) from the options; InputError on bad values."""
    samplers = args.samplers.split(",")
    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown:
        raise InputError("--samplers", f"unknown {unknown}; choose from {sorted(SAMPLERS)}")
    try:
        nfes = [int(n) for n in args.nfe.split(",")]
    except ValueError:
        raise InputError("--nfe", f"expected comma-separated integers, got {args.nfe!r}") from None
    for flag, value, least in (("--nfe", min(nfes), 1), ("--seeds", args.seeds, 2), ("--crops", args.crops, 1),
                               ("--baseline-steps", args.baseline_steps, 1), ("--batch", args.batch, 1)):
        if value < least:
            raise InputError(flag, f"must be at least {least}, got {value}")
    modes = {"both": (None, args.lr_fraction), "on": (args.lr_fraction,), "off": (None,)}[args.lr_consistency]
    return samplers, nfes, modes


def main(argv=None):
    import torch
    args = parse_args(argv)
    hold_freed_memory()                           # as the emulator command does
    try:
        samplers, nfes, modes = checked_lists(args)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        models, paths = {}, [find_model(path) for path in args.model]
        for path in paths:
            models[model_label(path)] = load_model(path, device)
        model = next(iter(models.values()))
        if model.config.distill_steps:
            raise InputError("--model", f"{args.model[0]} is a distilled student: give its teacher first, "
                                        "whose ddpm is the baseline")
        for label, other in models.items():
            if (other.tile, other.spacing, other.lr_spacing) != (model.tile, model.spacing, model.lr_spacing):
                raise InputError("--model", f"{label} has another tile or grid than {args.model[0]}")
        with tempfile.TemporaryDirectory() as scratch:
            if not args.pairs:
                args.pairs = [os.path.join(scratch, "held_out.h5")]
                held_out_pair(args.pairs[0], model, model.tile)
            lr, hr = held_out_crops(args.pairs, model, args.crops, args.seed)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    settings = {key: value for key, value in vars(args).items() if key != "json"}

    def report(shells, rows):
        lines = table(rows).splitlines()
        tqdm.write("\n".join(lines if len(rows) == len(MEASURES) else lines[-len(MEASURES):]))
        if args.json:
            write_report(jsonable({"settings": settings, **shells, "rows": rows}), args.json)

    cache = (args.baseline_cache, baseline_key(paths[0], lr, baseline_settings(args.baseline_steps, args.bf16),
                                               args.seeds, args.batch)) if args.baseline_cache else None
    _, rows = run_benchmark(models, lr, hr, samplers, nfes, modes, args.seeds, args.baseline_steps,
                            args.batch, args.bf16, report, cache)
    print(f"{len(lr)} crops of {model.tile}^3 x {args.seeds} seeds, baseline ddpm x{args.baseline_steps}, "
          f"device {model.device}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
