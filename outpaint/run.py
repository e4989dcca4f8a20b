"""Outpaint a large LR box into an HR box: the 8-phase schedule over MPI ranks, resumable.

:func:`upsample_box` is what :func:`outpaint.upsample.upsample` runs when the LR box is larger
than one tile.
Every rank calls it with the same arguments (``mpiexec -n R emulator upsample ...``). Each rank
reads its pencil of the LR box (its rectangle of rows plus halos, outpaint.plan), generates its
tiles phase by phase in batches through one tile-generator call (``emulator.generate.generate_tiles``
by default), keeps only the cores, exchanges halos with its neighbours (outpaint.mpi) and records
progress after every batch (outpaint.writer). Rank 0 writes the output once every row is complete.

Determinism: a tile's inputs are its LR crop, the known voxels of earlier phases (zero elsewhere),
the phase's mask and ``tile_seed(seed, tile index)``; none depends on the rank count, the batch or
an interruption, so the field is the same for any number of ranks and after ``--resume`` (bit
for bit with the same threads per rank and device; other thread counts change the network's
float32 summation order, hence round-off).
"""
import functools
import os
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from emulator.checkpoint import find_model, load_model
from emulator.config import GenerationSettings
from emulator.generate import generate_tiles, sampling_plan
from emulator.geometry import PHASES, known_mask, periodic_crop, tile_origin
from outpaint.mpi import abort_on_error, device_for_rank, exchange_halos, idle_barrier, run_lock, world
from outpaint.plan import Plan, tile_seed
from outpaint.writer import RunState, state_path, write_output
from sims.errors import InputError, check_int
from sims.h5io import FieldSpec, field_dataset, open_h5, real_number
from sims.mesh import resample_overdensity
from sims.outputs import check_writable

LR_DATASET = "lr"
SPACING_RTOL = 1e-5
"""Relative tolerance when matching the LR grid spacing to the model's [Mpc/h]."""
CPU_BATCH = 8
"""Tiles per generator call of a CPU rank when the batch is automatic: larger batches run no
faster on a CPU (benchmarks/bench_unet.py) and smaller ones record progress more often."""
DELTA_MIN = -1.0 - 1e-5
"""Lowest overdensity accepted in the LR box (delta = rho / mean - 1 >= -1, float32 slack)."""


@dataclass(frozen=True)
class LRSource:
    """The LR box to upsample: ``spec`` FILE:DATASET, its grid ``n_file``, the output (HR) grid
    ``n``, ``box_size`` [Mpc/h] and the file's attributes."""

    spec: FieldSpec
    n_file: int
    n: int
    box_size: float
    attrs: dict


def hr_grid(source, n_file, box_size, model):
    """Voxels per side of the output for an LR box of ``n_file`` voxels and side ``box_size``.

    ``n_file`` when the LR grid spacing equals the model's HR training spacing (LR painted on the
    HR grid); ``box_size / spacing`` when it equals the model's LR spacing (resampled on reading);
    any other spacing is an InputError naming ``source``. Without a model: ``n_file``.
    """
    if model is None:
        return n_file
    spacing = box_size / n_file
    if np.isclose(spacing, model.spacing, rtol=SPACING_RTOL, atol=0):
        return n_file
    n = box_size / model.spacing
    if np.isclose(spacing, model.lr_spacing, rtol=SPACING_RTOL, atol=0) and np.isclose(n, round(n)):
        return int(round(n))
    raise InputError(source, f"grid spacing {spacing:.6g} Mpc/h ({box_size:g} Mpc/h on {n_file}^3) "
                     f"matches neither the model's HR spacing {model.spacing:.6g} Mpc/h nor its LR "
                     f"spacing {model.lr_spacing:.6g} Mpc/h")


def open_lr(lr_spec, model):
    """Validate the LR box's metadata (a dataset of real numbers, cubic 3D, ``box_size`` a
    positive number, grid spacing) without reading the field; same answer on every rank."""
    spec = FieldSpec.parse(os.fspath(lr_spec), LR_DATASET)
    with open_h5(spec.path) as f:
        dset = field_dataset(f, spec)
        shape = dset.shape
        attrs = {**dict(f.attrs), **dict(dset.attrs)}
    if len(shape) != 3 or len(set(shape)) != 1:
        raise InputError(str(spec), f"LR box must be cubic 3D, got shape {shape}")
    if "box_size" not in attrs:
        raise InputError(str(spec), "missing attribute 'box_size' [Mpc/h]")
    box_size = real_number(attrs["box_size"], "box_size", str(spec), positive=True)
    return LRSource(spec, shape[0], hr_grid(str(spec), shape[0], box_size, model), box_size, attrs)


