"""Outpainting cost: network evaluations, sequential phases, the planner's decomposition figures,
and strong scaling of the MPI driver on this machine.

1. ``reference``: the 8x TNG300 case (528^3, tile 48, core 24) with our schedule (tiles x steps,
   8 phases of independent tiles) against the reference's raster scheme (9261 serial tiles x 2000
   ancestral steps; Rouhiainen et al. 2023, arXiv:2311.05217).
2. ``plan``: the planner's simulated phases, load balance, halo bytes and memory per rank for
   1024^3 and 2048^3 boxes on 8..1024 ranks (tile 48, core 16: the largest core <= 24 with a
   valid halo that tiles a power-of-two box).
3. ``scaling``: wall time of ``upsample_box`` with an untrained 'tiny' U-Net (a 32^3 box of
   tile 16, core 8: 64 tiles) on 1 and 2 MPI ranks (one thread each), parallel efficiency
   T1 / (2 T2). Generation time only: process start and imports are excluded.

Usage: python benchmarks/bench_outpaint.py [--part reference|plan|scaling|all] [--json FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from outpaint.plan import Plan

REFERENCE_TILES, REFERENCE_STEPS = 9261, 2000


def reference_comparison(steps=20, batch_size=8, ranks=(1, 11)):
    """Network evaluations and sequential work at 528^3 against the reference scheme."""
    rows = []
    for r in ranks:
        d = Plan(528, 48, 24, r).describe(steps=steps, batch_size=batch_size)
        rows.append({"ranks": r, "phases": d["phases"], "tiles": d["tiles"],
                     "network_evaluations": d["network_evaluations"],
                     "sequential_batched_evaluations": d["sequential_evaluations"],
                     "load_balance": d["load_balance"]})
    ref = REFERENCE_TILES * REFERENCE_STEPS
    return {"steps": steps, "batch_size": batch_size, "ours": rows,
            "reference": {"tiles": REFERENCE_TILES, "steps": REFERENCE_STEPS,
                          "network_evaluations": ref, "sequential_tiles": REFERENCE_TILES},
            "evaluation_ratio": ref / rows[0]["network_evaluations"]}


def plan_figures(sizes=(1024, 2048), tile=48, core=16, ranks=(8, 16, 32, 64, 128, 256, 512, 1024)):
    """Planner summary per (box, ranks): phases, load balance, halo bytes, memory per rank."""
    out = []
    for n in sizes:
        for r in ranks:
            d = Plan(n, tile, core, r).describe()
            out.append({"n": n, "ranks": r, "blocks_per_axis": d["blocks_per_axis"],
                        "phases": d["phases"], "max_tiles_per_rank_per_phase": max(t["max"] for t in d["tiles_per_rank"]),
                        "load_balance": round(d["load_balance"], 4),
                        "halo_MiB_max_rank": max(d["halo_bytes_max_rank"]) / 2**20,
                        "exchanges": sum(1 for h in d["halo_bytes_max_rank"] if h),
                        "memory_per_rank_GiB": round(d["memory_per_rank_bytes"] / 2**30, 3)})
    return out


def make_inputs(directory, n=32, tile=16, core=8):
    """An untrained tiny U-Net checkpoint and an n^3 lognormal LR box on its HR grid."""
    import h5py
    import torch

    from emulator import checkpoint
    from emulator.config import TrainConfig
    from emulator.normalization import Normalization
    torch.manual_seed(0)
    config = TrainConfig(preset="tiny", tile=tile, core=core)
    meta = checkpoint.ModelMeta(config=config, spacing=1.0, lr_spacing=2.0,
                                normalization=Normalization(shift=0.0, scale=0.02))
    model = os.path.join(directory, "tiny.pt")
    checkpoint.save_inference_model(model, meta, checkpoint.build_net(config))
    rho = np.exp(0.5 * np.random.default_rng(0).standard_normal((n,) * 3))
    lr = os.path.join(directory, "lr.h5")
    with h5py.File(lr, "w") as f:
        f["lr"] = (rho / rho.mean() - 1).astype(np.float32)
        f.attrs["box_size"] = float(n)
    return model, lr


def worker(model, lr, out, steps, batch_size):
    """One timed upsample_box call on every rank; rank 0 prints the slowest rank's seconds."""
    from mpi4py import MPI

    from outpaint.run import upsample_box
    comm = MPI.COMM_WORLD
    comm.Barrier()
    start = time.perf_counter()
    upsample_box(model, lr, out, steps=steps, batch_size=batch_size, force=True)
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    if comm.Get_rank() == 0:
        print(json.dumps({"seconds": seconds}))


def strong_scaling(steps=4, batch_size=8, ranks=(1, 2), repeat=3):
    """Wall time on 1 and 2 ranks (mpiexec, OMP_NUM_THREADS=1; best of ``repeat`` runs, as other
    work on a shared machine only ever slows a run down) and the parallel efficiency."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        model, lr = make_inputs(tmp)
        times = {}
        for r in ranks:
            cmd = [mpiexec, "-n", str(r), sys.executable, __file__, "--worker", model, lr,
                   os.path.join(tmp, f"sr{r}.h5"), "--steps", str(steps), "--batch", str(batch_size)]
            runs = [subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                    for _ in range(repeat)]
            times[r] = min(json.loads(p.stdout.strip().splitlines()[-1])["seconds"] for p in runs)
    return {"box": 32, "tiles": 64, "steps": steps, "batch_size": batch_size, "repeat": repeat,
            "seconds": times, "speedup": times[1] / times[2], "efficiency": times[1] / (2 * times[2]),
            "load_average": os.getloadavg()[0]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("reference", "plan", "scaling", "all"), default="all")
    p.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "LR", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=4, help="Sampler steps per tile in the scaling run.")
    p.add_argument("--batch", type=int, default=8, help="Tiles per generator call in the scaling run.")
    p.add_argument("--repeat", type=int, default=3, help="Runs per rank count in the scaling run (best kept).")
    args = p.parse_args()
    if args.worker:
        worker(*args.worker, steps=args.steps, batch_size=args.batch)
        return
    results = {}
    if args.part in ("reference", "all"):
        results["reference"] = reference_comparison()
    if args.part in ("plan", "all"):
        results["plan"] = plan_figures()
    if args.part in ("scaling", "all"):
        results["scaling"] = strong_scaling(steps=args.steps, batch_size=args.batch, repeat=args.repeat)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
