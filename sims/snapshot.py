"""Gadget-2/3, AREPO, IllustrisTNG and Gadget-4 style HDF5 particle snapshots: write and read;
Gadget-2 binary snapshots (SnapFormat 1 and 2): read, through :mod:`sims.gadget_binary`, which
shows them with the groups and attributes below so that both formats get the same checks.

Layout (Gadget-2 user guide sec. 6.4; TNG data specifications; Gadget-4 user guide sec. 8):

- one file ``snap_XXX.hdf5``, or chunks ``snapdir_XXX/snap_XXX.i.hdf5`` (``snapshot_`` base too;
  binary: ``snap_XXX`` or ``snap_XXX.i``);
- ``/Header`` attributes NumPart_ThisFile[6], NumPart_Total[6] and NumPart_Total_HighWord[6]
  (total = low | high << 32), MassTable[6] [1e10 Msun/h] (non-zero: that type has no
  ``Masses`` dataset), Time (= a), Redshift, BoxSize, NumFilesPerSnapshot, Omega0,
  OmegaLambda, HubbleParam (OmegaBaryon where known);
- Gadget-4: 64-bit counts and no HighWord; the cosmology and units live in ``/Parameters``
  (with BoxSize again);
- groups ``PartTypeN`` with Coordinates, Velocities, ParticleIDs (and Masses), each with the
  attributes a_scaling, h_scaling and to_cgs (as TNG and Gadget-4 write them); a chunk holding
  no particles of a type has no group for it.

Units: masses in 1e10 Msun/h and velocities in km/s (the Gadget defaults). Lengths are in
kpc/h (TNG, Gadget default) or Mpc/h; the reader takes the unit from ``UnitLength_in_cm`` in
``/Header`` or ``/Parameters``, else guesses from the box: BoxSize > 4000 means kpc/h (a
> 4 Gpc/h box in Mpc/h units, or a < 4 Mpc/h box in kpc/h units, is rare); pass
``length_unit`` to override. The writer records all three code units, UnitLength_in_cm,
UnitMass_in_g = 1.989e43 and UnitVelocity_in_cm_per_s = 1e5 (Gadget-2 user guide sec. 6.4 and
its parameter file; in /Header as AREPO and TNG, in /Parameters for Gadget-4): readers such as
pynbody take their units from these three together and fall back to Mpc/h lengths when one is
missing. The reader converts masses and velocities of files that declare other units.
Velocities are stored in Gadget's convention u = v_pec / sqrt(a) [km/s] (peculiar velocity
v_pec = a dx/dt); the API takes and returns v_pec. Positions are wrapped into [0, L) on both
write and read.
"""
import contextlib
import os
import re
from dataclasses import dataclass

import h5py
import numpy as np

from sims import gadget_binary
from sims.errors import InputError
from sims.h5io import atomic_h5, open_h5, real_number

N_TYPES = 6
LENGTH_UNITS = {"kpc/h": 1e-3, "Mpc/h": 1.0}   # code length unit -> Mpc/h
_MPC_CM = 3.085678e24                           # 1 Mpc in cm (Gadget's value)
_MASS_G = 1.989e43                              # 1e10 Msun in g (Gadget-2 SOLAR_MASS 1.989e33)
_KM_S_CM = 1e5                                  # 1 km/s in cm/s
_KPC_H_GUESS = 4000.0                           # BoxSize above this (no unit stored) means kpc/h
_VECTORS = ("Coordinates", "Velocities")         # datasets of shape (N, 3)
_CHUNK_NAME = re.compile(r"^(?P<base>.+)\.(?P<index>\d+)(?P<ext>\.hdf5|\.h5)?$")


