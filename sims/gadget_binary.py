"""Gadget-2 binary snapshots (SnapFormat 1 and 2), shown with the groups, attributes and datasets
of the HDF5 layout so that :mod:`sims.snapshot` checks and reads both formats with one code path.

Layout (Gadget-2 user guide, Springel 2005, sec. 6.3-6.4; Gadget-2 ``io.c``): a file is a
sequence of Fortran unformatted records, each framed by its byte count as an int32 before and
after. Format 1: the records are HEAD, POS, VEL, ID, then MASS if some particle of the file has
a MassTable entry of 0, then gas blocks (not read here), in that order. Format 2 puts before
every block a record of 8 bytes: its 4-character label and an int32. The HEAD record is the
256-byte ``io_header`` struct (:data:`HEADER`). Blocks list the particles type by type (type 0
first); POS and VEL hold 3 float32 per particle (float64 in a DOUBLEPRECISION build), ID uint32
(uint64 with LONGIDS), MASS one float per particle of the types with MassTable 0; the width is
read from the record size. Byte order: that of the first marker (256 or 8). Units are not
recorded: the Gadget defaults (lengths kpc/h or Mpc/h, guessed from the box by the reader;
masses 1e10 Msun/h; VEL u = v_pec / sqrt(a) km/s). A snapshot of n files is BASE.0 .. BASE.n-1.
"""
import os
import types
from dataclasses import dataclass

import numpy as np

from sims.errors import InputError

HEADER = np.dtype([
    ("npart", "i4", 6), ("mass", "f8", 6), ("time", "f8"), ("redshift", "f8"),
    ("flag_sfr", "i4"), ("flag_feedback", "i4"), ("npartTotal", "u4", 6), ("flag_cooling", "i4"),
    ("num_files", "i4"), ("BoxSize", "f8"), ("Omega0", "f8"), ("OmegaLambda", "f8"),
    ("HubbleParam", "f8"), ("flag_stellarage", "i4"), ("flag_metals", "i4"),
    ("npartTotalHighWord", "u4", 6), ("flag_entropy_instead_u", "i4"), ("fill", "V60")])
FORMAT1_ORDER = ("HEAD", "POS", "VEL", "ID", "MASS")
_DATASETS = {"POS": "Coordinates", "VEL": "Velocities", "ID": "ParticleIDs", "MASS": "Masses"}
_KINDS = {"POS": "f", "VEL": "f", "ID": "u", "MASS": "f"}     # float32/64 or uint32/64


def byte_order(path):
    """(byte order '<' or '>', format 1 or 2) from the first record marker of ``path``, or None
    when it is neither 256 (the header record) nor 8 (a format-2 label record) in either order."""
    with open(path, "rb") as f:
        first = f.read(4)
    if len(first) == 4:
        for order in "<>":
            marker = int(np.frombuffer(first, order + "i4")[0])
            if marker in (256, 8):
                return order, 1 if marker == 256 else 2
    return None


@dataclass(frozen=True)
class BlockSlice:
    """One particle type's values in one block, read on demand: the part of h5py's Dataset that
    the reader uses (``shape``, ``dtype``, ``len``, indexing)."""

    path: str
    offset: int
    dtype: np.dtype
    shape: tuple

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        values = np.fromfile(self.path, self.dtype, count=int(np.prod(self.shape)), offset=self.offset)
        return values.reshape(self.shape).astype(self.dtype.newbyteorder("="))[key]


def records(path, order):
    """[(offset of the data, byte count)] of every record of the file; InputError naming ``path``
    for a record running past the end of the file or whose two markers differ."""
    size = os.path.getsize(path)
    found, position = [], 0
    with open(path, "rb") as f:
        while position < size:
            f.seek(position)
            head = np.frombuffer(f.read(4), order + "i4")
            count = int(head[0]) if len(head) else -1
            end = position + 4 + count
            if count < 0 or end + 4 > size:
                raise InputError(path, f"truncated or not a Gadget-2 binary snapshot: record "
                                       f"{len(found)} at byte {position} claims {count} bytes, "
                                       f"the file has {size}")
            f.seek(end)
            tail = int(np.frombuffer(f.read(4), order + "i4")[0])
            if tail != count:
                raise InputError(path, f"record {len(found)} at byte {position}: record markers "
                                       f"disagree ({count} before, {tail} after)")
            found.append((position + 4, count))
            position = end + 4
    return found


