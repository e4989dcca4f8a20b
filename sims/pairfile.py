"""The paired-box file: one HDF5 file per training box holding the low- and high-resolution
overdensity fields of the same volume.

Layout (docs/design.md): float32 datasets ``lr`` (n_lr^3) and ``hr`` (n_hr^3), C order, axes (x, y, z),
node convention x_i = i L / n; file attributes ``box_size`` [Mpc/h], ``redshift``, ``cosmology``
(JSON), ``created_by``, ``lr_particles`` and ``hr_particles`` (particles per side behind each
field, :func:`write_pair`) and whatever the producer adds (seed, steps, sources).
Written by ``sims.pairs`` (simulated pairs) and ``sims.ingest`` (pairs from real snapshots), both
through :func:`write_pair`, the one place that names these attributes.
"""
import json

import numpy as np

from sims.h5io import FieldSpec, atomic_h5, read_field, write_attrs


def _check_cube(name, field):
    """float32 copy of a cubic, finite 3D field, or ValueError naming it."""
    field = np.asarray(field, dtype=np.float32)
    if field.ndim != 3 or len(set(field.shape)) != 1:
        raise ValueError(f"{name}: field must be cubic 3D, got shape {field.shape}")
    if not np.all(np.isfinite(field)):
        raise ValueError(f"{name}: contains NaN/Inf values")
    return field


def write_pair(path, lr, hr, *, box_size, redshift, cosmology, lr_particles=None,
               hr_particles=None, **extra_attrs):
    """Write a paired box file atomically (temporary name, renamed on success).

    ``lr``, ``hr``: cubic overdensity fields of the same box (grids may differ);
    ``box_size`` [Mpc/h] > 0; ``cosmology``: a :class:`sims.cosmology.Cosmology` or a dict
    (stored as JSON); ``lr_particles``, ``hr_particles``: particles per side of the runs the
    fields were painted from, N_total^(1/3) (an integer for a lattice run; non-integer for
    e.g. gas cells), stored when given (None: fields not painted from particles);
    ``extra_attrs``: further attributes (dicts are JSON-encoded).
    """
    lr, hr = _check_cube("lr", lr), _check_cube("hr", hr)
    if not box_size > 0:
        raise ValueError(f"box_size must be > 0 [Mpc/h], got {box_size}")
    cosmo = cosmology if isinstance(cosmology, dict) else cosmology.to_dict()
    particles = {name: value for name, value in (("lr_particles", lr_particles),
                                                 ("hr_particles", hr_particles)) if value is not None}
    with atomic_h5(path) as f:
        f.create_dataset("lr", data=lr)
        f.create_dataset("hr", data=hr)
        write_attrs(f, box_size=float(box_size), redshift=float(redshift), cosmology=cosmo,
                    **particles, **extra_attrs)


def read_pair(path):
    """Read a paired box file -> (lr, hr, attrs).

    Both fields float32 cubic and finite, the file has a ``box_size`` attribute (else
    :class:`~sims.errors.InputError` naming the file); ``attrs['cosmology']`` decoded to a dict.
    """
    lr = read_field(FieldSpec(str(path), "lr"))
    hr = read_field(FieldSpec(str(path), "hr"))
    attrs = dict(hr.attrs)
    if isinstance(attrs.get("cosmology"), str):
        attrs["cosmology"] = json.loads(attrs["cosmology"])
    return lr.data, hr.data, attrs