@dataclass(frozen=True)
class SnapshotInfo:
    """What the headers of a snapshot say, without reading particles.

    ``files``: the chunk paths in order; ``n_total`` (6,) uint64 particle totals per type;
    ``n_per_file`` (files, 6) uint64 NumPart_ThisFile of each chunk;
    ``box_size`` [Mpc/h]; ``to_mpc_h``: factor from stored lengths to Mpc/h and
    ``length_unit_source`` how it was found; ``to_mass`` and ``to_km_s``: factors from stored
    masses to 1e10 Msun/h and stored velocities to km/s (UnitMass_in_g,
    UnitVelocity_in_cm_per_s; 1 where absent); ``cosmology``: {'Omega_m', 'Omega_L', 'h',
    'Omega_b'} as far as the file records them; ``header``: the raw /Header attributes of chunk 0.
    """

    files: tuple
    n_total: np.ndarray
    n_per_file: np.ndarray
    box_size: float
    redshift: float
    to_mpc_h: float
    length_unit_source: str
    cosmology: dict
    header: dict
    to_mass: float = 1.0
    to_km_s: float = 1.0


@dataclass(frozen=True)
class Snapshot:
    """Particles of one type: ``positions`` [Mpc/h] float64 (N, 3) in [0, box_size);
    ``masses`` [1e10 Msun/h] (N,); ``velocities`` (peculiar, km/s, (N, 3)) and ``ids`` (N,)
    when asked for, else None; ``info`` the :class:`SnapshotInfo`."""

    positions: np.ndarray
    masses: np.ndarray
    box_size: float
    redshift: float
    header: dict
    info: SnapshotInfo
    velocities: np.ndarray | None = None
    ids: np.ndarray | None = None


def wrap(positions, box_size):
    """Periodic wrap into [0, box_size); values that round to box_size map to 0."""
    wrapped = np.mod(positions, box_size)
    return np.where(wrapped >= box_size, wrapped - box_size, wrapped)


# ---------------------------------------------------------------- writing


def write_snapshot(path, positions, velocities, ids, box_size, redshift, cosmo, particle_mass,
                   n_files=1, length_unit="kpc/h", gadget4=False, part_type=1):
    """Write one particle type as a Gadget-style HDF5 snapshot, each file atomically.

    ``positions`` (N, 3) [Mpc/h] (wrapped into the box); ``velocities`` (N, 3) peculiar [km/s];
    ``ids`` (N,) integers or None for 0..N-1; ``box_size`` [Mpc/h]; ``cosmo`` a
    :class:`~sims.cosmology.Cosmology`; ``particle_mass`` [1e10 Msun/h]: a scalar goes to the
    MassTable, an (N,) array to a ``Masses`` dataset. ``n_files == 1`` writes the file ``path``;
    ``n_files > 1`` makes the directory ``path`` (e.g. ``snapdir_005``) with chunks
    ``snap_005.i.hdf5`` (base: the directory name with ``snapdir_`` -> ``snap_``), particles
    split evenly in order (chunks past N stay empty and get no PartType group).
    ``gadget4``: Gadget-4 header (uint64 counts, no HighWord, cosmology in /Parameters).
    Returns the list of files written.
    """
    positions, velocities, ids, masses = _check_particles(positions, velocities, ids, particle_mass)
    if length_unit not in LENGTH_UNITS:
        raise ValueError(f"length_unit must be one of {sorted(LENGTH_UNITS)}, got {length_unit!r}")
    if not (box_size > 0 and n_files >= 1 and 0 <= part_type < N_TYPES):
        raise ValueError(f"need box_size > 0, n_files >= 1, 0 <= part_type < 6; got "
                         f"{box_size}, {n_files}, {part_type}")
    scale = 1 / LENGTH_UNITS[length_unit]
    a = 1 / (1 + redshift)
    arrays = {"Coordinates": wrap(positions, box_size) * scale,
              "Velocities": velocities / np.sqrt(a), "ParticleIDs": ids}
    if masses.ndim:
        arrays["Masses"] = masses
    mass_table = np.zeros(N_TYPES)
    mass_table[part_type] = 0.0 if masses.ndim else float(masses)
    files = _chunk_paths(path, n_files)
    splits = np.array_split(np.arange(len(positions)), n_files)
    common = dict(box=box_size * scale, a=a, redshift=redshift, cosmo=cosmo, n_files=n_files,
                  n_total=len(positions), mass_table=mass_table, part_type=part_type,
                  unit_cm=_MPC_CM * LENGTH_UNITS[length_unit], gadget4=gadget4)
    for file, index in zip(files, splits):
        with atomic_h5(file) as f:
            _write_header(f, n_this=len(index), **common)
            if len(index):
                group = f.create_group(f"PartType{part_type}")
                for name, values in arrays.items():
                    group.create_dataset(name, data=values[index])
                _write_scalings(group, common["unit_cm"])
    return files


