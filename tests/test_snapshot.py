"""sims.snapshot: Gadget/AREPO/TNG/Gadget-4 HDF5 snapshots written and read back, read by pynbody,
Gadget-2 binary snapshots read, and bad files."""
import os
import struct
import warnings

import h5py
import numpy as np
import pynbody
import pytest

from sims.cosmology import Cosmology
from sims.errors import InputError
from sims.snapshot import (LENGTH_UNITS, read_snapshot, snapshot_files, snapshot_info, total_counts,
                           write_snapshot)

COSMO = Cosmology(h=0.7, Omega_m=0.3, Omega_b=0.05)
BOX = 50.0


def particles(n, seed=0):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-0.1 * BOX, 1.1 * BOX, (n, 3))   # some outside the box: the writer wraps
    vel = rng.normal(0, 300.0, (n, 3))
    return pos, vel, rng.permutation(n) + 1


def check_round_trip(snap, pos, vel, ids):
    np.testing.assert_allclose(snap.positions, np.mod(pos, BOX), rtol=1e-12, atol=1e-9)
    assert snap.positions.min() >= 0 and snap.positions.max() < BOX
    np.testing.assert_allclose(snap.velocities, vel, rtol=1e-12)
    np.testing.assert_array_equal(snap.ids, ids)


@pytest.mark.parametrize("unit, stored_box", [("kpc/h", 50000.0), ("Mpc/h", 50.0)])
def test_single_file_round_trip(tmp_path, unit, stored_box):
    pos, vel, ids = particles(100)
    path = tmp_path / "snap_005.hdf5"
    write_snapshot(path, pos, vel, ids, BOX, 1.5, COSMO, particle_mass=0.8, length_unit=unit)
    snap = read_snapshot(path, load_velocities=True, load_ids=True)
    check_round_trip(snap, pos, vel, ids)
    assert snap.box_size == pytest.approx(BOX) and snap.redshift == 1.5
    assert snap.info.cosmology == pytest.approx({"Omega_m": 0.3, "Omega_L": 0.7, "h": 0.7, "Omega_b": 0.05})
    with h5py.File(path) as f:
        assert f["Header"].attrs["BoxSize"] == pytest.approx(stored_box)
        assert f["Header"].attrs["Time"] == pytest.approx(0.4)
        # Gadget velocity convention: stored u = v_pec / sqrt(a)
        np.testing.assert_allclose(f["PartType1/Velocities"][:5], vel[:5] / np.sqrt(0.4))


def test_multi_file_with_empty_chunks_read_by_any_name(tmp_path):
    pos, vel, ids = particles(3)
    folder = tmp_path / "snapdir_007"
    files = write_snapshot(folder, pos, vel, ids, BOX, 0.0, COSMO, 1.0, n_files=5)
    assert [f.rsplit("/", 1)[1] for f in files] == [f"snap_007.{i}.hdf5" for i in range(5)]
    with h5py.File(files[4]) as f:
        assert "PartType1" not in f and f["Header"].attrs["NumPart_ThisFile"][1] == 0
    for name in (folder, files[0], files[3], folder / "snap_007"):
        snap = read_snapshot(name, load_velocities=True, load_ids=True)
        check_round_trip(snap, pos, vel, ids)


def test_multi_file_snapshot_base_and_uneven_chunks(tmp_path):
    pos, vel, ids = particles(101)
    folder = tmp_path / "snapshot_000"
    write_snapshot(folder, pos, vel, ids, BOX, 0.0, COSMO, 1.0, n_files=3)
    assert snapshot_files(folder)[2].endswith("snapshot_000.2.hdf5")
    check_round_trip(read_snapshot(folder, load_velocities=True, load_ids=True), pos, vel, ids)


def test_mass_table_versus_masses_dataset(tmp_path):
    pos, vel, ids = particles(20)
    write_snapshot(tmp_path / "table.hdf5", pos, vel, ids, BOX, 0.0, COSMO, particle_mass=2.5)
    masses = np.linspace(1.0, 2.0, 20)
    write_snapshot(tmp_path / "dset.hdf5", pos, vel, ids, BOX, 0.0, COSMO, particle_mass=masses,
                   part_type=0)
    with h5py.File(tmp_path / "table.hdf5") as f:
        assert "Masses" not in f["PartType1"] and f["Header"].attrs["MassTable"][1] == 2.5
    with h5py.File(tmp_path / "dset.hdf5") as f:
        assert f["Header"].attrs["MassTable"][0] == 0.0
    np.testing.assert_array_equal(read_snapshot(tmp_path / "table.hdf5").masses, 2.5)
    np.testing.assert_array_equal(read_snapshot(tmp_path / "dset.hdf5", part_type=0).masses, masses)


