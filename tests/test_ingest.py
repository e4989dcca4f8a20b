"""sims.ingest and ``emulator ingest``: real-style snapshots painted into a paired box file."""
import numpy as np
import pytest

from emulator.cli import main
from sims.cosmology import Cosmology
from sims.errors import InputError
from sims.ingest import ingest_pair
from sims.pairfile import read_pair
from sims.snapshot import write_snapshot

COSMO = Cosmology(h=0.7, Omega_m=0.3, Omega_b=0.05)
BOX, N = 20.0, 8


def lattice(n):
    """Particles on the nodes i L / n, in C order of (ix, iy, iz)."""
    q = np.arange(n) * BOX / n
    return np.stack(np.meshgrid(q, q, q, indexing="ij"), axis=-1).reshape(-1, 3)


def write_pair_of_snapshots(folder, hr_box=BOX, hr_redshift=1.0):
    """LR: a 2N^3 DM lattice (uniform on any grid of N or fewer cells). HR: N^3 gas cells on
    the nodes of the N grid with varying masses, in 3 chunks. Returns the gas masses."""
    pos = lattice(2 * N)
    write_snapshot(folder / "lr.hdf5", pos, np.zeros_like(pos), None, BOX, 1.0, COSMO, 0.5)
    masses = np.random.default_rng(3).uniform(0.5, 1.5, N ** 3)
    pos = lattice(N) * hr_box / BOX
    write_snapshot(folder / "snapdir_001", pos, np.zeros_like(pos), None, hr_box, hr_redshift,
                   COSMO, masses, n_files=3, part_type=0)
    return masses


