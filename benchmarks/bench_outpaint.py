"""Outpainting cost: network evaluations, sequential phases, the planner's decomposition figures,
and strong scaling of the MPI driver on this machine.

1. ``reference``: the 8x TNG300 case (528^3, tile 48, core 24) with our schedule (tiles x steps,
   8 phases of independent tiles) against the reference's raster scheme (9261 serial tiles x 2000
   ancestral steps; Rouhiainen et al. 2023, arXiv:2311.05217).
2. ``plan``: the planner's pencil decomposition for 1024^3, 2048^3 and 4096^3 boxes on 8..4096
   ranks (tile 48, core 16: the largest core <= 24 with a valid halo that tiles a power-of-two
   box): tiles per rank per phase, load balance, halo MiB sent per rank and messages after each
   phase that has an exchange, memory per rank; a rank count above (nb / 2)^2 is refused.
   Printed as a table, then with the other parts as JSON.
3. ``scaling``: wall time of ``upsample_box`` with an untrained 'tiny' U-Net (by default a
   32^3 box of tile 16, core 8: 64 tiles, at most 4 ranks; ``--box``, ``--tile``, ``--core``)
   or a given ``--model`` on ``--ranks`` MPI ranks (default 1 2; one thread each), speed-up and
   parallel efficiency T1 / (R T_R), each rank's seconds per phase split into generation,
   storing and halo exchange (with the wait for neighbours), rank 0's output write, and peak
   RSS per rank beside the planner's figure. From the first rank count's run, the unit costs
   (per tile, per message, output bytes per second) feed a strong-scaling model (the busiest
   rank's tiles and messages per phase from the planner, plus the serial output write) that
   predicts the measured rank counts and 2048^3 on 1024 ranks. Process start and imports are
   excluded. Run it on an otherwise idle machine.
4. ``split``: the same run on ``--cores`` cores split every way between MPI ranks and threads
   per rank (ranks x threads = cores: 1 x 2 and 2 x 1 for 2 cores), the splits alternating for
   ``--repeat`` rounds so that other load hits each alike; best and median wall seconds of each
   and the ratio to the fastest. Not part of ``all``.

Usage: python benchmarks/bench_outpaint.py [--part reference|plan|scaling|split|all] [--ranks 1 2 4]
       [--model CKPT --box 64 --sampler consistency --steps 2] [--json FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from emulator.geometry import PHASES
from outpaint.plan import Plan
from sims.errors import InputError

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


def plan_figures(sizes=(1024, 2048, 4096), tile=48, core=16, ranks=tuple(2**k for k in range(3, 13))):
    """Planner figures per (box, ranks): tiles per rank per phase (max), load balance, halo MiB
    sent by the busiest rank and messages (all ranks) after each exchanging phase, memory per
    rank [GiB]; ``refused`` with the largest useful count when there are too many ranks."""
    out = []
    for n in sizes:
        for r in ranks:
            try:
                d = Plan(n, tile, core, r).describe()
            except InputError:
                out.append({"n": n, "ranks": r, "refused": True, "max_ranks": (n // core // 2) ** 2})
                continue
            after = [p for p in range(PHASES) if d["messages"][p]]
            out.append({"n": n, "ranks": r, "refused": False, "blocks_per_axis": d["blocks_per_axis"],
                        "tiles_per_rank_per_phase": max(t["max"] for t in d["tiles_per_rank"]),
                        "load_balance": round(d["load_balance"], 4), "exchange_after_phases": after,
                        "halo_MiB_max_rank": [round(d["halo_bytes_max_rank"][p] / 2**20, 2) for p in after],
                        "messages": [d["messages"][p] for p in after],
                        "messages_max_rank": [d["messages_max_rank"][p] for p in after],
                        "memory_per_rank_GiB": round(d["memory_per_rank_bytes"] / 2**30, 3)})
    return out


def plan_table(rows):
    """The :func:`plan_figures` rows as a fixed-width text table (halo and messages: after phases
    1/3/5, the phases that exchange)."""
    lines = [f"{'box':>5} {'ranks':>5} {'tiles/rank/phase':>16} {'balance':>7} "
             f"{'halo MiB/rank (1/3/5)':>22} {'messages (1/3/5)':>18} {'GiB/rank':>8}"]
    for row in rows:
        head = f"{row['n']:>5} {row['ranks']:>5}"
        if row["refused"]:
            lines.append(f"{head} refused: at most {row['max_ranks']} ranks")
            continue
        halo = "/".join(f"{h:g}" for h in row["halo_MiB_max_rank"])
        messages = "/".join(str(m) for m in row["messages"])
        lines.append(f"{head} {row['tiles_per_rank_per_phase']:>16} {row['load_balance']:>7.3f} "
                     f"{halo:>22} {messages:>18} {row['memory_per_rank_GiB']:>8.3f}")
    return "\n".join(lines)


def make_inputs(directory, n=32, tile=16, core=8, model=None):
    """A checkpoint (``model``, else an untrained tiny U-Net of ``tile`` and ``core``) and an n^3
    lognormal LR box on its HR grid."""
    import h5py
    import torch

    from emulator import checkpoint
    from emulator.config import TrainConfig
    from emulator.normalization import Normalization
    if model is None:
        torch.manual_seed(0)
        config = TrainConfig(preset="tiny", tile=tile, core=core)
        meta = checkpoint.ModelMeta(config=config, spacing=1.0, lr_spacing=2.0,
                                    normalization=Normalization(shift=0.0, scale=0.02))
        model = os.path.join(directory, "tiny.pt")
        checkpoint.save_inference_model(model, meta, checkpoint.build_net(config))
    spacing = checkpoint.load_model(checkpoint.find_model(model)).spacing
    rho = np.exp(0.5 * np.random.default_rng(0).standard_normal((n,) * 3))
    lr = os.path.join(directory, "lr.h5")
    with h5py.File(lr, "w") as f:
        f["lr"] = (rho / rho.mean() - 1).astype(np.float32)
        f.attrs["box_size"] = float(n * spacing)
    return model, lr


def worker(model, lr, out, steps, batch_size, sampler):
    """One timed upsample_box call on every rank; rank 0 prints the slowest rank's seconds, every
    rank's seconds per phase (tiles, generate, store, exchange: run.run_phases; rank 0 last: the
    output write) and every rank's peak RSS [MiB]."""
    import resource

    from mpi4py import MPI

    from emulator.config import GenerationSettings
    from emulator.runtime import hold_freed_memory
    from outpaint.run import upsample_box
    hold_freed_memory()                               # as the emulator command does
    comm = MPI.COMM_WORLD
    comm.Barrier()
    start, phases = time.perf_counter(), []
    upsample_box(model, lr, out, GenerationSettings(sampler, steps), batch_size=batch_size, force=True,
                 timings=phases)
    seconds = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
    per_rank = comm.gather(phases, root=0)
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({"seconds": seconds, "phases_per_rank": per_rank, "peak_rss_mib": rss}))