def read_lr_box(source):
    """The whole LR box on the output grid, float32 (n, n, n): on the model's LR grid it is
    Fourier-resampled (sims.mesh.resample_overdensity, clipped at delta = -1 as in training)."""
    with open_h5(source.spec.path) as f:
        lr = np.asarray(f[source.spec.dataset][...], dtype=np.float32)
    return lr if source.n_file == source.n else resample_overdensity(lr, source.n)


def read_local_lr(source, plan, rank):
    """This rank's LR pencil on the output grid (float32, :meth:`Plan.local_shape`: rows plus halos).

    On the HR grid the pencil is read directly. On the model's LR grid the whole box is read and
    resampled (:func:`read_lr_box`), which costs n^3 transient memory per rank: for very large
    boxes paint the LR on the HR grid instead.
    """
    if source.n_file != plan.n:
        return plan.read_local(read_lr_box(source), rank)
    with open_h5(source.spec.path) as f:
        return plan.read_local(f[source.spec.dataset], rank)


def check_lr_values(source, lr, comm=None):
    """InputError when the LR values ``lr`` hold NaN/Inf or values below delta = -1; with
    ``comm``, on every rank when any rank's part does (collective)."""
    counts = np.array([np.count_nonzero(~np.isfinite(lr)), np.count_nonzero(lr < DELTA_MIN)])
    bad, low = counts if comm is None else comm.allreduce(counts)
    if bad:
        raise InputError(str(source.spec), f"contains {bad} NaN/Inf values")
    if low:
        raise InputError(str(source.spec), f"must be an overdensity (delta >= -1); {low} values are below -1")


def output_action(out_path, resume, force):
    """What to do about the output and its state: "fresh", "resume" or "done" (nothing left);
    InputError when the output or an interrupted run's state exists and neither flag says what
    to do. No side effects: every rank asks before rank 0 touches anything."""
    partial = state_path(out_path)
    if force:
        return "fresh"
    if os.path.exists(out_path):
        if resume:
            return "done"
        raise InputError(out_path, "already exists; use --force to overwrite it")
    if os.path.isdir(partial):
        if resume:
            return "resume"
        raise InputError(partial, "holds an interrupted run; use --resume to finish it or --force "
                         "to start over")
    return "fresh"


def crop(plan, local, origin, block):
    """Tile of ``block`` cut from a local pencil array whose first voxel is at global (x, y) =
    ``origin`` (emulator.geometry.periodic_crop: the pencil holds the tile's x and y, so only z
    wraps)."""
    start = tile_origin(block, plan.tile, plan.core) - np.array((*origin, 0))
    return periodic_crop(local, start, plan.tile)


def tile_inputs(plan, lr, field, origin, blocks, phase, seed):
    """Generator inputs of a batch: lr (B, t, t, t), known (zero outside the mask), mask (B, t, t, t)
    bool, seeds (B,) keyed by (seed, global tile index) only."""
    mask = known_mask(plan.tile, plan.core, phase)
    lr_tiles = np.stack([crop(plan, lr, origin, b) for b in blocks])
    known = np.stack([np.where(mask, crop(plan, field, origin, b), np.float32(0)) for b in blocks])
    seeds = [tile_seed(seed, i) for i in plan.tile_index(blocks)]
    return lr_tiles, known, np.broadcast_to(mask, known.shape).copy(), seeds


def core_slices(plan, origin, block):
    """Local (x, y, z) slices of ``block``'s core in a pencil array starting at global ``origin``."""
    c = plan.core
    return tuple(slice(block[a] * c - o, (block[a] + 1) * c - o) for a, o in enumerate((*origin, 0)))


def keep_cores(plan, state, field, origin, blocks, tiles):
    """Write the cores of generated ``tiles`` (B, t, t, t) into the local ``field``, then store and
    record them row by row in the state; the halos of the tiles are discarded."""
    h, c = plan.halo, plan.core
    cores = tiles[:, h:h + c, h:h + c, h:h + c]
    for b, core in zip(blocks, cores):
        field[core_slices(plan, origin, b)] = core
    rows = plan.row_index(blocks)
    for row in np.unique(rows):
        state.store(int(row), blocks[rows == row], cores[rows == row])


