"""The fidelity goal, measured: models against the trivial predictors on held-out boxes.

Each model (``--model``, several allowed) outpaints the LR of every held-out pair (``--pairs``,
simulated with seeds never used for training) ``--samples`` times (seeds 1..K). Beside them stand
the two trivial predictors of the HR: the LR on the HR grid as it is, and the linear emulator LR x
T(k) with T fitted on the training pairs (stored in the model, else ``--train-pairs``). Every
predictor goes through the same statistics (sims.validation.validate_fields, CIC-deconvolved):

- ``dP lr/2``, ``r-rLR``: max |P / P_HR - 1| and min r(k) - r_LR(k) below half the LR particle
  Nyquist (goal: <= 0.02 and >= -0.005);
- ``dP kN/2``, ``dP kN``: max |P / P_HR - 1| below k_Nyq / 2 and k_Nyq (goal: 0.05, 0.10);
- ``P>kN``: max P / P_HR beyond k_Nyq (goal <= 1.5);
- ``rmean-rLR``: min over k < k_Nyq of r(mean of the samples, HR) - r_LR (goal >= 0);
- ``rinf-rLR``: the same for the mean of infinitely many samples (what they share,
  ``sims.stats.Ensemble.r_common``; 2 samples or more): below 0, more samples cannot close the gap;
- ``se ...``: the standard error over boxes of the r gaps at the shell of their minimum and of
  ``dQ`` at its triangle (boxes are independent; the samples of one box are not);
- ``PDF L1``: integral of |p - p_HR| over log10(1 + delta) (goal <= 0.08);
- ``dQ``: max |Q / Q_HR - 1| over the report's triangles (goal <= 0.05, below the LR's);
- ``cover``: fraction of HR modes between the LR Nyquist and k_Nyq inside the samples' range
  over its nominal value (K - 1) / (K + 1) (goal 1 +- 0.15);
- ``seam``: largest seam ratio over the truth's own (1: no seams).

Spectra, PDFs and Q are summed or averaged over the boxes before the figures. Prints one row per
predictor and the per-k table of P ratio and r, with the r of the mean of K samples of a
calibrated sampler (``sims.stats.calibrated_mean_r``) whose posterior mean has the model's r of
infinitely many (above the measured one: the samples spread less than a calibrated posterior's at
that k) or only the LR's r (a sampler that knows what the LR knows, no more); ``--json`` keeps
everything. Usage::

    python benchmarks/bench_heldout.py --model emulator/default_model --pairs heldout/*.h5 \
        [--samples 2] [--steps 20] [--json out.json]
    python benchmarks/bench_heldout.py --pairs big/box_0000.h5 --ranks 2   # outpainted by mpiexec
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from emulator.checkpoint import find_model, load_model
from emulator.config import DEFAULT_MODEL, GenerationSettings
from emulator.runtime import hold_freed_memory
from outpaint.run import upsample_box
from sims import stats
from sims.h5io import read_field
from sims.pairfile import read_pair
from sims.validation import jsonable, validate_fields, write_report

K_ROWS = 8


def outpaint_samples(model_file, pair, samples, args, work):
    """K outpainted samples of ``pair``'s LR (seeds 1..K), in this process or, with ``--ranks``
    N > 1, by ``mpiexec -n N emulator upsample`` (one thread per rank); returns (list of fields,
    wall seconds)."""
    fields, start = [], time.perf_counter()
    for seed in range(1, samples + 1):
        out = os.path.join(work, f"sr_{seed}.h5")
        if args.ranks > 1:
            own = [f"--{name}={value}" for name, value in (("sampler", args.sampler), ("steps", args.steps),
                                                            ("lr-consistency", args.lr_consistency))
                   if value is not None]
            own += [f"--{'' if on else 'no-'}{name}" for name, on in switches(args)]
            command = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(args.ranks),
                       os.path.join(os.path.dirname(sys.executable), "emulator"), "upsample",
                       "--model", model_file, "--lr", f"{pair}:lr", "--out", out, "--seed", str(seed),
                       "--batch", str(args.batch), "--force", *own]
            subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        else:
            settings = GenerationSettings(args.sampler, args.steps, lr_consistency=args.lr_consistency,
                                          mass_conservation=args.mass_conservation,
                                          corner_filter=args.corner_filter, void_map=args.void_map)
            upsample_box(model_file, f"{pair}:lr", out, settings,
                         seed=seed, batch_size=args.batch, force=True)
        fields.append(read_field(f"{out}:sr", index=0).data)
    return fields, time.perf_counter() - start


def switches(args):
    """(emulator upsample's flag name, on) of the post-processing steps ``args`` turns on or off."""
    return (("mass-conservation", args.mass_conservation), ("corner-filter", args.corner_filter),
            ("void-map", args.void_map))


def transfer_of(model, train_pairs):
    """T(k) from the model, else fitted on ``train_pairs`` files, else None."""
    if model is not None and model.lr_transfer is not None:
        return model.lr_transfer
    if not train_pairs:
        return None
    pairs = [read_pair(p)[:2] for p in train_pairs]
    k, t = stats.fit_transfer(pairs, float(read_pair(train_pairs[0])[2]["box_size"]))
    return {"k": k.tolist(), "t": t.tolist()}


def box_statistics(hr, samples, lr, box_size, core):
    """The validation report of ``samples`` and r(k) of their mean with ``hr``."""
    report = validate_fields(hr, samples, box_size, lr=lr, mas="cic", core=core)
    return report, stats.correlation(np.mean(samples, axis=0), hr, box_size, mas="cic")[1]


def combine(per_box, samples):
    """Figures of one predictor from its per-box (report, r of the mean) pairs of ``samples``
    samples each: spectra summed over boxes, PDFs, Q and r averaged over boxes; ``se_*``: standard
    errors over boxes (NaN for one box)."""
    reports = [r for r, _ in per_box]
    first = reports[0]
    p_pred = np.sum([r["pk_pred"] for r in reports], axis=0)
    p_truth = np.sum([r["pk_truth"] for r in reports], axis=0)
    r_lr = np.array([np.asarray(r["r_lr"], dtype=float) for r in reports])
    r_mean = np.array([r_mean for _, r_mean in per_box], dtype=float)
    r_common = np.array([np.asarray(r["r_common"], dtype=float) for r in reports])
    q_pred = np.array([r["bispectrum"]["Q_pred"] for r in reports], dtype=float)
    q_truth = np.array([r["bispectrum"]["Q_truth"] for r in reports], dtype=float)
    out = {"k": np.asarray(first["k"]), "nmodes": np.asarray(first["nmodes"]), "k_nyquist": first["k_nyquist"],
           "pk_ratio": p_pred / p_truth, "samples": samples,
           "r": np.mean([r["r"] for r in reports], axis=0), "r_lr": r_lr.mean(axis=0),
           "r_mean": r_mean.mean(axis=0), "r_common": r_common.mean(axis=0),
           "se_rmean_gap": standard_error(r_mean - r_lr), "se_rinf_gap": standard_error(r_common - r_lr),
           "se_q_ratio": standard_error(q_pred / q_truth)}
    out["pdf_l1"] = float(np.mean([np.sum(np.abs(np.asarray(r["pdf_pred"]) - r["pdf_truth"])
                                          * np.diff(r["pdf_bins"])) for r in reports]))
    q_ratio = q_pred.mean(axis=0) / q_truth.mean(axis=0)
    out["dq"] = float(np.nanmax(np.abs(q_ratio - 1)))
    out["se_dq"] = float(out["se_q_ratio"][np.nanargmax(np.abs(q_ratio - 1))])
    out["seam"] = float(np.max([np.asarray(r["seam"]["ratio"]) / r["seam"]["ratio_truth"]
                                for r in reports]))
    if "calibration" in first:
        cov = np.mean([r["calibration"]["coverage"] for r in reports], axis=0)
        cal = first["calibration"]
        out["coverage"] = (cov, cal["nominal_coverage"], np.asarray(cal["k"]))
    return out


def standard_error(per_box):
    """Standard error of the mean over boxes (axis 0) of ``per_box``; NaN for one box."""
    n = len(per_box)
    return np.std(per_box, axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(np.shape(per_box)[1:], np.nan)


def gap_and_error(k, k_max, r, r_reference, se):
    """min over the shells below ``k_max`` of r - r_reference, and ``se`` at that shell."""
    gap = np.where(np.asarray(k) < k_max, np.asarray(r) - r_reference, np.nan)
    if np.isnan(gap).all():
        return np.nan, np.nan
    i = np.nanargmin(gap)
    return gap[i], se[i]


def figures(c, k_lr):
    """The goal's scalar figures of combined statistics ``c``; k_lr: the LR particle Nyquist."""
    k, kn, ratio = c["k"], c["k_nyquist"], c["pk_ratio"]
    low = stats.band_figures(k, k_lr / 2, ratio, c["r"], c["r_lr"])
    half = stats.band_figures(k, kn / 2, ratio)
    full = stats.band_figures(k, kn, ratio)
    beyond = k >= kn
    row = {"dP lr/2": low["pk_ratio_maxdev"], "r-rLR": low["r_gap_min"],
           "dP kN/2": half["pk_ratio_maxdev"], "dP kN": full["pk_ratio_maxdev"],
           "P>kN": ratio[beyond].max() if beyond.any() else np.nan,
           "PDF L1": c["pdf_l1"], "dQ": c["dq"], "se dQ": c["se_dq"], "seam": c["seam"]}
    row["rmean-rLR"], row["se rmean"] = gap_and_error(k, kn, c["r_mean"], c["r_lr"], c["se_rmean_gap"])
    if np.isfinite(c["r_common"]).any():          # r of the mean of infinitely many samples
        row["rinf-rLR"], row["se rinf"] = gap_and_error(k, kn, c["r_common"], c["r_lr"], c["se_rinf_gap"])
    if "coverage" in c:
        cov, nominal, k_cal = c["coverage"]
        band = (k_cal >= k_lr) & (k_cal < kn)
        row["cover"] = float(cov[band].mean() / nominal) if band.any() else np.nan
    return {name: float(v) for name, v in row.items()}


def print_tables(rows, combined, k_lr):
    columns = ["dP lr/2", "r-rLR", "dP kN/2", "dP kN", "P>kN", "rmean-rLR", "se rmean", "rinf-rLR", "se rinf",
               "PDF L1", "dQ", "se dQ", "cover", "seam", "s/tile"]
    print(f"{'predictor':<24}" + "".join(f"{c:>10}" for c in columns))
    for name, row in rows.items():            # the r gaps are 1e-4 where the LR's r is near 1
        print(f"{name:<24}" + "".join(f"{row.get(c, np.nan):>10.{5 if 'rLR' in c or 'se r' in c else 3}f}"
                                        for c in columns))
    for name, c in combined.items():       # the shell of P>kN: a shell of few modes is mostly the truth's scatter
        beyond = np.flatnonzero(c["k"] >= c["k_nyquist"])
        if beyond.size:
            i = beyond[np.argmax(c["pk_ratio"][beyond])]
            print(f"P>kN of {name}: at {c['k'][i]:.2f} h/Mpc, a shell of {c['nmodes'][i]:.0f} mode(s) per box")
    for name, c in combined.items():
        k = c["k"]
        picks = np.flatnonzero(k < c["k_nyquist"])
        picks = picks[np.unique(np.linspace(0, len(picks) - 1, K_ROWS).round().astype(int))]
        calibrated = [stats.calibrated_mean_r(c[r], c["samples"]) if c["samples"] > 1 else np.full_like(k, np.nan)
                      for r in ("r_common", "r_lr")]                  # a baseline is one field, not samples
        print(f"\n{name}: k [h/Mpc] | P / P_HR | r | r of the mean of {c['samples']} | of infinitely many | "
              f"calibrated mean of {c['samples']} with that | with the LR's | r_LR  (LR resolves k < {k_lr:.2f})")
        for i in picks:
            print(f"  {k[i]:6.2f} {c['pk_ratio'][i]:8.3f} {c['r'][i]:7.4f} {c['r_mean'][i]:7.4f} "
                  f"{c['r_common'][i]:7.4f} {calibrated[0][i]:7.4f} {calibrated[1][i]:7.4f} {c['r_lr'][i]:7.4f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", action="append", default=None, metavar="[LABEL=]PATH",
                   help="Model checkpoint or directory (repeatable); default: the packaged model.")
    p.add_argument("--pairs", nargs="+", required=True, help="Held-out paired files (lr, hr).")
    p.add_argument("--train-pairs", nargs="*", default=[],
                   help="Training pair files for T(k) when the model does not carry it.")
    p.add_argument("--samples", type=int, default=2, help="Outpainted samples per box and model.")
    p.add_argument("--sampler", default=None, help="Default: each model's own (GenerationSettings.for_model).")
    p.add_argument("--steps", type=int, default=None, help="Default: each model's own.")
    p.add_argument("--lr-consistency", type=float, default=None, metavar="F",
                   help="The LR's band below F times its Nyquist (emulator upsample's option; default: "
                        "each model's trained band).")
    p.add_argument("--mass-conservation", action=argparse.BooleanOptionalAction, default=True,
                   help="Each tile's generated voxels hold the LR's mass (emulator upsample's option).")
    p.add_argument("--corner-filter", action=argparse.BooleanOptionalAction, default=True,
                   help="The models' corner transfers, where they carry one (emulator upsample's option).")
    p.add_argument("--void-map", action=argparse.BooleanOptionalAction, default=True,
                   help="The models' void maps, where they carry one (emulator upsample's option).")
    p.add_argument("--batch", type=int, default=8, help="Tiles per network batch.")
    p.add_argument("--ranks", type=int, default=1,
                   help="Outpaint with mpiexec on this many ranks of one thread (1: in this process).")
    p.add_argument("--json", default=None, help="Write every figure to this JSON file.")
    args = p.parse_args(argv)
    hold_freed_memory()                           # as the emulator command does
    models = [m.split("=", 1) if "=" in m else (os.path.basename(os.path.normpath(m)), m)
              for m in map(str, args.model or [DEFAULT_MODEL])]
    models = [(label, find_model(path)) for label, path in models]

    first = load_model(models[0][1])
    transfer = transfer_of(first, args.train_pairs)
    per_box = {"LR as is": [], "LR x T(k)": []} if transfer else {"LR as is": []}
    samples_of = dict.fromkeys(per_box, 1)        # the baselines are one field each
    seconds = {}
    k_lr = np.pi / first.lr_spacing
    for pair in args.pairs:
        lr, hr, attrs = read_pair(pair)
        box_size = float(attrs["box_size"])
        baselines = {"LR as is": lr}
        if transfer:
            baselines["LR x T(k)"] = stats.apply_transfer(lr, box_size, np.asarray(transfer["k"]),
                                                             np.asarray(transfer["t"]))
        for name, field in baselines.items():
            per_box[name].append(box_statistics(hr, [field], lr, box_size, first.core))
        for label, path in models:
            with tempfile.TemporaryDirectory() as work:
                samples, spent = outpaint_samples(path, pair, args.samples, args, work)
            tiles = (hr.shape[0] // first.core) ** 3 * args.samples
            seconds.setdefault(label, []).append(spent / tiles)
            per_box.setdefault(label, []).append(box_statistics(hr, samples, lr, box_size, first.core))
            print(f"{label} on {pair}: {spent:.0f} s", file=sys.stderr, flush=True)
    combined = {name: combine(boxes, samples_of.get(name, args.samples)) for name, boxes in per_box.items()}
    rows = {name: figures(c, k_lr) for name, c in combined.items()}
    for label, values in seconds.items():
        rows[label]["s/tile"] = float(np.mean(values))
    sampling = [f"{args.sampler or 'its own sampler'}, {args.steps or 'its own'} steps"]
    if args.lr_consistency is not None:
        sampling.append(f"LR band {args.lr_consistency}")
    sampling += [f"no {name.replace('-', ' ')}" for name, on in switches(args) if not on]
    print(f"{len(args.pairs)} held-out box(es), {args.samples} sample(s) each, {', '.join(sampling)}; "
          f"LR particle Nyquist {k_lr:.2f} h/Mpc")
    print_tables(rows, combined, k_lr)
    if args.json:
        write_report(jsonable({"args": vars(args), "rows": rows, "combined": combined}), args.json)


if __name__ == "__main__":
    main()
