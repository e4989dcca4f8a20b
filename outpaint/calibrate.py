"""``emulator calibrate``: fit a model's corner transfer and void map on its own outpainted
training boxes.

Beyond the grid Nyquist wavenumber (the corners of the Fourier cube, where the truth's
CIC-painted particles have little power) a network's output carries grid-scale noise, most of
it in the densest voxels, where the inverse of the log transform turns a small error into a
large one. The corner transfer is the transfer function from the model's outpainted training
boxes to their HR (sims.stats.fit_transfer) kept only beyond k_Nyq, capped at 1 and
non-increasing, and 0 at the cube's corner mode (sims.stats.corner_transfer): it damps that
noise, never amplifies, and leaves every mode up to k_Nyq as it is. emulator.generate multiplies
every generated tile by it, then clips at delta = -1 and takes the matter the clipping adds back
from the tile's underdense voxels (sims.stats.clip_keeping_mass; mass conservation would take it
from every voxel, the dense ones and their power included).

The one-point PDF of a generated field is furthest from the truth's in the voids: the network
fills in cells that the HR's discrete particles leave empty or nearly so. The void map is the
quantile map of the generated underdense voxels onto the truth's (sims.stats.fit_void_map),
fitted on training pairs outpainted by the model itself with the settings it will be sampled
with (the corner transfer included: the boxes are outpainted a second time through it), and
stored in a copy of the checkpoint; emulator.generate then sends every generated voxel
through it. It is pointwise, so it commutes with outpainting (no seams, no context
effects) and leaves r(k) and the dense structures as they are.

Collective over MPI like outpainting: every rank outpaints its share of each box, rank 0 fits
and writes. The outpainted boxes are kept in ``out + ".calibrate"`` until the checkpoint is
written, so an interrupted run resumes where it stopped when rerun with the same arguments (with
other arguments it starts that folder afresh).
"""
import dataclasses
import json
import os
import shutil

from emulator.checkpoint import atomic_save, find_model, load_model, read_checkpoint
from emulator.config import GenerationSettings
from emulator.data import find_pair_files
from emulator.generate import sampling_plan
from outpaint.mpi import abort_on_error, device_for_rank, idle_barrier, world
from outpaint.run import open_lr, upsample_box
from sims.errors import InputError, check_int
from sims.h5io import read_field
from sims.outputs import check_writable
from sims.pairfile import read_pair
from sims.stats import corner_transfer, fit_transfer, fit_void_map, k_nyquist

def work_path(out_path):
    """Folder of the outpainted training boxes of a calibration writing ``out_path``."""
    return os.fspath(out_path) + ".calibrate"