def _check_particles(positions, velocities, ids, particle_mass):
    positions = np.asarray(positions, dtype=np.float64)
    velocities = np.asarray(velocities, dtype=np.float64)
    n = len(positions)
    ids = np.arange(n, dtype=np.uint64) if ids is None else np.asarray(ids).astype(np.uint64)
    masses = np.asarray(particle_mass, dtype=np.float64)
    if positions.shape != (n, 3) or velocities.shape != (n, 3) or ids.shape != (n,):
        raise ValueError(f"need positions and velocities (N, 3) and ids (N,); got "
                         f"{positions.shape}, {velocities.shape}, {ids.shape}")
    if masses.shape not in ((), (n,)) or not np.all(masses > 0):
        raise ValueError("particle_mass must be a positive scalar or an (N,) positive array")
    return positions, velocities, ids, masses


def _chunk_paths(path, n_files):
    path = os.fspath(path)
    if n_files == 1:
        return [path]
    os.makedirs(path, exist_ok=True)
    name = os.path.basename(os.path.normpath(path))
    base = "snap_" + name[len("snapdir_"):] if name.startswith("snapdir_") else name
    return [os.path.join(path, f"{base}.{i}.hdf5") for i in range(n_files)]


def _write_header(f, *, n_this, box, a, redshift, cosmo, n_files, n_total, mass_table,
                  part_type, unit_cm, gadget4):
    """Header of one chunk. Gadget-2/3: int32 ThisFile, uint32 Total + HighWord, cosmology and
    code units in /Header (as AREPO and TNG). Gadget-4: uint64 counts, cosmology and units in
    /Parameters."""
    this, total = np.zeros(N_TYPES, np.uint64), np.zeros(N_TYPES, np.uint64)
    this[part_type], total[part_type] = n_this, n_total
    header = f.create_group("Header")
    cosmology = {"Omega0": cosmo.Omega_m, "OmegaLambda": cosmo.Omega_L,
                 "OmegaBaryon": cosmo.Omega_b, "HubbleParam": cosmo.h, "UnitLength_in_cm": unit_cm,
                 "UnitMass_in_g": _MASS_G, "UnitVelocity_in_cm_per_s": _KM_S_CM}
    header.attrs.update({"MassTable": mass_table, "Time": a, "Redshift": float(redshift),
                         "BoxSize": float(box), "NumFilesPerSnapshot": np.int32(n_files)})
    if gadget4:
        header.attrs.update({"NumPart_ThisFile": this, "NumPart_Total": total})
        f.create_group("Parameters").attrs.update({**cosmology, "BoxSize": float(box)})
    else:
        header.attrs.update({
            "NumPart_ThisFile": this.astype(np.int32),
            "NumPart_Total": (total & 0xFFFFFFFF).astype(np.uint32),
            "NumPart_Total_HighWord": (total >> np.uint64(32)).astype(np.uint32), **cosmology})


