"""Fidelity of a trained model on held-out pairs, outpainted box by box (docs/fidelity.md).

A held-out pair (new seed, the model's grid spacing and LR resolution, ``--blocks`` outpainting
blocks per side) is simulated, its LR box upsampled by 8-phase outpainting and compared with the
HR truth. Runs, all with the same sampler:

- ``plain`` (seeds 1 and 2): the seed-to-seed difference of P(k) is the scale against which
  the other differences are judged;
- ``shifted``: the tile grid moved by one block along every axis (LR rolled by +core voxels,
  the output rolled back), seed 1: periodic wrapping means the statistics must not change;
- ``lr-consistent``: x0 estimates take k below ``--lr-consistency`` of the LR Nyquist from the LR;
- ``no mass conservation``: tiles keep the mass the network gives them (seed 1);

and two trivial predictors of the HR truth, with the same columns (0 s): ``LR as is`` and
``LR x T(k)``, the LR times the transfer function T(k) = sqrt(P_HR / P_LR) of the training pairs
(the checkpoint's ``lr_transfer``, else fitted on ``--train-pairs``; the row is skipped, saying
why, when neither exists).

Per run: max |P_SR / P_HR - 1| for k < k_Nyq / 2 and k < k_Nyq (HR grid), the least r(k) - r_LR(k)
for k below half the LR Nyquist, the seam ratio (1 = no seams; the truth's own is printed), and for the shifted run max |P_shifted / P_plain - 1| next to the plain
seed-to-seed value. Prints a table, writes JSON. Usage::

    python benchmarks/bench_fidelity.py [--model DIR] [--blocks 4] [--seed 90210] [--json out.json]
                                        [--train-pairs default_model_run/train]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

from emulator.checkpoint import load_model
from emulator.checkpoint import find_model
from emulator.config import DEFAULT_MODEL, GenerationSettings
from emulator.runtime import hold_freed_memory
from emulator.validate import transfer_from_pairs
from heldout import HELD_OUT_SEED, held_out_pair
from outpaint.run import upsample_box
from sims import stats
from sims.h5io import read_field
from sims.pairfile import read_pair, write_pair
from sims.validation import BASELINE_LABELS, jsonable, validate_fields, write_report


def upsample(model_dir, lr_spec, out, args, seed, options):
    """Outpaint ``lr_spec`` into ``out`` with GenerationSettings ``options`` changed from the
    flags'; returns (sr field (n, n, n), seconds)."""
    start = time.perf_counter()
    settings = GenerationSettings(args.sampler, args.steps, **options)
    upsample_box(model_dir, lr_spec, out, settings, seed=seed, batch_size=args.batch, force=True)
    return read_field(f"{out}:sr", index=0).data, time.perf_counter() - start


def figures(report, k_lr_half, part=None):
    """A row: P ratio deviations, mean P ratio and least r - r_LR where the LR resolves, of the
    run's prediction (``part`` None: also its seam ratio) or of ``report["baselines"][part]``."""
    pred = report if part is None else report["baselines"][part]
    resolved = stats.band_figures(report["k"], k_lr_half, pred["pk_ratio"], pred["r"], report["r_lr"])
    summary = pred["summary"]
    row = {"max_dev_half_nyq": summary["max_abs_pk_ratio_dev_half_nyq"],
           "max_dev_nyq": summary["max_abs_pk_ratio_dev_nyq"],
           "min_r_minus_r_lr": resolved["r_gap_min"], "pk_ratio_low_k": resolved["pk_ratio_mean"]}
    if part is None:
        row.update(seam_ratio=report["seam"]["ratio"], seam_ratio_truth=report["seam"]["ratio_truth"])
    return row


def lr_transfer(model, train_pairs):
    """T(k) of the linear emulator: the checkpoint's, else fitted on ``train_pairs``; None (and a
    line saying why) when neither is available."""
    stored = model.lr_transfer
    if stored is not None:
        return stored
    if os.path.isdir(train_pairs):
        return transfer_from_pairs(train_pairs)
    print(f"LR x T(k) row skipped: the checkpoint stores no lr_transfer and {train_pairs} (the "
          "training pairs, simulated by 'make default-model') does not exist")
    return None


