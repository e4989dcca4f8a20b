"""HDF5 conventions shared by every command: atomic writes, provenance, field specs.

Files carry their metadata as attributes (docs/design.md): ``box_size`` [Mpc/h], ``redshift``,
``cosmology`` (JSON), ``seed`` and ``created_by``.
"""
import contextlib
import contextvars
import importlib.metadata
import json
import os
import sys
from dataclasses import dataclass

import h5py
import numpy as np

from sims.outputs import atomic_path
from sims.errors import InputError


COMMAND_LINE = contextvars.ContextVar("command_line", default=None)
DISTRIBUTION = "cosmo-sr-emulator"


def package_version():
    """The installed distribution's version, read from its metadata: pyproject.toml is the one
    place it is written. "unknown" for a source tree that was never installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def provenance():
    """The ``created_by`` attribute: package version and the command that ran (the ``emulator``
    arguments set by the CLI in :data:`COMMAND_LINE`, else the interpreter's ``sys.argv``)."""
    command = COMMAND_LINE.get() or " ".join(sys.argv)
    return f"{DISTRIBUTION} {package_version()}: {command}"


@contextlib.contextmanager
def atomic_h5(path, mode="w"):
    """Open ``path + '.tmp'`` for writing and rename it onto ``path`` only if the block succeeds
    (:func:`sims.outputs.atomic_path`): a crash leaves no file at ``path`` that looks complete."""
    with atomic_path(path) as tmp, h5py.File(tmp, mode) as f:
        yield f


def open_h5(path):
    """Open an existing HDF5 file read-only, turning the usual failures into :class:`InputError`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "file does not exist")
    if not h5py.is_hdf5(path):
        raise InputError(path, "not an HDF5 file (or truncated)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(path, f"cannot be opened as HDF5 ({err})") from err


@dataclass(frozen=True)
class FieldSpec:
    """A ``FILE[:DATASET]`` argument."""

    path: str
    dataset: str | None = None

    @classmethod
    def parse(cls, text, default_dataset=None):
        path, sep, dataset = text.rpartition(":")
        if sep and path and dataset and "/" not in dataset:
            return cls(path, dataset)
        return cls(text, default_dataset)

    def __str__(self):
        return f"{self.path}:{self.dataset}" if self.dataset else self.path


@dataclass(frozen=True)
class Field:
    """A cubic periodic field read from HDF5: ``data`` float32 (n, n, n), side ``box_size`` [Mpc/h]."""

    data: np.ndarray
    box_size: float
    attrs: dict
    source: str


def field_dataset(f, spec):
    """The dataset ``spec.dataset`` of the open file ``f``, or InputError naming ``spec`` when it
    is missing, a group, empty, or holds anything but real numbers (float or integer: complex,
    bool and string values are refused, never converted)."""
    if spec.dataset not in f:
        raise InputError(spec.path, f"has no dataset '{spec.dataset}' (found: {', '.join(f.keys())})")
    dset = f[spec.dataset]
    if not isinstance(dset, h5py.Dataset):
        raise InputError(str(spec), "is a group, not a dataset")
    if dset.dtype.kind not in "fiu":
        raise InputError(str(spec), f"holds {dset.dtype} values; a field must be real numbers")
    if dset.size == 0:
        raise InputError(str(spec), f"is empty (shape {dset.shape})")
    return dset


def real_number(value, name, source, positive=False):
    """Attribute ``name`` (a scalar, or an array of one value) as a finite float (``positive``:
    > 0), else InputError naming ``source``: a string or an array is not a number."""
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "fiu":
        raise InputError(source, f"attribute '{name}' must be a number, got {_plain(value)!r}")
    number = float(array.reshape(()))
    if not np.isfinite(number) or (positive and number <= 0):
        raise InputError(source, f"attribute '{name}' must be a finite{' positive' * positive} "
                                 f"number, got {number:g}")
    return number


def read_field(spec, default_dataset=None, index=None):
    """Read a cubic float field and its attributes, checking the dataset (:func:`field_dataset`),
    shape, finiteness and ``box_size`` (a positive number [Mpc/h]).

    ``index`` selects one sample of a stacked (K, n, n, n) dataset. Raises :class:`InputError`
    naming the file for a missing or unreadable dataset, a non-cubic shape, NaN/Inf or a missing
    box size.
    """
    spec = spec if isinstance(spec, FieldSpec) else FieldSpec.parse(spec, default_dataset)
    spec = FieldSpec(spec.path, spec.dataset or default_dataset)
    if spec.dataset is None:
        raise InputError(spec.path, "no dataset named; use FILE:DATASET")
    source = str(spec)
    with open_h5(spec.path) as f:
        dset = field_dataset(f, spec)
        try:
            data = np.asarray(dset[index] if index is not None else dset[...], dtype=np.float32)
        except OSError as err:
            raise InputError(source, f"cannot be read ({' '.join(str(err).split())})") from err
        attrs = {**dict(f.attrs), **dict(dset.attrs)}
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise InputError(source, f"field must be cubic 3D, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise InputError(source, f"contains {np.count_nonzero(~np.isfinite(data))} NaN/Inf values")
    if "box_size" not in attrs:
        raise InputError(source, "missing attribute 'box_size' [Mpc/h]")
    box_size = real_number(attrs["box_size"], "box_size", source, positive=True)
    return Field(data, box_size, {k: _plain(v) for k, v in attrs.items()}, source)


def _plain(value):
    """h5py attribute value -> plain Python (for JSON reports)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_attrs(obj, **attrs):
    """Set HDF5 attributes, JSON-encoding dicts (e.g. ``cosmology``) and adding ``created_by``."""
    obj.attrs["created_by"] = provenance()
    for key, value in attrs.items():
        obj.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