def _write_scalings(group, unit_cm):
    """Per-dataset units of TNG and Gadget-4: physical [cgs] = value * a^a_scaling *
    h^h_scaling * to_cgs (TNG data specifications; Gadget-4 user guide sec. 8)."""
    scalings = {"Coordinates": (1.0, -1.0, unit_cm), "Velocities": (0.5, 0.0, _KM_S_CM),
                "ParticleIDs": (0.0, 0.0, 0.0), "Masses": (0.0, -1.0, _MASS_G)}
    for name in group:
        a_scaling, h_scaling, to_cgs = scalings[name]
        group[name].attrs.update({"a_scaling": a_scaling, "h_scaling": h_scaling, "to_cgs": to_cgs})


# ---------------------------------------------------------------- reading


def open_chunk(path):
    """One snapshot file, to use in a ``with`` block: an h5py File, or a Gadget-2 binary file as
    :func:`sims.gadget_binary.open_binary` shows it; InputError naming ``path`` for anything else."""
    path = os.fspath(path)
    if os.path.isfile(path) and not h5py.is_hdf5(path):
        if gadget_binary.byte_order(path) is None:
            raise InputError(path, "not an HDF5 file nor a Gadget-2 binary snapshot (its first "
                                   "record marker is neither 256 nor 8), or truncated")
        return contextlib.nullcontext(gadget_binary.open_binary(path))
    return open_h5(path)


def snapshot_files(path):
    """The chunk files of the snapshot named by ``path``: a file (``snap_005.hdf5``, any chunk
    ``snap_005.3.hdf5``, binary ``snap_005`` or ``snap_005.3``), a ``snapdir_XXX`` directory, or
    a base path without extension."""
    path = os.fspath(path)
    if os.path.isdir(path):
        firsts = sorted(e for e in os.listdir(path) if re.fullmatch(r".+\.0(\.hdf5|\.h5)?", e))
        if len(firsts) != 1:
            raise InputError(path, f"expected one snapshot (a file NAME.0.hdf5 or NAME.0) in the "
                                   f"directory, found {firsts or 'none'}")
        path = os.path.join(path, firsts[0])
    elif not os.path.exists(path):
        found = [p for p in (path + ".hdf5", path + ".0.hdf5", path + ".0") if os.path.exists(p)]
        if not found:
            raise InputError(path, "no such snapshot (tried the path, .hdf5, .0.hdf5 and .0)")
        path = found[0]
    with open_chunk(path) as f:
        n_files = int(_header(f, path).attrs.get("NumFilesPerSnapshot", 1))
    if n_files == 1:
        return (path,)
    match = _CHUNK_NAME.match(os.path.basename(path))
    if not match:
        raise InputError(path, f"header says {n_files} files but the name is not BASE.i.hdf5 "
                               f"or BASE.i")
    folder = os.path.dirname(path)
    files = tuple(os.path.join(folder, f"{match['base']}.{i}{match['ext'] or ''}")
                  for i in range(n_files))
    missing = [p for p in files if not os.path.exists(p)]
    if missing:
        raise InputError(missing[0], f"chunk of a {n_files}-file snapshot is missing")
    return files


def _header(f, path):
    if "Header" not in f:
        raise InputError(path, "missing /Header group: not a Gadget-style snapshot")
    return f["Header"]


def _attr(f, name):
    """An attribute from /Header, else /Parameters (Gadget-4), else None."""
    for group in ("Header", "Parameters"):
        if group in f and name in f[group].attrs:
            return f[group].attrs[name]
    return None


def total_counts(header):
    """Particle totals per type from /Header attributes: NumPart_Total | HighWord << 32 (uint64)."""
    low = np.asarray(header["NumPart_Total"]).astype(np.uint64)
    high = np.asarray(header.get("NumPart_Total_HighWord", np.zeros(N_TYPES))).astype(np.uint64)
    return low | (high << np.uint64(32))


