"""sims.pairfile: the paired-box file format shared by simulate and ingest."""
import h5py
import numpy as np
import pytest

from sims.cosmology import PLANCK18
from sims.errors import InputError
from sims.pairfile import read_pair, write_pair


def test_round_trip_with_different_grids(tmp_path):
    rng = np.random.default_rng(1)
    lr, hr = rng.standard_normal((4, 4, 4)), rng.standard_normal((8, 8, 8))
    path = tmp_path / "box.h5"
    write_pair(path, lr, hr, box_size=50.0, redshift=0.5, cosmology=PLANCK18, seed=7,
               lr_particles=4, hr_particles=8)
    lr2, hr2, attrs = read_pair(path)
    assert lr2.dtype == np.float32 and hr2.shape == (8, 8, 8)
    np.testing.assert_array_equal(lr2, lr.astype(np.float32))
    np.testing.assert_array_equal(hr2, hr.astype(np.float32))
    assert attrs["box_size"] == 50.0 and attrs["redshift"] == 0.5 and attrs["seed"] == 7
    assert (attrs["lr_particles"], attrs["hr_particles"]) == (4, 8)
    assert attrs["cosmology"] == PLANCK18.to_dict()
    assert "cosmo-sr-emulator" in attrs["created_by"]


@pytest.mark.parametrize("lr, hr, words", [
    (np.zeros((4, 4, 2)), np.zeros((8, 8, 8)), "lr: field must be cubic"),
    (np.zeros((4, 4, 4)), np.full((8, 8, 8), np.inf), "hr: contains NaN"),
])
def test_write_rejects_bad_fields_and_leaves_nothing(tmp_path, lr, hr, words):
    with pytest.raises(ValueError, match=words):
        write_pair(tmp_path / "box.h5", lr, hr, box_size=1.0, redshift=0.0, cosmology={})
    assert list(tmp_path.iterdir()) == []


def test_particle_counts_are_stored_only_when_given(tmp_path):
    """Fields not painted from particles (e.g. synthetic ones) carry no particle counts."""
    field = np.zeros((4, 4, 4))
    write_pair(tmp_path / "box.h5", field, field, box_size=1.0, redshift=0.0, cosmology={})
    attrs = read_pair(tmp_path / "box.h5")[2]
    assert "lr_particles" not in attrs and "hr_particles" not in attrs


def test_read_rejects_missing_dataset_and_box_size(tmp_path):
    path = tmp_path / "half.h5"
    with h5py.File(path, "w") as f:
        f["lr"] = np.zeros((4, 4, 4), np.float32)
        f.attrs["box_size"] = 1.0
    with pytest.raises(InputError, match="no dataset 'hr'"):
        read_pair(path)
    with h5py.File(path, "a") as f:
        f["hr"] = np.zeros((4, 4, 4), np.float32)
        del f.attrs["box_size"]
    with pytest.raises(InputError, match="box_size"):
        read_pair(path)
