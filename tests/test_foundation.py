"""The shared foundation: FFT wrapper, HDF5 conventions, CLI error handling."""
import h5py
import numpy as np
import pytest

from sims import fft, h5io
from sims.errors import InputError


def test_rfftn_matches_numpy_and_round_trips():
    field = np.random.default_rng(0).standard_normal((8, 8, 8)).astype(np.float32)
    spectrum = fft.rfftn(field)
    np.testing.assert_allclose(spectrum, np.fft.rfftn(field), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fft.irfftn(spectrum, field.shape), field, atol=1e-5)


def test_hermitian_weights_count_full_space_modes():
    n = 6
    total = np.broadcast_to(fft.hermitian_weights(n), (n, n, n // 2 + 1)).sum()
    assert total == n ** 3


def test_wavenumbers_fundamental_and_nyquist():
    kx, _, kz = fft.wavenumbers(8, box_size=100.0)
    assert np.isclose(kx[1, 0, 0], 2 * np.pi / 100.0)
    assert np.isclose(abs(kx[4, 0, 0]), np.pi * 8 / 100.0)
    assert np.isclose(kz[0, 0, -1], np.pi * 8 / 100.0)


def test_atomic_h5_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with h5io.atomic_h5(target) as f:
            f["x"] = np.zeros(3)
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_read_field_checks(tmp_path):
    path = tmp_path / "f.h5"
    with h5io.atomic_h5(path) as f:
        f["good"] = np.zeros((4, 4, 4), np.float32)
        f["flat"] = np.zeros((4, 4), np.float32)
        f["bad"] = np.full((4, 4, 4), np.nan, np.float32)
        h5io.write_attrs(f, box_size=10.0, cosmology={"h": 0.7})
    field = h5io.read_field(f"{path}:good")
    assert field.box_size == 10.0 and field.data.shape == (4, 4, 4)
    assert "cosmo-sr-emulator" in field.attrs["created_by"]
    for spec, words in [(f"{path}:flat", "cubic"), (f"{path}:bad", "NaN"), (f"{path}:none", "no dataset")]:
        with pytest.raises(InputError, match=words):
            h5io.read_field(spec)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5"):
        h5io.read_field(f"{tmp_path / 'text.h5'}:good")


def test_field_spec_parse():
    assert h5io.FieldSpec.parse("a/b.h5:hr") == h5io.FieldSpec("a/b.h5", "hr")
    assert h5io.FieldSpec.parse("a/b.h5", "sr") == h5io.FieldSpec("a/b.h5", "sr")


def test_irfftn_leaves_its_input_untouched():
    spectrum = fft.rfftn(np.random.default_rng(1).standard_normal((8, 8, 8)))
    before = spectrum.copy()
    fft.irfftn(spectrum, (8, 8, 8))
    np.testing.assert_array_equal(spectrum, before)


def test_cli_records_its_command_line_as_provenance(tmp_path):
    from emulator.cli import main

    out = tmp_path / "job.sbatch"
    job = ["--truth", "pair.h5:hr", "--pred", "sr.h5", "--out", "report"]
    assert main(["jobs", "render", "validate", "--out", str(out), "--", *job]) == 0
    assert "emulator jobs render validate" in h5io.provenance()