def test_high_word_adds_to_total(tmp_path):
    """A hand-written header claiming 2^32 + 5 particles: total = low | high << 32."""
    path = tmp_path / "big.hdf5"
    with h5py.File(path, "w") as f:
        header = f.create_group("Header")
        header.attrs["NumPart_ThisFile"] = np.array([0, 5, 0, 0, 0, 0], np.int32)
        header.attrs["NumPart_Total"] = np.array([0, 5, 0, 0, 0, 0], np.uint32)
        header.attrs["NumPart_Total_HighWord"] = np.array([0, 1, 0, 0, 0, 0], np.uint32)
        header.attrs.update({"BoxSize": 1e5, "Redshift": 0.0, "NumFilesPerSnapshot": 1})
        assert int(total_counts(dict(header.attrs))[1]) == 2 ** 32 + 5
    with pytest.raises(InputError, match=r"inconsistent counts.*4294967301"):
        snapshot_info(path)


def test_gadget4_header(tmp_path):
    pos, vel, ids = particles(30)
    path = tmp_path / "snap_001.hdf5"
    write_snapshot(path, pos, vel, ids, BOX, 2.0, COSMO, 1.0, gadget4=True)
    with h5py.File(path) as f:
        header = f["Header"].attrs
        assert "NumPart_Total_HighWord" not in header and "Omega0" not in header
        assert header["NumPart_Total"].dtype == np.uint64
        assert f["Parameters"].attrs["Omega0"] == 0.3
        assert f["PartType1/Velocities"].attrs["a_scaling"] == 0.5
    snap = read_snapshot(path, load_velocities=True, load_ids=True)
    check_round_trip(snap, pos, vel, ids)
    assert snap.info.cosmology["h"] == 0.7 and snap.info.length_unit_source == "UnitLength_in_cm"


@pytest.mark.parametrize("kwargs", [dict(), dict(length_unit="Mpc/h"), dict(gadget4=True),
                                    dict(n_files=3), dict(particle_mass="array")])