def generate_batch(tile_generator, plan, lr, field, origin, blocks, phase, seed):
    """Run the tile generator on one batch; checks the shape and finiteness of what comes back."""
    lr_tiles, known, mask, seeds = tile_inputs(plan, lr, field, origin, blocks, phase, seed)
    tiles = np.asarray(tile_generator(lr_tiles, known, mask, seeds), dtype=np.float32)
    if tiles.shape != lr_tiles.shape or not np.all(np.isfinite(tiles)):
        raise RuntimeError(f"tile generator returned shape {tiles.shape} (expected {lr_tiles.shape}) "
                           "or non-finite values")
    return tiles


def pending(plan, done, phase, rank):
    """Blocks of ``phase`` on ``rank`` not yet complete: ``done`` {row: completed count}."""
    blocks = plan.blocks_in_phase(phase, rank)
    recorded = np.array([done[int(u)] for u in plan.row_index(blocks)], dtype=np.int64)
    return blocks[plan.row_position(blocks) >= recorded]


def automatic_batch(batch_size, device):
    """Tiles per generator call: ``batch_size``, or when it is None every pending tile of a phase
    on a GPU (emulator.generate.generate_tiles halves a batch that runs out of memory) and
    CPU_BATCH on a CPU."""
    if batch_size is not None:
        return batch_size
    return None if device is not None and device.type == "cuda" else CPU_BATCH


def run_phases(comm, plan, state, lr, tile_generator, seed, batch_size, timings=None):
    """Generate every pending tile of this rank, phase by phase, ``batch_size`` tiles per
    generator call (None: all of the phase in one); exchange halos after each phase;
    rank 0 shows a tqdm bar (phase, tiles recorded, ETA). ``timings``: a list to append, per
    phase, this rank's ``{"tiles": k, "generate": s, "store": s, "exchange": s}`` [seconds]:
    generator calls with their inputs, cores to the field and the row files, halo exchange
    including the wait for neighbours."""
    rank = comm.Get_rank()
    origin = tuple(start for start, _ in plan.local_extent(rank))
    field = np.zeros_like(lr)
    done = {}
    for row in plan.rows_of(rank):
        done[row] = state.open_row(row)
        if done[row]:
            bx, by = divmod(row, plan.blocks)
            field[core_slices(plan, origin, (bx, by, 0))[:2]] = state.row(row)
    recorded = sum(done.values())
    with tqdm(total=plan.n_tiles, initial=comm.allreduce(recorded), unit="tile", disable=rank != 0) as bar:
        for phase in range(PHASES):
            bar.set_description(f"phase {phase + 1}/{PHASES}")
            todo = pending(plan, done, phase, rank)
            spent = {"tiles": len(todo), "generate": 0.0, "store": 0.0}
            size = batch_size or max(len(todo), 1)
            for start in range(0, len(todo), size):
                blocks = todo[start:start + size]
                t0 = time.perf_counter()
                tiles = generate_batch(tile_generator, plan, lr, field, origin, blocks, phase, seed)
                t1 = time.perf_counter()
                keep_cores(plan, state, field, origin, blocks, tiles)
                spent["generate"] += t1 - t0
                spent["store"] += time.perf_counter() - t1
                recorded += len(blocks)
                bar.update(len(blocks))
            t0 = time.perf_counter()
            exchange_halos(comm, plan, field, phase)
            spent["exchange"] = time.perf_counter() - t0
            if timings is not None:
                timings.append(spent)
            bar.n = comm.allreduce(recorded)
            bar.refresh()


def check_model_tile(model, tile, core):
    """The model's trained tile and core, or InputError when ``tile``/``core`` differ from them
    (the network only knows the masks of its own tile and core)."""
    if model is None:
        return tile, core
    tile = model.tile if tile is None else tile
    core = model.core if core is None else core
    if (tile, core) != (model.tile, model.core):
        raise InputError("tile", f"the model was trained on tile {model.tile} and core "
                         f"{model.core}; got tile {tile} and core {core}")
    return tile, core


def provenance(model_name, source, settings, seed, tile, core, samples, ranks):
    """The attributes of every emulated field: what made it (model, LR box, GenerationSettings
    ``settings`` as ``generation``, seed, samples, tile, core, MPI ranks) and the LR's
    ``redshift`` and ``cosmology`` where it has them."""
    carried = {k: source.attrs[k] for k in ("redshift", "cosmology") if k in source.attrs}
    return {"model": model_name, "lr": f"{os.path.abspath(source.spec.path)}:{source.spec.dataset}",
            "box_size": source.box_size, "seed": int(seed), "samples": int(samples), "tile": tile,
            "core": core, "ranks": int(ranks), "generation": settings.to_dict(), **carried}