def timed_run(model, lr, out, ranks, threads, steps, batch_size, sampler):
    """The worker's report of one upsample_box run on ``ranks`` MPI ranks of ``threads`` threads."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    cmd = [mpiexec, "-n", str(ranks), sys.executable, __file__, "--worker", model, lr, out,
           "--steps", str(steps), "--batch", str(batch_size), "--sampler", sampler]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def core_split(cores=2, steps=4, batch_size=8, repeat=3, n=32, tile=16, core=8, model=None, sampler="dpmpp-2m"):
    """Wall seconds of every ranks x threads split of ``cores`` (module docstring, part 4)."""
    splits = [(r, cores // r) for r in range(1, cores + 1) if cores % r == 0]
    seconds = {split: [] for split in splits}
    with tempfile.TemporaryDirectory() as tmp:
        model, lr = make_inputs(tmp, n, tile, core, model)
        for _ in range(repeat):
            for r, t in splits:
                report = timed_run(model, lr, os.path.join(tmp, "sr.h5"), r, t, steps, batch_size, sampler)
                seconds[(r, t)].append(report["seconds"])
    fastest = min(min(times) for times in seconds.values())
    return {"box": n, "steps": steps, "sampler": sampler, "batch_size": batch_size, "cores": cores,
            "splits": [{"ranks": r, "threads_per_rank": t, "best_seconds": min(seconds[(r, t)]),
                        "median_seconds": sorted(seconds[(r, t)])[repeat // 2],
                        "best_over_fastest": min(seconds[(r, t)]) / fastest} for r, t in splits],
            "load_average": os.getloadavg()[0]}


def strong_scaling(steps=4, batch_size=8, ranks=(1, 2), repeat=3, n=32, tile=16, core=8, model=None,
                   sampler="dpmpp-2m"):
    """Wall time on each rank count (mpiexec, OMP_NUM_THREADS=1; best of ``repeat`` runs, as other
    work on a shared machine only ever slows a run down), speed-up and parallel efficiency
    against the first count, and the best run's seconds per phase and rank (where the time
    goes: generation, storing, exchange including waiting; then rank 0's output write) and peak
    RSS per rank beside the planner's memory per rank (its two local arrays). ``model``: a
    checkpoint (its tile and core), else an untrained tiny U-Net of ``tile`` and ``core``."""
    with tempfile.TemporaryDirectory() as tmp:
        model, lr = make_inputs(tmp, n, tile, core, model)
        tile, core = _tile_core(model)
        times, best = {}, {}
        for r in ranks:
            reports = [timed_run(model, lr, os.path.join(tmp, f"sr{r}.h5"), r, 1, steps, batch_size, sampler)
                       for _ in range(repeat)]
            best[r] = min(reports, key=lambda report: report["seconds"])
            times[r] = best[r]["seconds"]
    base = ranks[0]
    plans = {r: Plan(n, tile, core, r) for r in ranks}
    costs = measured_costs(best[base]["phases_per_rank"], plans[base], n)
    most = max(ranks)
    costs["seconds_per_message"] = message_cost(best[most]["phases_per_rank"], plans[most])
    big = Plan(2048, tile, core, 1024)
    return {"box": n, "tiles": plans[base].n_tiles, "steps": steps, "batch_size": batch_size, "repeat": repeat,
            "seconds": times, "speedup": {r: times[base] / times[r] for r in ranks},
            "efficiency": {r: times[base] * base / (r * times[r]) for r in ranks},
            "phases_per_rank": {r: best[r]["phases_per_rank"] for r in ranks},
            "peak_rss_mib": {r: best[r]["peak_rss_mib"] for r in ranks},
            "planner_mib_per_rank": {r: plans[r].memory_per_rank() / 2**20 for r in ranks},
            "costs": costs, "predicted_seconds": {r: predicted_seconds(plans[r], costs) for r in ranks},
            "predicted_2048_on_1024_ranks": {"tile": tile, "core": core,
                                             "load_balance": big.describe()["load_balance"],
                                             "seconds": predicted_seconds(big, costs)},
            "load_average": os.getloadavg()[0]}


def _tile_core(model):
    from emulator.checkpoint import find_model, load_model
    loaded = load_model(find_model(model))
    return loaded.tile, loaded.core


def measured_costs(phases_per_rank, plan, n):
    """Unit costs of a run on rank 0: seconds per generated and per stored tile, and the output
    write's bytes per second."""
    tiles = sum(p["tiles"] for p in phases_per_rank[0] if "tiles" in p)
    generate = sum(p.get("generate", 0.0) for p in phases_per_rank[0])
    store = sum(p.get("store", 0.0) for p in phases_per_rank[0])
    output = next(p["output"] for p in phases_per_rank[0] if "output" in p)
    return {"seconds_per_tile": generate / tiles, "store_seconds_per_tile": store / tiles,
            "output_bytes_per_s": 4 * n**3 / output}


