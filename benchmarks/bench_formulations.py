"""Formulations compared at one fixed training budget on the same data (docs/formulations.md).

Trains one run per formulation in ``--runs`` (resumable: rerunning continues the runs), all with
the same U-Net, crops, optimiser, seed and number of steps, then prints the in-training
validation figures of each (held-out crops generated from their LR alone by dpmpp-2m, 20 steps):
P_SR / P_HR and r(k) averaged below half the LR Nyquist ("low") and below the crop's k_Nyq
("all"), the largest |P_SR / P_HR - 1| there, and the LR's own r for comparison. Usage::

    python benchmarks/bench_formulations.py --data default_model_run/train --runs formulation_runs \
        [--steps 200]
"""
import argparse
import json
import os

from emulator.config import TrainConfig
from emulator.train import train

CANDIDATES = {
    "palette (eps, reference)": dict(formulation="palette", lr_band=0.0, prediction="eps"),
    "residual (v)": dict(formulation="residual", lr_band=0.0, prediction="v"),
    "residual + band 0.5 (v)": dict(formulation="residual", lr_band=0.5, prediction="v"),
}
RECIPE = dict(preset="small", tile=32, core=16, batch=4, learning_rate=2e-4, ema=0.999, val_every=100,
              val_samples=2, save_every=50, log_every=10, seed=0)
"""Everything but the formulation: the default model's recipe (see its model card)."""

FIGURES = ("pk_ratio_low", "pk_maxdev_low", "r_low", "r_lr_low", "pk_ratio_all", "pk_maxdev_all",
           "r_all", "r_lr_all")


def run_dir(runs, name):
    """The run folder of a candidate: its name up to the parenthesis, in snake case."""
    slug = name.split(" (")[0].replace(" + ", "_").replace(" ", "_").replace(".", "")
    return os.path.join(runs, slug)


def validation_rows(path):
    """The validation records of a run's metrics.jsonl."""
    with open(os.path.join(path, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == "val"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True,
                   help="Directory of paired training boxes (the last one is held out).")
    p.add_argument("--runs", required=True, help="Directory for one run per formulation.")
    p.add_argument("--steps", type=int, default=200, help="Training steps of every run.")
    p.add_argument("--only", choices=sorted(CANDIDATES), action="append",
                   help="Train only these (default: all); the table shows every run found.")
    args = p.parse_args(argv)
    for name in args.only or CANDIDATES:
        config = TrainConfig(data=args.data, steps=args.steps, **RECIPE, **CANDIDATES[name])
        train(config, run_dir(args.runs, name), resume=True)
    print(f"{'formulation':<26}{'step':>6}" + "".join(f"{f:>15}" for f in FIGURES))
    for name in CANDIDATES:
        path = run_dir(args.runs, name)
        if os.path.exists(os.path.join(path, "metrics.jsonl")):
            for row in validation_rows(path):
                print(f"{name:<26}{row['step']:>6}" + "".join(f"{row[f]:>15.3f}" for f in FIGURES))


if __name__ == "__main__":
    main()