def upsample_box(model, lr_spec, out_path, settings=GenerationSettings(), *, tile=None, core=None,
                 seed=0, batch_size=None, resume=False, force=False, comm=None, tile_generator=None,
                 timings=None, loaded=None):
    """Outpaint the LR box ``lr_spec`` (FILE[:DATASET], default dataset ``lr``) into dataset
    ``sr`` (1, n, n, n) of ``out_path`` with the model checkpoint ``model`` (file or directory)
    sampling per GenerationSettings ``settings`` (an unset sampler or steps: the model's own,
    GenerationSettings.for_model); collective over ``comm`` (default COMM_WORLD). Returns
    ``out_path``.

    tile, core [voxels]: default the model's. seed: global seed; tile i draws its noise from
    ``tile_seed(seed, i)``. batch_size: tiles per generator call (and per progress record); None:
    automatic (:func:`automatic_batch`: a GPU rank's whole phase, CPU_BATCH on a CPU).
    resume: finish an interrupted run from ``out_path + '.partial'``. force: overwrite an
    existing output or state. While it runs, every rank holds the lock ``out_path + '.lock'``
    (outpaint.mpi.run_lock): a second run on the same output is refused (InputError) until
    every process of the first has ended.
    tile_generator: ``f(lr, known, mask, seeds) -> (B, t, t, t)`` replacing generate_tiles (then
    ``model`` may be None: no checks against a model; tile and core are required).
    timings: a list to which this rank appends its seconds per phase (:func:`run_phases`), and
    rank 0 then ``{"output": s}``, the seconds of writing the output from the row files.
    loaded: the LoadedModel of ``model`` when the caller has loaded it already on this rank's
    device (it is then not read again).
    """
    comm = world() if comm is None else comm
    rank, out_path = comm.Get_rank(), os.fspath(out_path)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    model_name = None
    if model is not None:
        model_name = os.path.abspath(find_model(model))
        loaded = loaded if loaded is not None else load_model(model_name, device=device_for_rank(comm))
        settings = settings.for_model(loaded)
        sampling_plan(loaded, settings)
    elif tile_generator is None:
        raise InputError("model", "a model checkpoint is required")
    tile, core = check_model_tile(loaded, tile, core)
    source = open_lr(lr_spec, loaded)
    plan = Plan(source.n, tile, core, comm.Get_size())
    check_writable(out_path)
    with run_lock(comm, out_path):
        action = output_action(out_path, resume, force)
        if action == "done":
            return out_path
        lr = read_local_lr(source, plan, rank)
        check_lr_values(source, lr, comm)
        attrs = provenance(model_name or _name(tile_generator), source, settings, seed, tile, core,
                           samples=1, ranks=comm.Get_size())
        state = _prepare_state(comm, out_path, plan, {"n": plan.n, **attrs, "ranks": None}, action)
        batch_size = automatic_batch(batch_size, loaded.device if loaded else None)
        tile_generator = tile_generator or functools.partial(
            generate_tiles, loaded, settings, batch_size=batch_size)
        with abort_on_error(comm):
            run_phases(comm, plan, state, lr, tile_generator, seed, batch_size, timings)
            comm.Barrier()
            if rank == 0:
                start = time.perf_counter()
                write_output(out_path, (1,) + (plan.n,) * 3, state.planes(), attrs)
                state.remove()
                if timings is not None:
                    timings.append({"output": time.perf_counter() - start})
            idle_barrier(comm)
    return out_path


def _prepare_state(comm, out_path, plan, settings, action):
    """Rank 0 creates (fresh, removing a stale output) or every rank opens (resume) the state."""
    directory = state_path(out_path)
    if action == "resume":
        return RunState.open(directory, plan, settings)
    if comm.Get_rank() == 0:
        if os.path.exists(out_path):
            os.remove(out_path)
        RunState.create(directory, plan, settings)
    comm.Barrier()
    return RunState(directory, plan)


def _name(tile_generator):
    """A readable name of a custom tile generator for the ``model`` attribute."""
    target = getattr(tile_generator, "func", tile_generator)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
