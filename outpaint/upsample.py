"""The one entry point of ``emulator upsample``: emulate the HR field of an LR box.

A box of exactly one tile is generated directly, ``samples`` times, into dataset ``sr`` of shape
(samples, n, n, n). A larger box is outpainted tile by tile in 8 phases over the MPI ranks
(:func:`outpaint.run.upsample_box`) into one sample, ``sr`` (1, n, n, n). Both go through one
writer (outpaint.writer.write_output) with one provenance record (:func:`outpaint.run.provenance`,
holding the GenerationSettings), and both check every setting before any output is touched.
"""
import os

import numpy as np

from emulator.checkpoint import find_model, load_model
from emulator.config import GenerationSettings
from emulator.generate import generate_tiles, sampling_plan
from outpaint.mpi import device_for_rank, run_lock, world
from outpaint.plan import tile_seed
from outpaint.run import (automatic_batch, check_lr_values, check_model_tile, open_lr, output_action,
                          provenance, read_lr_box, upsample_box)
from outpaint.writer import write_output
from sims.errors import InputError, check_int
from sims.outputs import check_writable


def upsample(model, lr_spec, out_path, settings=GenerationSettings(), *, seed=0, samples=1,
             batch_size=None, tile=None, core=None, resume=False, force=False, comm=None):
    """Emulate the HR overdensity of the LR box ``lr_spec`` (FILE[:DATASET], default dataset
    ``lr``) into ``out_path`` with the model checkpoint ``model`` (file or directory) sampling per
    GenerationSettings ``settings`` (an unset sampler or steps: the model's own,
    GenerationSettings.for_model); collective over ``comm`` (default COMM_WORLD).

    seed: global seed (sample k of a one-tile box draws its noise from ``tile_seed(seed + k, 0)``,
    tile i of an outpainted box from ``tile_seed(seed, i)``). samples: independent samples of a
    one-tile box (a larger box: 1). batch_size: tiles per network batch (the result does not
    depend on it; None: automatic, outpaint.run.automatic_batch). tile, core [voxels]: must
    equal the model's (default). resume, force: finish an interrupted run, or overwrite an
    existing output. Returns ``out_path``.
    """
    comm = world() if comm is None else comm
    check_int("samples", samples)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    path = os.path.abspath(find_model(model))
    loaded = load_model(path, device=device_for_rank(comm))
    settings = settings.for_model(loaded)
    tile, core = check_model_tile(loaded, tile, core)
    source = open_lr(lr_spec, loaded)
    if source.n > tile:
        if samples != 1:
            raise InputError("samples", "a box larger than one tile is emulated once per run; "
                                        "vary the seed for more samples")
        return upsample_box(path, lr_spec, out_path, settings, tile=tile, core=core, seed=seed,
                            batch_size=batch_size, resume=resume, force=force, comm=comm, loaded=loaded)
    if source.n < tile:
        raise InputError(str(source.spec), f"box of {source.n}^3 HR voxels is smaller than the "
                                           f"model's tile {tile}^3")
    sampling_plan(loaded, settings)
    check_writable(out_path)
    with run_lock(comm, out_path):
        if output_action(out_path, resume, force) != "done" and comm.Get_rank() == 0:
            lr = read_lr_box(source)        # one tile is one job: rank 0 alone generates it
            check_lr_values(source, lr)
            seeds = [tile_seed(seed + k, 0) for k in range(samples)]
            sr = generate_tiles(loaded, settings, np.broadcast_to(lr, (samples,) + lr.shape), None,
                                None, seeds, batch_size=automatic_batch(batch_size, loaded.device),
                                progress=True)
            write_output(out_path, sr.shape, [(np.s_[...], sr)],
                         provenance(path, source, settings, seed, tile, core, samples, ranks=1))
    return out_path