def _length_scale(f, box, length_unit):
    """(stored length -> Mpc/h factor, how it was decided)."""
    if length_unit is not None:
        if length_unit not in LENGTH_UNITS:
            raise InputError("length_unit", f"must be one of {sorted(LENGTH_UNITS)}, got {length_unit!r}")
        return LENGTH_UNITS[length_unit], "given"
    unit_cm = _attr(f, "UnitLength_in_cm")
    if unit_cm is not None:
        return float(unit_cm) / _MPC_CM, "UnitLength_in_cm"
    guess = "kpc/h" if box > _KPC_H_GUESS else "Mpc/h"
    return LENGTH_UNITS[guess], f"guessed {guess} from BoxSize"


def snapshot_info(path, length_unit=None):
    """Read the headers of every chunk of a snapshot and check that their counts agree and that
    every chunk's Coordinates are real numbers of shape (n, 3), before any particle is read.

    ``length_unit``: None (detect, see module docstring), 'kpc/h' or 'Mpc/h'.
    Raises :class:`~sims.errors.InputError` naming the file for anything malformed.
    """
    files = snapshot_files(path)
    with open_chunk(files[0]) as f:
        header = dict(_header(f, files[0]).attrs)
        missing = [k for k in ("NumPart_ThisFile", "NumPart_Total", "BoxSize", "Redshift")
                   if k not in header]
        if missing:
            raise InputError(files[0], f"/Header lacks {', '.join(missing)}")
        box = real_number(header["BoxSize"], "BoxSize", files[0], positive=True)
        to_mpc_h, source = _length_scale(f, box, length_unit)
        names = {"Omega_m": "Omega0", "Omega_L": "OmegaLambda", "h": "HubbleParam",
                 "Omega_b": "OmegaBaryon"}
        cosmology = {k: float(v) for k, v in ((k, _attr(f, n)) for k, n in names.items())
                     if v is not None}
        to_mass, to_km_s = (_unit_ratio(f, files[0], name, cgs)
                            for name, cgs in (("UnitMass_in_g", _MASS_G),
                                              ("UnitVelocity_in_cm_per_s", _KM_S_CM)))
    n_total = total_counts(header)
    n_per_file = np.array([_this_file_counts(p) for p in files])
    n_sum = n_per_file.sum(axis=0, dtype=np.uint64)
    if np.any(n_sum != n_total):
        raise InputError(files[0], f"inconsistent counts: NumPart_Total says {n_total.tolist()}, "
                                   f"the files' NumPart_ThisFile add up to {n_sum.tolist()}")
    for chunk, counts in zip(files, n_per_file):
        _check_coordinates(chunk, counts)
    return SnapshotInfo(files=files, n_total=n_total, n_per_file=n_per_file, box_size=box * to_mpc_h,
                        redshift=real_number(header["Redshift"], "Redshift", files[0]), to_mpc_h=to_mpc_h,
                        length_unit_source=source, cosmology=cosmology, header=header,
                        to_mass=to_mass, to_km_s=to_km_s)


def _unit_ratio(f, path, name, cgs):
    """Code unit ``name`` [cgs] from /Header or /Parameters over ``cgs``; 1 if not recorded."""
    value = _attr(f, name)
    return 1.0 if value is None else real_number(value, name, path, positive=True) / cgs


def _this_file_counts(path):
    with open_chunk(path) as f:
        return np.asarray(_header(f, path).attrs["NumPart_ThisFile"]).astype(np.uint64)


def _check_coordinates(path, counts):
    """Check the Coordinates of every particle type that chunk ``path`` holds (``counts``)."""
    with open_chunk(path) as f:
        for part_type in np.flatnonzero(counts):
            _checked_dataset(f, path, f"PartType{part_type}", "Coordinates", int(counts[part_type]))


