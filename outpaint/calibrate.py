"""``emulator calibrate``: fit a model's void map on its own outpainted training boxes.

The one-point PDF of a generated field is furthest from the truth's in the voids: the network
fills in cells that the HR's discrete particles leave empty or nearly so. The void map is the
quantile map of the generated underdense voxels onto the truth's (sims.stats.fit_void_map),
fitted on training pairs outpainted by the model itself with the settings it will be sampled
with, and stored in a copy of the checkpoint; emulator.generate then sends every generated
voxel through it. It is pointwise, so it commutes with outpainting (no seams, no context
effects) and leaves r(k) and the dense structures as they are.

Collective over MPI like outpainting: every rank outpaints its share of each box, rank 0 fits
and writes. The outpainted boxes are kept in ``out + ".calibrate"`` until the checkpoint is
written, so an interrupted run resumes where it stopped when rerun with the same arguments (with
other arguments it starts that folder afresh).
"""
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
from sims.stats import fit_void_map

def work_path(out_path):
    """Folder of the outpainted training boxes of a calibration writing ``out_path``."""
    return os.fspath(out_path) + ".calibrate"


def calibrate(model, data_dir, out_path, settings=GenerationSettings(), *, boxes=1, seed=0,
              batch_size=None, force=False, comm=None):
    """Write ``out_path``: the checkpoint ``model`` (file or directory) with the void map fitted
    on the first ``boxes`` paired files of ``data_dir`` (the model's training data), outpainted
    with GenerationSettings ``settings`` (unset sampler or steps: the model's own) and global seed
    ``seed``; collective over ``comm`` (default COMM_WORLD). A model that has a void map is
    outpainted without it. ``force``: overwrite an existing ``out_path``. Returns ``out_path``."""
    comm = world() if comm is None else comm
    check_int("boxes", boxes)
    path = os.path.abspath(find_model(model))
    loaded = load_model(path, device=device_for_rank(comm))
    settings = settings.for_model(loaded).replace(void_map=False)
    sampling_plan(loaded, settings)
    pairs = find_pair_files(data_dir)[:boxes]
    if len(pairs) < boxes:
        raise InputError("boxes", f"{data_dir} holds {len(pairs)} paired file(s), not {boxes}")
    for pair in pairs:
        _check_box(pair, loaded)
    out_path, work = os.fspath(out_path), work_path(out_path)
    check_writable(out_path)
    if os.path.exists(out_path) and not force:
        raise InputError(out_path, "already exists; use --force to overwrite it")
    inputs = {"model": path, "pairs": [os.path.abspath(p) for p in pairs], "seed": seed,
              "generation": settings.to_dict()}
    _prepare_work(comm, work, inputs)
    with abort_on_error(comm):
        fields = []
        for i, pair in enumerate(pairs):
            sr = os.path.join(work, f"box_{i:04d}.h5")
            upsample_box(path, f"{pair}:lr", sr, settings, seed=seed, batch_size=batch_size, resume=True,
                         comm=comm, loaded=loaded)
            fields.append(sr)
        if comm.Get_rank() == 0:
            void_map = fit_void_map((read_field(f"{sr}:sr", index=0).data, read_pair(pair)[1])
                                    for sr, pair in zip(fields, pairs))
            state = read_checkpoint(path)
            state["void_map"] = {"x": void_map[0].tolist(), "y": void_map[1].tolist(),
                                 "source": f"fitted on {len(pairs)} box(es) of {data_dir} outpainted "
                                           f"with seed {seed}", "generation": settings.to_dict()}
            atomic_save(state, out_path)
            shutil.rmtree(work)
            print(f"wrote {out_path}: void map of {len(void_map[0])} points, delta "
                  f"{void_map[0][0]:.3f}..{void_map[0][-1]:.3f} -> {void_map[1][0]:.3f}..{void_map[1][-1]:.3f}")
        idle_barrier(comm)
    return out_path


def _check_box(pair, model):
    """The metadata of ``pair``'s LR and HR (outpaint.run.open_lr, nothing read but attributes
    and shapes); InputError naming the dataset unless the HR lies on the model's HR grid."""
    open_lr(f"{pair}:lr", model)
    hr = open_lr(f"{pair}:hr", model)
    if hr.n_file != hr.n:
        raise InputError(str(hr.spec), f"HR grid spacing {hr.box_size / hr.n_file:.6g} Mpc/h differs "
                                       f"from the model's {model.spacing:.6g} Mpc/h")


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