def calibrate(model, data_dir, out_path, settings=GenerationSettings(), *, boxes=1, seed=0,
              batch_size=None, force=False, comm=None):
    """Write ``out_path``: the checkpoint ``model`` (file or directory) with the corner transfer
    (unless ``settings.corner_filter`` is False: then none) and the void map fitted on the first
    ``boxes`` paired files of ``data_dir`` (the model's training data), outpainted with
    GenerationSettings ``settings`` (unset sampler or steps: the model's own) and global seed
    ``seed``; collective over ``comm`` (default COMM_WORLD). A model that has either is
    outpainted without them. ``force``: overwrite an existing ``out_path``. Returns ``out_path``."""
    comm = world() if comm is None else comm
    check_int("boxes", boxes)
    path = os.path.abspath(find_model(model))
    loaded = load_model(path, device=device_for_rank(comm))
    fit_corners = settings.corner_filter
    settings = settings.for_model(loaded).replace(void_map=False, corner_filter=False)
    sampling_plan(loaded, settings)
    pairs = find_pair_files(data_dir)[:boxes]
    if len(pairs) < boxes:
        raise InputError("boxes", f"{data_dir} holds {len(pairs)} paired file(s), not {boxes}")
    grids = {_check_box(pair, loaded) for pair in pairs}       # HR voxels per side
    if fit_corners and len(grids) > 1:
        raise InputError(str(data_dir), f"the corner transfer is fitted on boxes of one grid; the pairs have "
                                        f"{sorted(grids)} voxels per side (or --no-corner-filter)")
    out_path, work = os.fspath(out_path), work_path(out_path)
    check_writable(out_path)
    if os.path.exists(out_path) and not force:
        raise InputError(out_path, "already exists; use --force to overwrite it")
    inputs = {"model": path, "pairs": [os.path.abspath(p) for p in pairs], "seed": seed,
              "generation": settings.to_dict(), "corner_filter": fit_corners}
    _prepare_work(comm, work, inputs)
    source = f"fitted on {len(pairs)} box(es) of {data_dir} outpainted with seed {seed}"
    with abort_on_error(comm):
        fields = _outpaint(path, loaded, pairs, work, "box", settings, seed, batch_size, comm)
        transfer = None
        if fit_corners:
            n = grids.pop()
            transfer = comm.bcast(_fit_corner_transfer(fields, pairs, n, n * loaded.spacing)
                                  if comm.Get_rank() == 0 else None, root=0)
            transfer.update(source=source, generation=settings.to_dict())
            loaded = dataclasses.replace(loaded, corner_transfer=transfer)
            fields = _outpaint(path, loaded, pairs, work, "filtered", settings.replace(corner_filter=True),
                               seed, batch_size, comm)
        if comm.Get_rank() == 0:
            void_map = fit_void_map((read_field(f"{sr}:sr", index=0).data, read_pair(pair)[1])
                                    for sr, pair in zip(fields, pairs))
            state = read_checkpoint(path)
            state["corner_transfer"] = transfer
            state["void_map"] = {"x": void_map[0].tolist(), "y": void_map[1].tolist(), "source": source,
                                 "generation": settings.replace(corner_filter=fit_corners).to_dict()}
            atomic_save(state, out_path)
            shutil.rmtree(work)
            if transfer is not None:
                print(f"wrote {out_path}: corner transfer from 1 at k_Nyq = {transfer['k'][0]:.3f} to "
                      f"{transfer['t'][-2]:.3f} at {transfer['k'][-2]:.3f} h/Mpc, the corner mode removed")
            print(f"wrote {out_path}: void map of {len(void_map[0])} points, delta "
                  f"{void_map[0][0]:.3f}..{void_map[0][-1]:.3f} -> {void_map[1][0]:.3f}..{void_map[1][-1]:.3f}")
        idle_barrier(comm)
    return out_path


def _outpaint(path, loaded, pairs, work, name, settings, seed, batch_size, comm):
    """Outpaint the LR of every pair into ``work``/``name``_NNNN.h5 (resumed where present);
    returns the file names."""
    fields = []
    for i, pair in enumerate(pairs):
        sr = os.path.join(work, f"{name}_{i:04d}.h5")
        upsample_box(path, f"{pair}:lr", sr, settings, seed=seed, batch_size=batch_size, resume=True,
                     comm=comm, loaded=loaded)
        fields.append(sr)
    return fields


def _fit_corner_transfer(fields, pairs, n, box_size):
    """The corner transfer ({"k": [h/Mpc], "t": [...]}, sims.stats.corner_transfer) of the
    outpainted ``fields`` against their pairs' HR, all on one grid of n^3 voxels and side
    ``box_size`` [Mpc/h]."""
    k, t = fit_transfer(((read_field(f"{sr}:sr", index=0).data, read_pair(pair)[1])
                         for sr, pair in zip(fields, pairs)), box_size)
    k, t = corner_transfer(k, t, k_nyquist(n, box_size))
    return {"k": k.tolist(), "t": t.tolist()}


def _check_box(pair, model):
    """Check the metadata of ``pair``'s LR and HR (outpaint.run.open_lr, nothing read but
    attributes and shapes); InputError naming the dataset unless the HR lies on the model's HR
    grid. Returns the HR's voxels per side."""
    open_lr(f"{pair}:lr", model)
    hr = open_lr(f"{pair}:hr", model)
    if hr.n_file != hr.n:
        raise InputError(str(hr.spec), f"HR grid spacing {hr.box_size / hr.n_file:.6g} Mpc/h differs "
                                       f"from the model's {model.spacing:.6g} Mpc/h")
    return hr.n


def _prepare_work(comm, work, inputs):
    """Rank 0 keeps the work folder of an interrupted calibration with the same ``inputs`` and
    starts any other afresh; the other ranks wait for it."""
    record = os.path.join(work, "inputs.json")
    if comm.Get_rank() == 0:
        try:
            with open(record) as f:
                same = json.load(f) == inputs
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work)
            with open(record, "w") as f:
                json.dump(inputs, f)
    comm.Barrier()