def message_cost(phases_per_rank, plan):
    """Seconds per message of a multi-rank run: the least exchange time over ranks (the others
    include waiting for a slower neighbour) per phase, over that rank's messages (None: no
    messages)."""
    exchange = sum(min(r[i]["exchange"] for r in phases_per_rank) for i in range(PHASES))
    messages = sum(int(plan.message_counts(p).max()) for p in range(PHASES))
    return exchange / messages if messages else None


def predicted_seconds(plan, costs):
    """Strong-scaling model: sum over phases of the busiest rank's tiles x (generation + store)
    cost, plus its messages x the per-message cost, plus the serial output write."""
    work = sum(int(plan.tiles_per_rank(p).max()) for p in range(PHASES))
    messages = sum(int(plan.message_counts(p).max()) for p in range(PHASES))
    return (work * (costs["seconds_per_tile"] + costs["store_seconds_per_tile"])
            + messages * (costs["seconds_per_message"] or 0.0) + 4 * plan.n**3 / costs["output_bytes_per_s"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("reference", "plan", "scaling", "split", "all"), default="all")
    p.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    p.add_argument("--worker", nargs=3, metavar=("MODEL", "LR", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=4, help="Sampler steps per tile in the scaling and split runs.")
    p.add_argument("--sampler", default="dpmpp-2m",
                   help="Sampler of the scaling and split runs (consistency for a distilled student).")
    p.add_argument("--cores", type=int, default=2, help="Cores the split run divides between ranks and threads.")
    p.add_argument("--batch", type=int, default=8, help="Tiles per generator call in the scaling run.")
    p.add_argument("--repeat", type=int, default=3, help="Runs per rank count in the scaling run (best kept).")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2],
                   help="Rank counts of the scaling run (at most (box / core / 2)^2: 4 for the 32^3 box).")
    p.add_argument("--box", type=int, default=32, help="Box side [voxels] of the scaling run.")
    p.add_argument("--tile", type=int, default=16, help="Tile of the untrained tiny U-Net.")
    p.add_argument("--core", type=int, default=8, help="Core of the untrained tiny U-Net.")
    p.add_argument("--model", default=None,
                   help="Checkpoint to time instead of the tiny U-Net (e.g. emulator/default_model).")
    args = p.parse_args()
    if args.worker:
        worker(*args.worker, steps=args.steps, batch_size=args.batch, sampler=args.sampler)
        return
    results = {}
    if args.part in ("reference", "all"):
        results["reference"] = reference_comparison()
    if args.part in ("plan", "all"):
        results["plan"] = plan_figures()
        print(plan_table(results["plan"]))
    if args.part in ("scaling", "all"):
        results["scaling"] = strong_scaling(steps=args.steps, batch_size=args.batch, ranks=tuple(args.ranks),
                                           repeat=args.repeat, n=args.box, tile=args.tile, core=args.core,
                                           model=args.model, sampler=args.sampler)
    if args.part == "split":
        results["split"] = core_split(cores=args.cores, steps=args.steps, batch_size=args.batch, repeat=args.repeat,
                                      n=args.box, tile=args.tile, core=args.core, model=args.model,
                                      sampler=args.sampler)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
