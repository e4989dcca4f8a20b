"""sims.h5io: atomic writes, field specs, reading and checking fields, provenance attributes."""
import pathlib

import numpy as np
import pytest

from sims import h5io
from sims.errors import InputError


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
    assert field.attrs["created_by"].startswith(f"cosmo-sr-emulator {h5io.package_version()}: ")
    for spec, words in [(f"{path}:flat", "cubic"), (f"{path}:bad", "NaN"), (f"{path}:none", "no dataset")]:
        with pytest.raises(InputError, match=words):
            h5io.read_field(spec)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5"):
        h5io.read_field(f"{tmp_path / 'text.h5'}:good")


def test_field_spec_parse():
    assert h5io.FieldSpec.parse("a/b.h5:hr") == h5io.FieldSpec("a/b.h5", "hr")
    assert h5io.FieldSpec.parse("a/b.h5", "sr") == h5io.FieldSpec("a/b.h5", "sr")


def test_package_version_is_the_one_in_pyproject():
    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'\nversion = "{h5io.package_version()}"\n' in text
