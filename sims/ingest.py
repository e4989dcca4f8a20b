"""Paired boxes from existing simulations: paint a low-resolution dark-matter snapshot and a
high-resolution (dark matter or gas) snapshot of the same volume into the paired-box format of
:mod:`sims.pairfile`, as the reference work did with an AREPO DMO run and IllustrisTNG300 gas.
Snapshots are Gadget-style HDF5 or Gadget-2 binary files (:mod:`sims.snapshot`).
"""
import os

import numpy as np
from tqdm import tqdm

from sims import mesh
from sims.errors import InputError, check_int
from sims.outputs import lock_output
from sims.pairfile import write_pair
from sims.snapshot import iter_chunks, snapshot_info

PART_TYPES = {"gas": 0, "dm": 1}
_Z_TOLERANCE = 1e-3      # |z_LR - z_HR| allowed, relative to 1 + z (output-time round-off)


def ingest_pair(lr_snapshot, hr_snapshot, out, grid, hr_type="dm", mas="cic", lr_grid=None,
                length_unit=None, force=False, progress=True):
    """Paint two snapshots of one volume into a paired box file ``out``; returns its attributes.

    LR: dark matter (PartType1) painted on ``lr_grid``^3 (default ``grid``); HR: ``hr_type``
    'dm' (PartType1) or 'gas' (PartType0) painted on ``grid``^3. Both are mass-weighted
    (``mas`` 'ngp', 'cic' or 'tsc', node convention of :mod:`sims.mesh`, no deconvolution)
    and stored as overdensity delta = rho / mean - 1. Snapshots are read chunk by chunk.
    The two must share box size (to 1e-6) and redshift (to 1e-3 (1 + z)), and the cosmological
    parameters both record (to 1e-4); otherwise :class:`~sims.errors.InputError`, and no output.
    An existing ``out`` is an InputError unless ``force``; a second run writing ``out`` at the
    same time is refused (sims.outputs.lock_output).
    The initial-condition seed of external runs is unknown: ``seed`` = -1. The particle counts
    are stored per side (``lr_particles``, ``hr_particles``, as for simulated pairs): N^(1/3),
    an integer for N = n^3, else a float (gas cells of a hydro run).
    """
    if hr_type not in PART_TYPES:
        raise InputError("hr_type", f"must be one of {sorted(PART_TYPES)}, got {hr_type!r}")
    grid, lr_grid = check_int("grid", grid), check_int("lr_grid", grid if lr_grid is None else lr_grid)
    with lock_output(out):
        if os.path.exists(out) and not force:
            raise InputError(out, "already exists; use --force to overwrite it")
        return _ingest(lr_snapshot, hr_snapshot, out, grid, hr_type, mas, lr_grid, length_unit, progress)


def _ingest(lr_snapshot, hr_snapshot, out, grid, hr_type, mas, lr_grid, length_unit, progress):
    """:func:`ingest_pair` once its settings and output are checked."""
    lr_info = snapshot_info(lr_snapshot, length_unit)
    hr_info = snapshot_info(hr_snapshot, length_unit)
    _check_same_volume(lr_info, hr_info, str(hr_snapshot), str(lr_snapshot))
    lr = _paint_delta(lr_info, PART_TYPES["dm"], lr_grid, mas, "LR", progress)
    hr = _paint_delta(hr_info, PART_TYPES[hr_type], grid, mas, "HR", progress)
    attrs = dict(
        seed=-1, seed_note="ingested from external snapshots: initial-condition seed unknown",
        hr_type=hr_type, mas=mas, grid=grid, lr_grid=lr_grid,
        lr_particles=_per_side(lr_info.n_total[PART_TYPES["dm"]]),
        hr_particles=_per_side(hr_info.n_total[PART_TYPES[hr_type]]),
        lr_source=os.path.abspath(lr_info.files[0]), hr_source=os.path.abspath(hr_info.files[0]),
        length_unit_lr=lr_info.length_unit_source, length_unit_hr=hr_info.length_unit_source)
    write_pair(out, lr, hr, box_size=hr_info.box_size, redshift=hr_info.redshift,
               cosmology={**lr_info.cosmology, **hr_info.cosmology}, **attrs)
    return attrs


def _per_side(n_total):
    """Particles per side N^(1/3): an int when N is a cube n^3 (a lattice run), else a float."""
    n_total = int(n_total)
    side = round(n_total ** (1 / 3))
    return side if side ** 3 == n_total else float(np.cbrt(n_total))


def _check_same_volume(lr, hr, hr_name, lr_name):
    """Raise InputError (naming the HR snapshot) if the two snapshots are not the same volume."""
    if not np.isclose(lr.box_size, hr.box_size, rtol=1e-6, atol=0):
        raise InputError(hr_name, f"box size {hr.box_size:g} Mpc/h differs from the LR snapshot's "
                                  f"{lr.box_size:g} Mpc/h ({lr_name})")
    if abs(lr.redshift - hr.redshift) > _Z_TOLERANCE * (1 + hr.redshift):
        raise InputError(hr_name, f"redshift {hr.redshift:g} differs from the LR snapshot's "
                                  f"{lr.redshift:g} ({lr_name})")
    for key in sorted(set(lr.cosmology) & set(hr.cosmology)):
        if not np.isclose(lr.cosmology[key], hr.cosmology[key], rtol=1e-4, atol=0):
            raise InputError(hr_name, f"{key} = {hr.cosmology[key]:g} differs from the LR "
                                      f"snapshot's {lr.cosmology[key]:g} ({lr_name})")


def _paint_delta(info, part_type, n, mas, label, progress):
    """Mass-weighted overdensity of one particle type, painted chunk by chunk into a float64 sum."""
    total, scratch = np.zeros((n, n, n)), np.empty((n, n, n))
    n_chunks = int(np.count_nonzero(info.n_per_file[:, part_type]))
    for chunk in tqdm(iter_chunks(info, part_type), total=n_chunks, desc=f"painting {label}",
                      unit="file", disable=not progress):
        total += mesh.paint(chunk.positions, n, info.box_size, mas=mas, weights=chunk.masses,
                            out=scratch)
    return mesh.overdensity(total)