def test_pynbody_reads_box_positions_masses_and_velocities(tmp_path, kwargs):
    """pynbody (independent code) reads what the writer wrote: box and positions in comoving
    Mpc/h, masses in 1e10 Msun/h, physical peculiar velocities in km/s. Tolerances: pynbody's
    Mpc and Msun are the IAU values, 1.4e-7 and 2.9e-4 below Gadget's 3.085678e24 cm and
    1.989e33 g."""
    pos, vel, ids = particles(200)
    masses = np.linspace(1.0, 2.0, 200) if kwargs.get("particle_mass") else 0.8
    path = tmp_path / ("snapdir_002" if kwargs.get("n_files") else "snap_002.hdf5")
    files = write_snapshot(path, pos, vel, ids, BOX, 1.5, COSMO, **(kwargs | {"particle_mass": masses}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # pynbody's notes on optional metadata
        snap = pynbody.load(files[0].removesuffix(".0.hdf5"))     # all chunks by their base
        assert len(snap) == 200
        box = snap.properties["boxsize"].in_units("Mpc a h**-1", **snap.conversion_context())
        order = np.argsort(snap["iord"])          # pynbody's order is not the file's
        by_id = np.argsort(ids)
        read = {"pos": snap["pos"].in_units("Mpc a h**-1")[order],
                "vel": snap["vel"].in_units("km s**-1")[order],
                "mass": snap["mass"].in_units("1e10 Msol h**-1")[order]}
    assert box == pytest.approx(BOX, rel=1e-6)
    np.testing.assert_allclose(read["pos"], np.mod(pos, BOX)[by_id], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(read["vel"], vel[by_id], rtol=1e-9)
    np.testing.assert_allclose(read["mass"], np.broadcast_to(masses, 200)[by_id], rtol=5e-4)
    assert snap.properties["a"] == pytest.approx(0.4) and snap.properties["h"] == 0.7


def test_reader_converts_declared_mass_and_velocity_units(tmp_path):
    """A file in Msun/h and m/s (UnitMass_in_g = 1.989e33, UnitVelocity_in_cm_per_s = 100) reads
    as 1e10 Msun/h and km/s."""
    pos, vel, ids = particles(10)
    path = tmp_path / "snap.hdf5"
    write_snapshot(path, pos, vel, ids, BOX, 0.0, COSMO, 2.0)
    with h5py.File(path, "a") as f:
        f["Header"].attrs.update({"UnitMass_in_g": 1.989e33, "UnitVelocity_in_cm_per_s": 100.0,
                                  "MassTable": np.array([0, 2e10, 0, 0, 0, 0])})
        f["PartType1/Velocities"][...] *= 1e3
    snap = read_snapshot(path, load_velocities=True)
    np.testing.assert_allclose(snap.masses, 2.0, rtol=1e-12)
    np.testing.assert_allclose(snap.velocities, vel, rtol=1e-12)


@pytest.mark.parametrize("unit, other", [("kpc/h", "Mpc/h"), ("Mpc/h", "kpc/h")])
def test_length_unit_guessed_without_unit_attribute(tmp_path, unit, other):
    pos, vel, ids = particles(10)
    path = tmp_path / "snap.hdf5"
    write_snapshot(path, pos, vel, ids, BOX, 0.0, COSMO, 1.0, length_unit=unit)
    with h5py.File(path, "a") as f:
        del f["Header"].attrs["UnitLength_in_cm"]
    snap = read_snapshot(path)
    assert snap.box_size == pytest.approx(BOX) and snap.info.length_unit_source == f"guessed {unit} from BoxSize"
    np.testing.assert_allclose(snap.positions, np.mod(pos, BOX), atol=1e-9)
    stored = BOX / LENGTH_UNITS[unit]
    assert read_snapshot(path, length_unit=other).box_size == pytest.approx(stored * LENGTH_UNITS[other])


def test_positions_on_the_box_edge_wrap_to_zero(tmp_path):
    path = tmp_path / "edge.hdf5"
    write_snapshot(path, [[BOX, -1e-17, 0.0]], [[0.0, 0.0, 0.0]], None, BOX, 0.0, COSMO, 1.0)
    with h5py.File(path, "a") as f:                     # a reader must also wrap what others wrote
        f["PartType1/Coordinates"][0] = [BOX * 1000, -1e-3, 0.0]
    pos = read_snapshot(path).positions
    assert pos[0, 0] == 0.0 and 0 <= pos[0, 1] < BOX


def _corrupt(path, action):
    with h5py.File(path, "a") as f:
        action(f)


@pytest.mark.parametrize("action, words", [
    (lambda f: f.__delitem__("Header"), "missing /Header"),
    (lambda f: f.__delitem__("PartType1/Coordinates"), "no Coordinates"),
    (lambda f: f["Header"].attrs.__setitem__("NumPart_ThisFile", np.array([0, 9, 0, 0, 0, 0], np.int32)),
     "inconsistent counts"),
    (lambda f: f["Header"].attrs.__setitem__("MassTable", np.zeros(6)), "no Masses"),
])
def test_bad_snapshot_raises_input_error_naming_file(tmp_path, action, words):
    pos, vel, ids = particles(8)
    path = tmp_path / "snap_000.hdf5"
    write_snapshot(path, pos, vel, ids, BOX, 0.0, COSMO, 1.0)
    _corrupt(path, action)
    with pytest.raises(InputError, match=words) as err:
        read_snapshot(path)
    assert err.value.source == str(path)


def test_rows_disagreeing_with_header_count(tmp_path):
    pos, vel, ids = particles(8)
    folder = tmp_path / "snapdir_000"
    files = write_snapshot(folder, pos, vel, ids, BOX, 0.0, COSMO, 1.0, n_files=2)
    with h5py.File(files[1], "a") as f:
        del f["PartType1/Coordinates"]
        f["PartType1/Coordinates"] = np.zeros((3, 3))
    with pytest.raises(InputError, match="has 3 rows") as err:
        read_snapshot(folder)
    assert err.value.source == files[1]


def test_not_hdf5_missing_chunk_and_missing_file(tmp_path):
    text = tmp_path / "snap_000.hdf5"
    text.write_text("not a snapshot")
    with pytest.raises(InputError, match="not an HDF5"):
        read_snapshot(text)
    pos, vel, ids = particles(8)
    files = write_snapshot(tmp_path / "snapdir_001", pos, vel, ids, BOX, 0.0, COSMO, 1.0, n_files=3)
    (tmp_path / "snapdir_001" / "snap_001.1.hdf5").unlink()
    with pytest.raises(InputError, match="missing") as err:
        read_snapshot(files[0])
    assert err.value.source == str(tmp_path / "snapdir_001" / "snap_001.1.hdf5")
    with pytest.raises(InputError, match="no such snapshot"):
        read_snapshot(tmp_path / "nothing_here")
    with pytest.raises(InputError, match="expected one snapshot"):
        read_snapshot(tmp_path)


def test_writer_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_snapshot(tmp_path / "s.hdf5", np.zeros((4, 2)), np.zeros((4, 3)), None, BOX, 0.0, COSMO, 1.0)
    with pytest.raises(ValueError, match="particle_mass"):
        write_snapshot(tmp_path / "s.hdf5", np.zeros((4, 3)), np.zeros((4, 3)), None, BOX, 0.0, COSMO, -1.0)
    assert list(tmp_path.iterdir()) == []


# ---- Gadget-2 binary snapshots (SnapFormat 1 and 2) -------------------------------------------

def _record(order, payload):
    """A Fortran unformatted record: int32 byte count, the bytes, the count again."""
    marker = struct.pack(order + "i", len(payload))
    return marker + payload + marker


def write_gadget_binary(path, pos, vel, ids, box, redshift, mass, *, snap_format=1, n_files=1,
                        order="<", double=False, long_ids=False, part_type=1):
    """Gadget-2 binary snapshot by the user guide (Springel 2005, sec. 6.3-6.4), written here
    independently of sims.gadget_binary: the 256-byte io_header, then POS, VEL (u = v / sqrt(a)),
    ID and (for per-particle ``mass``) MASS records; SnapFormat 2 puts a (label, size + 8)
    record before each. ``pos`` [box units] written as given. Returns the files (PATH or PATH.i)."""
    a = 1 / (1 + redshift)
    n, fmt, id_fmt = len(pos), "d" if double else "f", "Q" if long_ids else "I"
    mass_table, total = [0.0] * 6, [0] * 6
    mass_table[part_type] = 0.0 if np.ndim(mass) else float(mass)
    total[part_type] = n
    files = [str(path)] if n_files == 1 else [f"{path}.{i}" for i in range(n_files)]
    for file, index in zip(files, np.array_split(np.arange(n), n_files)):
        this = [0] * 6
        this[part_type] = len(index)
        header = struct.pack(order + "6i6dddii6Iii4dii6Ii", *this, *mass_table, a, redshift, 0, 0,
                             *total, 0, n_files, box, COSMO.Omega_m, COSMO.Omega_L, COSMO.h, 0, 0,
                             *[0] * 6, 0)
        blocks = [("HEAD", header + bytes(256 - len(header))),
                  ("POS ", struct.pack(order + f"{3 * len(index)}{fmt}", *pos[index].ravel())),
                  ("VEL ", struct.pack(order + f"{3 * len(index)}{fmt}", *(vel[index] / np.sqrt(a)).ravel())),
                  ("ID  ", struct.pack(order + f"{len(index)}{id_fmt}", *ids[index]))]
        if np.ndim(mass):
            blocks.append(("MASS", struct.pack(order + f"{len(index)}{fmt}", *mass[index])))
        with open(file, "wb") as f:
            for label, payload in blocks:
                if snap_format == 2:
                    f.write(_record(order, label.encode() + struct.pack(order + "i", len(payload) + 8)))
                f.write(_record(order, payload))
    return files


def pynbody_particles(path):
    """(pos [Mpc/h], v_pec [km/s], mass [1e10 Msun/h], ids) as pynbody reads them, sorted by id."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = pynbody.load(str(path))
        order = np.argsort(snap["iord"])
        return (snap["pos"].in_units("Mpc a h**-1")[order], snap["vel"].in_units("km s**-1")[order],
                snap["mass"].in_units("1e10 Msol h**-1")[order], np.asarray(snap["iord"])[order])


BINARY_CASES = {"format 1": dict(), "format 2": dict(snap_format=2),
                "format 1, 3 files": dict(n_files=3),
                "format 2, 4 files, masses": dict(snap_format=2, n_files=4, mass="array"),
                "big-endian, float64, 64-bit ids": dict(order=">", double=True, long_ids=True)}


@pytest.mark.parametrize("case", BINARY_CASES)
def test_gadget_binary_read_like_pynbody_reads_it(tmp_path, case):
    """The test's writer checked by pynbody (an independent reader), then read by ours: same
    particles, box, redshift and cosmology; the length unit is guessed (binaries record none)."""
    kwargs = dict(BINARY_CASES[case])
    pos, vel, ids = particles(101)
    pos = np.mod(pos, BOX)
    mass = np.linspace(1.0, 2.0, 101) if kwargs.pop("mass", None) else 0.8
    files = write_gadget_binary(tmp_path / "snap_003", pos, vel, ids, BOX, 1.5, mass, **kwargs)
    precision = dict(rtol=1e-12) if kwargs.get("double") else dict(rtol=1e-6, atol=1e-5)
    by_id = np.argsort(ids)
    theirs = pynbody_particles(tmp_path / "snap_003")
    for value, expected in zip(theirs, (pos, vel, np.broadcast_to(mass, 101), ids)):
        np.testing.assert_allclose(value, expected[by_id], **precision)
    for name in [tmp_path / "snap_003", files[-1]] + [tmp_path] * (len(files) > 1):
        snap = read_snapshot(name, load_velocities=True, load_ids=True)
        assert snap.info.files == tuple(files)
        np.testing.assert_allclose(snap.positions, pos, **precision)
        np.testing.assert_allclose(snap.velocities, vel, **precision)
        np.testing.assert_allclose(snap.masses, np.broadcast_to(mass, 101), **precision)
        np.testing.assert_array_equal(snap.ids, ids)
    assert snap.box_size == BOX and snap.redshift == 1.5
    assert snap.info.cosmology == pytest.approx({"Omega_m": 0.3, "Omega_L": 0.7, "h": 0.7})
    assert snap.info.length_unit_source == "guessed Mpc/h from BoxSize"
    assert read_snapshot(files[0], length_unit="kpc/h").box_size == pytest.approx(BOX / 1000)


def test_gadget_binary_written_by_pynbody(tmp_path):
    """pynbody's own Gadget writer (SnapFormat 2, a MASS block for every particle): read back."""
    pos, vel, ids = particles(64)
    a, path = 1 / 3, tmp_path / "snap_010"
    snap = pynbody.new(dm=64)
    snap["pos"] = pynbody.array.SimArray(np.mod(pos, BOX), "Mpc a h**-1")
    snap["vel"] = pynbody.array.SimArray(vel / np.sqrt(a), "km s**-1 a**1/2")
    snap["mass"] = pynbody.array.SimArray(np.full(64, 0.8), "1e10 Msol h**-1")
    snap["iord"] = ids.astype(np.int32)
    snap.properties.update(a=a, z=2.0, boxsize=pynbody.units.Unit(f"{BOX} Mpc a h**-1"),
                           omegaM0=0.3, omegaL0=0.7, h=0.7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap.write(fmt=pynbody.snapshot.gadget.GadgetSnap, filename=str(path))
    read = read_snapshot(path, load_velocities=True, load_ids=True)
    np.testing.assert_allclose(read.positions, np.mod(pos, BOX), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(read.velocities, vel, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(read.masses, 0.8, rtol=1e-6)
    np.testing.assert_array_equal(read.ids, ids)
    assert read.box_size == BOX and read.redshift == pytest.approx(2.0)


def _damage(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


BAD_BINARIES = {
    "truncated": (lambda p, size: os.truncate(p, size - 100), "truncated"),
    "wrong end marker": (lambda p, size: _damage(p, 4 + 256, struct.pack("<i", 255)),
                         "record markers disagree"),
    "wrong first marker": (lambda p, size: _damage(p, 0, struct.pack("<i", 1234)),
                           "not an HDF5 file nor a Gadget-2 binary"),
    "header count too large": (lambda p, size: _damage(p, 4 + 4, struct.pack("<i", 40)),
                               "block POS holds 120 bytes, not 3 x 4 or 8 bytes for each of the 40"),
}


@pytest.mark.parametrize("case", BAD_BINARIES)
def test_malformed_gadget_binary_names_the_file(tmp_path, case):
    damage, words = BAD_BINARIES[case]
    pos, vel, ids = particles(30)
    (tmp_path / "snapdir_004").mkdir()
    files = write_gadget_binary(tmp_path / "snapdir_004" / "snap_004", pos, vel, ids, BOX, 0.0, 1.0,
                                n_files=3)
    damage(files[1], os.path.getsize(files[1]))
    with pytest.raises(InputError, match=words) as err:
        read_snapshot(tmp_path / "snapdir_004")
    assert err.value.source == files[1]


def test_gadget_binary_totals_checked_like_hdf5(tmp_path):
    """NumPart_Total (npartTotal) disagreeing with the files' counts: the HDF5 message."""
    pos, vel, ids = particles(30)
    files = write_gadget_binary(tmp_path / "snap_005", pos, vel, ids, BOX, 0.0, 1.0, n_files=2)
    _damage(files[0], 4 + 96 + 4, struct.pack("<I", 31))        # npartTotal[1]
    with pytest.raises(InputError, match="inconsistent counts") as err:
        read_snapshot(files[1])
    assert err.value.source == files[0]
    os.remove(files[1])
    with pytest.raises(InputError, match="missing"):
        read_snapshot(files[0])