def test_cli_ingest_writes_pair_with_attributes(tmp_path, capsys):
    masses = write_pair_of_snapshots(tmp_path)
    out = tmp_path / "pair.h5"
    code = main(["ingest", "--lr", str(tmp_path / "lr.hdf5"), "--hr", str(tmp_path / "snapdir_001"),
                 "--hr-type", "gas", "--grid", str(N), "--lr-grid", str(N // 2), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and f"lr {N // 2}^3 from {2 * N}^3 particles, hr {N}^3 from {N}^3 gas" in printed
    lr, hr, attrs = read_pair(out)
    assert lr.shape == (N // 2,) * 3 and hr.shape == (N,) * 3 and hr.dtype == np.float32
    # a lattice with 8 particles per LR cell paints to a uniform field: delta = 0
    np.testing.assert_allclose(lr, 0.0, atol=1e-6)
    # gas cells sitting on nodes put all their mass on their node: delta = m / mean(m) - 1
    np.testing.assert_allclose(hr, (masses / masses.mean() - 1).reshape(N, N, N), atol=1e-5)
    assert abs(hr.mean(dtype=np.float64)) < 1e-6
    assert attrs["box_size"] == pytest.approx(BOX) and attrs["redshift"] == 1.0
    assert attrs["cosmology"] == pytest.approx({"Omega_m": 0.3, "Omega_L": 0.7, "h": 0.7, "Omega_b": 0.05})
    assert attrs["seed"] == -1 and attrs["hr_type"] == "gas"
    assert (attrs["lr_particles"], attrs["hr_particles"]) == (2 * N, N)     # per side, as simulate
    assert attrs["lr_source"].endswith("lr.hdf5") and attrs["hr_source"].endswith("snap_001.0.hdf5")
    assert attrs["created_by"].startswith("cosmo-sr-emulator")


def test_dark_matter_hr_on_default_grid_conserves_mass(tmp_path):
    pos = np.random.default_rng(5).uniform(0, BOX, (500, 3))
    for name in ("lr.hdf5", "hr.hdf5"):
        write_snapshot(tmp_path / name, pos, np.zeros_like(pos), None, BOX, 0.0, COSMO, 1.0)
    attrs = ingest_pair(tmp_path / "lr.hdf5", tmp_path / "hr.hdf5", tmp_path / "p.h5", N,
                        mas="tsc", progress=False)
    lr, hr, stored = read_pair(tmp_path / "p.h5")
    assert attrs["lr_grid"] == N and lr.shape == hr.shape == (N,) * 3
    # 500 particles are no cube: per side 500^(1/3) = 7.937..., from which 500 is recovered
    assert stored["hr_particles"] == pytest.approx(7.9370052598409974, rel=1e-15)
    assert round(stored["lr_particles"] ** 3) == 500
    np.testing.assert_array_equal(lr, hr)
    assert abs(hr.mean(dtype=np.float64)) < 1e-6 and hr.std() > 0.1


@pytest.mark.parametrize("kwargs, words", [
    (dict(hr_box=2 * BOX), "box size 40 Mpc/h differs"),
    (dict(hr_redshift=2.0), "redshift 2 differs"),
])
def test_mismatched_snapshots_exit_2_without_output(tmp_path, capsys, kwargs, words):
    write_pair_of_snapshots(tmp_path, **kwargs)
    out = tmp_path / "pair.h5"
    code = main(["ingest", "--lr", str(tmp_path / "lr.hdf5"), "--hr", str(tmp_path / "snapdir_001"),
                 "--hr-type", "gas", "--grid", str(N), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and words in err
    assert not out.exists() and not (tmp_path / "pair.h5.tmp").exists()


def test_bad_files_and_options_exit_2(tmp_path, capsys):
    write_pair_of_snapshots(tmp_path)
    (tmp_path / "junk.hdf5").write_text("junk")
    args = ["ingest", "--hr", str(tmp_path / "snapdir_001"), "--hr-type", "gas", "--out",
            str(tmp_path / "pair.h5")]
    for lr, grid, words in [(tmp_path / "junk.hdf5", "8", "not an HDF5"),
                            (tmp_path / "missing.hdf5", "8", "no such snapshot"),
                            (tmp_path / "lr.hdf5", "0", "--grid: must be an integer >= 1")]:
        assert main(args + ["--lr", str(lr), "--grid", grid]) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "pair.h5").exists()


def test_dm_requested_from_a_gas_only_snapshot(tmp_path):
    write_pair_of_snapshots(tmp_path)
    with pytest.raises(InputError, match="no particles of type 1"):
        ingest_pair(tmp_path / "lr.hdf5", tmp_path / "snapdir_001", tmp_path / "p.h5", N,
                    hr_type="dm", progress=False)
    assert not (tmp_path / "p.h5").exists()


def test_gadget_binary_snapshots_paint_like_their_hdf5_copies(tmp_path):
    """LR as a 2-file SnapFormat 1 binary, HR as a SnapFormat 2 binary with per-particle masses:
    the pair equals the one ingested from the same particles in HDF5 (float32 binary positions
    move particles by < 1e-6 L, which changes CIC weights by < 1e-5)."""
    from test_snapshot import write_gadget_binary
    rng = np.random.default_rng(7)
    pos, masses = rng.uniform(0, BOX, (300, 3)), rng.uniform(0.5, 1.5, 300)
    ids, vel = np.arange(1, 301), np.zeros((300, 3))
    write_gadget_binary(tmp_path / "lr_binary", pos, vel, ids, BOX, 1.0, 0.5, n_files=2)
    write_gadget_binary(tmp_path / "hr_binary", pos, vel, ids, BOX, 1.0, masses, snap_format=2)
    write_snapshot(tmp_path / "lr.hdf5", pos, vel, ids, BOX, 1.0, COSMO, 0.5)
    write_snapshot(tmp_path / "hr.hdf5", pos, vel, ids, BOX, 1.0, COSMO, masses)
    for name, lr, hr in (("binary.h5", "lr_binary", "hr_binary"), ("hdf5.h5", "lr.hdf5", "hr.hdf5")):
        assert main(["ingest", "--lr", str(tmp_path / lr), "--hr", str(tmp_path / hr),
                     "--grid", str(N), "--out", str(tmp_path / name)]) == 0
    (lr_bin, hr_bin, attrs), (lr_h5, hr_h5, _) = read_pair(tmp_path / "binary.h5"), read_pair(tmp_path / "hdf5.h5")
    np.testing.assert_allclose(lr_bin, lr_h5, atol=1e-4)
    np.testing.assert_allclose(hr_bin, hr_h5, atol=1e-4)
    assert np.abs(hr_bin - lr_bin).max() > 0.1                     # the HR masses were used
    assert attrs["lr_source"].endswith("lr_binary.0") and attrs["length_unit_lr"] == "guessed Mpc/h from BoxSize"
    assert attrs["box_size"] == BOX and attrs["cosmology"]["Omega_m"] == pytest.approx(0.3)


def test_malformed_gadget_binary_is_one_line_naming_it(tmp_path, capsys):
    from test_snapshot import write_gadget_binary
    pos = lattice(N)
    write_snapshot(tmp_path / "hr.hdf5", pos, np.zeros_like(pos), None, BOX, 1.0, COSMO, 1.0)
    lr = write_gadget_binary(tmp_path / "lr", pos, np.zeros_like(pos), np.arange(N ** 3), BOX, 1.0, 1.0)[0]
    with open(lr, "r+b") as f:                                     # the POS record's end marker
        f.seek(4 + 256 + 4 + 4 + 12 * N ** 3)
        f.write(b"\xff\xff\x00\x00")
    code = main(["ingest", "--lr", lr, "--hr", str(tmp_path / "hr.hdf5"), "--grid", str(N),
                 "--out", str(tmp_path / "pair.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {lr}: record 1 ")
    assert "record markers disagree" in err[0] and not (tmp_path / "pair.h5").exists()