def _checked_dataset(f, path, group_name, name, n):
    """Dataset ``group_name/name`` of the open chunk ``f``: real numbers of shape (n, 3) (n,
    for ids), else InputError naming ``path``."""
    dset = f[group_name].get(name) if group_name in f else None
    if not isinstance(dset, (h5py.Dataset, gadget_binary.BlockSlice)):
        raise InputError(path, f"{group_name} has {n} particles but no {name} dataset")
    if len(dset) != n:
        raise InputError(path, f"inconsistent counts: {group_name}/{name} has {len(dset)} rows, "
                               f"NumPart_ThisFile says {n}")
    expected = (n, 3) if name in _VECTORS else (n,)
    if dset.shape != expected or dset.dtype.kind not in "fiu":
        raise InputError(path, f"{group_name}/{name} holds {dset.dtype} values of shape "
                               f"{dset.shape}; expected real numbers of shape {expected}")
    return dset


def read_snapshot(path, part_type=1, *, length_unit=None, load_velocities=False, load_ids=False):
    """Read all particles of one type from a (possibly multi-file) snapshot.

    Returns a :class:`Snapshot` with positions in Mpc/h wrapped into [0, L), masses [1e10
    Msun/h] from the MassTable or the ``Masses`` dataset, and (if asked) peculiar velocities
    v_pec = sqrt(a) u [km/s] and particle IDs. Errors (not HDF5, no /Header, a type with particles but no
    Coordinates, counts that disagree, no masses) raise InputError naming the file.
    """
    info = snapshot_info(path, length_unit)
    chunks = list(iter_chunks(info, part_type, load_velocities=load_velocities, load_ids=load_ids))
    return Snapshot(box_size=info.box_size, redshift=info.redshift, header=info.header, info=info,
                    **{name: _joined(chunks, name) for name in ("positions", "masses", "velocities", "ids")})


def _joined(chunks, name):
    """Field ``name`` of all chunks concatenated, or None where it was not loaded."""
    parts = [getattr(chunk, name) for chunk in chunks]
    return None if parts[0] is None else np.concatenate(parts)


@dataclass(frozen=True)
class Particles:
    """One chunk's particles of one type, converted like :class:`Snapshot`'s fields."""

    positions: np.ndarray
    masses: np.ndarray
    velocities: np.ndarray | None = None
    ids: np.ndarray | None = None


def iter_chunks(info, part_type=1, *, load_velocities=False, load_ids=False):
    """Yield :class:`Particles` chunk by chunk (skipping chunks without that type), so that a
    snapshot larger than memory can be painted piecewise. ``info`` from :func:`snapshot_info`."""
    if info.n_total[part_type] == 0:
        raise InputError(info.files[0], f"has no particles of type {part_type}")
    wanted = ["Coordinates"] + ["Velocities"] * load_velocities + ["ParticleIDs"] * load_ids
    sqrt_a = np.sqrt(1 / (1 + info.redshift))
    for path, n in zip(info.files, info.n_per_file[:, part_type]):
        if n:
            data = _read_chunk(path, part_type, int(n), wanted)
            yield Particles(
                positions=wrap(data["Coordinates"].astype(np.float64) * info.to_mpc_h, info.box_size),
                masses=data["Masses"] * info.to_mass,
                velocities=data["Velocities"] * (sqrt_a * info.to_km_s) if load_velocities else None,
                ids=data["ParticleIDs"] if load_ids else None)


def _read_chunk(path, part_type, n, wanted):
    """Datasets ``wanted`` plus masses (float64) of the n particles of one type in one chunk."""
    with open_chunk(path) as f:
        header = _header(f, path).attrs
        group_name = f"PartType{part_type}"
        out = {name: _checked_dataset(f, path, group_name, name, n)[...] for name in wanted}
        group = f[group_name]
        mass = float(np.asarray(header["MassTable"])[part_type]) if "MassTable" in header else 0.0
        if mass > 0:
            out["Masses"] = np.full(n, mass)
        elif "Masses" in group and len(group["Masses"]) == n:
            out["Masses"] = group["Masses"][...].astype(np.float64)
        else:
            raise InputError(path, f"{group_name}: MassTable is 0 and no Masses dataset of {n} rows")
    return out