def labelled_blocks(path, order, snap_format):
    """{block name: (offset, byte count)}: format 1 named by position (:data:`FORMAT1_ORDER`),
    format 2 by the label records."""
    found = records(path, order)
    if snap_format == 1:
        return dict(zip(FORMAT1_ORDER, found))
    blocks = {}
    with open(path, "rb") as f:
        for index in range(0, len(found), 2):
            (label_at, label_size), data = found[index], found[index + 1:index + 2]
            if label_size != 8 or not data:
                raise InputError(path, f"record {index}: expected an 8-byte block label followed "
                                       f"by a block (SnapFormat 2), found {label_size} bytes")
            f.seek(label_at)
            blocks[f.read(4).decode("ascii", "replace").strip()] = data[0]
    return blocks


def open_binary(path):
    """A Gadget-2 binary file as {'Header': (attrs), 'PartTypeN': {dataset: BlockSlice}}, with
    the HDF5 attribute names (NumPart_ThisFile, NumPart_Total(_HighWord), MassTable, Time,
    Redshift, BoxSize, NumFilesPerSnapshot, Omega0, OmegaLambda, HubbleParam) and groups only
    for the types it holds. Every record is checked; a block whose size does not fit the header's
    counts raises InputError naming ``path``."""
    path = os.fspath(path)
    order, snap_format = byte_order(path)
    blocks = labelled_blocks(path, order, snap_format)
    if blocks.get("HEAD", (0, 0))[1] != HEADER.itemsize:
        raise InputError(path, f"the first block is not a {HEADER.itemsize}-byte Gadget-2 header")
    header = np.fromfile(path, HEADER.newbyteorder(order), count=1, offset=blocks["HEAD"][0])[0]
    npart, mass_table = header["npart"].astype(np.int64), header["mass"].astype(np.float64)
    if np.any(npart < 0):
        raise InputError(path, f"header lists negative particle counts {npart.tolist()}")
    attrs = {"NumPart_ThisFile": npart.astype(np.int32),
             "NumPart_Total": header["npartTotal"].astype(np.uint32),
             "NumPart_Total_HighWord": header["npartTotalHighWord"].astype(np.uint32),
             "MassTable": mass_table, "NumFilesPerSnapshot": np.int32(header["num_files"]),
             **{name: float(header[key]) for name, key in (
                 ("Time", "time"), ("Redshift", "redshift"), ("BoxSize", "BoxSize"),
                 ("Omega0", "Omega0"), ("OmegaLambda", "OmegaLambda"), ("HubbleParam", "HubbleParam"))}}
    view = {"Header": types.SimpleNamespace(attrs=attrs)}
    for part_type in np.flatnonzero(npart):
        view[f"PartType{part_type}"] = {}
    for name, dataset in _DATASETS.items():
        if name in blocks:
            counts = npart * (mass_table == 0) if name == "MASS" else npart
            _add_block(view, path, name, dataset, blocks[name], counts, order)
    return view


def _add_block(view, path, name, dataset, block, counts, order):
    """Add the per-type slices of block ``name`` (values of ``counts[t]`` particles of type t)."""
    offset, size = block
    n, per_particle = int(counts.sum()), 3 if name in ("POS", "VEL") else 1
    if n == 0:
        return
    widths = [w for w in (4, 8) if size == n * per_particle * w]
    if not widths:
        raise InputError(path, f"inconsistent counts: block {name} holds {size} bytes, not "
                               f"{per_particle} x 4 or 8 bytes for each of the {n} particles "
                               f"that NumPart_ThisFile lists")
    dtype = np.dtype(f"{order}{_KINDS[name]}{widths[0]}")
    shape = (3,) if per_particle == 3 else ()
    start = 0
    for part_type in np.flatnonzero(counts):
        count = int(counts[part_type])
        view[f"PartType{part_type}"][dataset] = BlockSlice(
            path, offset + start * per_particle * dtype.itemsize, dtype, (count, *shape))
        start += count
