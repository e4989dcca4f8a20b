"""sims.snapshot: Gadget/AREPO/TNG/Gadget-4 HDF5 snapshots written and read back, and bad files."""
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
