import h5py
import numpy as np
import pytest
import torch

from emulator.data import (SYMMETRIES, CropDataset, StepBatches, apply_symmetry, find_pair_files,
                           load_pairs, split_pairs, read_pair_box)
from emulator.geometry import PHASES, known_mask, periodic_crop
from sims.errors import InputError
from sims.pairfile import read_pair, write_pair


def coordinate_field(n):
    """Field whose value encodes its own (x, y, z) index."""
    return np.arange(n**3, dtype=np.float32).reshape(n, n, n)


def symmetry_matrix(perm, flips):
    """The signed permutation matrix of a symmetry, built from its definition."""
    m = np.zeros((3, 3), dtype=int)
    for j, p in enumerate(perm):
        m[j, p] = -1 if flips[j] else 1
    return m


def test_symmetry_group_has_48_distinct_elements():
    assert len(SYMMETRIES) == 48
    field = coordinate_field(4)
    images = {apply_symmetry(field, s).tobytes() for s in range(48)}
    assert len(images) == 48
    matrices = {symmetry_matrix(*s).tobytes() for s in SYMMETRIES}
    assert len(matrices) == 48


def test_symmetry_matches_signed_permutation_of_indices():
    n = 5
    field = coordinate_field(n)
    out_index = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), axis=-1)   # (n,n,n,3)
    for s, (perm, flips) in enumerate(SYMMETRIES):
        out = apply_symmetry(field, s)
        # output voxel o comes from input voxel q with q[perm[j]] = o[j] or n-1-o[j] if flipped
        src = np.empty_like(out_index)
        for j in range(3):
            src[..., perm[j]] = (n - 1 - out_index[..., j]) if flips[j] else out_index[..., j]
        np.testing.assert_array_equal(out, field[src[..., 0], src[..., 1], src[..., 2]])


def test_symmetry_does_not_alias_input_and_acts_on_last_axes():
    field = np.random.default_rng(0).normal(size=(2, 4, 4, 4))
    out = apply_symmetry(field, 47)
    out[...] = 0
    assert field.any()
    np.testing.assert_array_equal(apply_symmetry(field, 13)[1], apply_symmetry(field[1], 13))


def make_boxes(n=12, count=2):
    rng = np.random.default_rng(2)
    hrs = [rng.normal(size=(n, n, n)).astype(np.float32) for _ in range(count)]
    return [(2 * hr + 1, hr) for hr in hrs]


def test_same_transform_on_lr_and_hr_and_all_symmetries_drawn():
    ds = CropDataset(make_boxes(), tile=8, core=4, p_mask=0.5, seed=3)
    for i in range(20):
        ex = ds[(0, i)]
        torch.testing.assert_close(ex["lr"], 2 * ex["hr"] + 1)
    assert {ds.draw(0, i)[2] for i in range(1000)} == set(range(48))


def test_example_is_crop_then_symmetry_of_drawn_box():
    boxes = [(coordinate_field(10) + 0.5, coordinate_field(10))]
    ds = CropDataset(boxes, tile=6, core=2, p_mask=0.0, seed=4)
    for i in range(10):
        _, origin, sym, phase = ds.draw(5, i)
        expected = apply_symmetry(periodic_crop(boxes[0][1], origin, 6), sym)
        np.testing.assert_array_equal(ds[(5, i)]["hr"][0].numpy(), expected)
        assert phase == 0


def test_masks_and_known_values():
    ds = CropDataset(make_boxes(), tile=8, core=4, p_mask=0.7, seed=5)
    patterns = [known_mask(8, 4, p) for p in range(PHASES)]
    phases = []
    for i in range(300):
        ex = ds[(1, i)]
        phase = ds.draw(1, i)[3]
        phases.append(phase)
        np.testing.assert_array_equal(ex["mask"][0].numpy(), patterns[phase])
        torch.testing.assert_close(ex["known"], ex["hr"] * ex["mask"])
    phases = np.array(phases)
    # fraction masked ~ Binomial(300, 0.7): sd 0.026
    assert abs(np.mean(phases > 0) - 0.7) < 0.1
    assert set(phases[phases > 0]) == set(range(1, PHASES))