def max_ratio_dev(a, b, box_size):
    """max |P_a / P_b - 1| over k < k_Nyq."""
    pa, pb = stats.power_spectrum(a, box_size), stats.power_spectrum(b, box_size)
    ratio = stats.power_ratio(pa.power, pb.power)
    return stats.band_figures(pa.k, stats.k_nyquist(a.shape[0], box_size), ratio)["pk_ratio_maxdev"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="Model checkpoint or directory.")
    p.add_argument("--blocks", type=int, default=4, help="Outpainting blocks per side of the box.")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="Seed of the held-out simulation.")
    p.add_argument("--sampler", default="dpmpp-2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8, help="Tiles per network batch.")
    p.add_argument("--lr-consistency", type=float, default=0.5, metavar="F")
    p.add_argument("--json", default=None, help="Write the figures to this JSON file.")
    p.add_argument("--train-pairs", default="default_model_run/train", metavar="DIR",
                   help="Training pairs on which to fit T(k) of the 'LR x T(k)' row when the "
                        "checkpoint stores none.")
    p.add_argument("--work", default=None, metavar="DIR",
                   help="Keep the pair and the emulated fields here (default: a temporary folder).")
    args = p.parse_args(argv)
    hold_freed_memory()                           # as the emulator command does
    args.model = find_model(args.model)

    model = load_model(args.model)
    core = model.core
    transfer = lr_transfer(model, args.train_pairs)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work or scratch
        os.makedirs(tmp, exist_ok=True)
        pair = os.path.join(tmp, "pair.h5")
        held_out_pair(pair, model, args.blocks * model.core, args.seed)
        lr, hr, attrs = read_pair(pair)
        box_size = float(attrs["box_size"])
        k_lr_half = 0.5 * np.pi / model.lr_spacing
        shifted_pair = os.path.join(tmp, "shifted.h5")
        write_pair(shifted_pair, np.roll(lr, core, axis=(0, 1, 2)), np.roll(hr, core, axis=(0, 1, 2)),
                   box_size=box_size, redshift=float(attrs["redshift"]), cosmology=attrs["cosmology"])
        runs = {}
        for name, spec, seed, options in (
                ("plain", pair, 1, {}), ("plain seed 2", pair, 2, {}), ("shifted", shifted_pair, 1, {}),
                (f"lr-consistent {args.lr_consistency:g}", pair, 1, {"lr_consistency": args.lr_consistency}),
                ("no mass conservation", pair, 1, {"mass_conservation": False})):
            out = os.path.join(tmp, "sr_" + name.replace(" ", "_") + ".h5")
            sr, seconds = upsample(args.model, f"{spec}:lr", out, args, seed, options)
            if name == "shifted":
                sr = np.roll(sr, -core, axis=(0, 1, 2))
            runs[name] = (sr, seconds)
            print(f"{name}: {seconds:.0f} s", file=sys.stderr, flush=True)

    rows, reports = {}, {}
    for name, (sr, seconds) in runs.items():
        reports[name] = validate_fields(hr, [sr], box_size, lr=lr, mas="cic", core=core,
                                        lr_transfer=transfer)
        rows[name] = {**figures(reports[name], k_lr_half), "seconds": seconds}
    for part, name in BASELINE_LABELS.items():
        if part in reports["plain"]["baselines"]:
            rows[name] = {**figures(reports["plain"], k_lr_half, part), "seconds": 0.0}
    plain = runs["plain"][0]
    rows["plain seed 2"]["max_dev_vs_plain"] = max_ratio_dev(runs["plain seed 2"][0], plain, box_size)
    rows["shifted"]["max_dev_vs_plain"] = max_ratio_dev(runs["shifted"][0], plain, box_size)

    n = hr.shape[0]
    print(f"held-out pair: seed {args.seed}, {box_size:g} Mpc/h, HR {n}^3, LR "
          f"{round(box_size / model.lr_spacing)}^3 particles; tile {model.tile}, core {core}; "
          f"{args.sampler} {args.steps} steps; k_Nyq/2 = {stats.k_nyquist(n, box_size) / 2:.2f}, "
          f"LR resolves k < {k_lr_half:.2f} h/Mpc")
    print(f"{'run':<22}{'|dP/P| k<kN/2':>14}{'|dP/P| k<kN':>13}{'P ratio low k':>14}"
          f"{'min r-r_LR':>12}{'seam x,y,z':>20}{'vs plain':>10}{'s':>7}")
    for name, row in rows.items():
        seam = ",".join(f"{v:.2f}" for v in row.get("seam_ratio", ())) or "-"
        vs = row.get("max_dev_vs_plain")
        print(f"{name:<22}{row['max_dev_half_nyq']:>14.3f}{row['max_dev_nyq']:>13.3f}"
              f"{row['pk_ratio_low_k']:>14.3f}{row['min_r_minus_r_lr']:>12.3f}{seam:>20}"
              f"{'' if vs is None else f'{vs:.3f}':>10}{row['seconds']:>7.0f}")
    truth_seam = ",".join(f"{v:.2f}" for v in rows["plain"]["seam_ratio_truth"])
    print(f"seam ratio of the truth itself: {truth_seam}")
    if args.json:
        write_report(jsonable({"args": vars(args), "box_size": box_size, "n": n, "runs": rows,
                               "lr_transfer": transfer}), args.json)


if __name__ == "__main__":
    main()