def test_determinism_independent_of_workers_and_ranks():
    ds = CropDataset(make_boxes(), tile=8, core=4, p_mask=0.8, seed=6)
    serial = [b for b in torch.utils.data.DataLoader(ds, batch_sampler=StepBatches(0, 3, 4))]
    again = [b for b in torch.utils.data.DataLoader(ds, batch_sampler=StepBatches(0, 3, 4))]
    workers = list(torch.utils.data.DataLoader(ds, batch_sampler=StepBatches(0, 3, 4), num_workers=2))
    for a, b, c in zip(serial, again, workers):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
            torch.testing.assert_close(a[k], c[k], rtol=0, atol=0)
    # two ranks with batch 2 each see the same global batch as one rank with batch 4
    ranks = [list(torch.utils.data.DataLoader(ds, batch_sampler=StepBatches(0, 3, 2, rank=r)))
             for r in range(2)]
    for step in range(3):
        joined = torch.cat([ranks[0][step]["hr"], ranks[1][step]["hr"]])
        torch.testing.assert_close(joined, serial[step]["hr"], rtol=0, atol=0)
    other_seed = CropDataset(make_boxes(), tile=8, core=4, p_mask=0.8, seed=7)
    assert not torch.equal(other_seed[(0, 0)]["hr"], serial[0]["hr"][0])


def lognormal(rng, n, s):
    return (np.exp(rng.normal(size=(n,) * 3) * s - s**2 / 2) - 1).astype(np.float32)


def write_test_pair(path, n_hr=16, n_lr=16, box_size=50.0, seed=0):
    rng = np.random.default_rng(seed)
    write_pair(path, lognormal(rng, n_lr, 0.3), lognormal(rng, n_hr, 0.5), box_size=box_size,
               redshift=0.0, cosmology={})


def test_load_pairs_reads_and_checks(tmp_path):
    write_test_pair(tmp_path / "a.h5", seed=1)
    write_test_pair(tmp_path / "b.hdf5", n_lr=8, seed=2)
    paths = find_pair_files(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["a.h5", "b.hdf5"]
    boxes = load_pairs(paths, tile=8)
    assert boxes[0].hr.shape == (16, 16, 16) and boxes[0].n_lr == 16
    assert boxes[0].spacing == pytest.approx(50.0 / 16)
    train, val = split_pairs(boxes, 1)
    assert len(train) == 1 and val[0].source == paths[1]
    assert split_pairs(boxes[:1], 1) == (boxes[:1], boxes[:1])
    # LR on a coarser grid is resampled onto the HR grid: shared modes kept, values >= -1
    assert boxes[1].lr.shape == (16, 16, 16) and boxes[1].n_lr == 8
    assert boxes[1].lr.min() >= -1
    # band-limited interpolation passes through the coarse nodes x_i = i L / n_lr
    np.testing.assert_allclose(boxes[1].lr[::2, ::2, ::2], read_pair(paths[1])[0], atol=1e-4)


def test_lr_resolution_is_its_particle_count_where_recorded(tmp_path):
    """A 4^3-particle LR painted on the 16^3 HR grid resolves only 4 per side (Nyquist pi 4 / L)."""
    rng = np.random.default_rng(3)
    write_pair(tmp_path / "p.h5", lognormal(rng, 16, 0.3), lognormal(rng, 16, 0.5), box_size=50.0,
               redshift=0.0, cosmology={}, lr_particles=4, hr_particles=16)
    box = read_pair_box(str(tmp_path / "p.h5"))
    assert box.lr.shape == (16, 16, 16) and box.n_lr == 4


def test_load_pairs_errors(tmp_path):
    with pytest.raises(InputError, match="no paired box files"):
        find_pair_files(str(tmp_path))
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("low", data=np.zeros((8, 8, 8), np.float32))
        f.create_dataset("hr", data=np.zeros((8, 8, 8), np.float32))
        f.attrs["box_size"] = 50.0
    with pytest.raises(InputError, match="bad.h5.*no dataset 'lr'"):
        load_pairs(find_pair_files(str(tmp_path)), tile=8)
    (tmp_path / "bad.h5").unlink()
    write_test_pair(tmp_path / "a.h5", box_size=50.0)
    write_test_pair(tmp_path / "b.h5", box_size=60.0)
    with pytest.raises(InputError, match="b.h5.*spacing"):
        load_pairs(find_pair_files(str(tmp_path)), tile=8)
    with pytest.raises(InputError, match="smaller than the tile"):
        load_pairs([str(tmp_path / "a.h5")], tile=32)
