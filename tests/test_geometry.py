import h5py
import numpy as np
import pytest

from emulator.geometry import (PHASES, block_offsets, blocks_per_axis, colour_of, fitting_cores, halo_width,
                               known_mask, periodic_crop, phase_colours, tile_origin, wrapped_slices)
from outpaint.plan import Plan
from outpaint.run import crop

TILE, CORE = 16, 8
HALO = (TILE - CORE) // 2


def brute_force_mask(tile, core, block, n_blocks=4):
    """Known region of the tile around ``block`` found by painting a periodic box of blocks with
    their phases and cutting the tile out with wrap-around."""
    halo = (tile - core) // 2
    i = np.arange(n_blocks * core)
    bits = (i // core) % 2
    box_phase = 4 * bits[:, None, None] + 2 * bits[None, :, None] + bits[None, None, :]
    tile_phase = box_phase
    for axis, b in enumerate(block):
        idx = np.arange(b * core - halo, b * core - halo + tile)
        tile_phase = np.take(tile_phase, idx, axis=axis, mode="wrap")
    own = box_phase[tuple(b * core for b in block)]
    return tile_phase < own, own


def test_phase_colours_cover_the_8_colours_in_binary_order():
    colours = phase_colours()
    assert len(colours) == PHASES == 8
    assert len(set(colours)) == 8
    assert colours[0] == (0, 0, 0) and colours[7] == (1, 1, 1) and colours[1] == (0, 0, 1)


def test_colour_of_is_periodic_in_parity_and_inverts_phase_colours():
    assert colour_of(0, 0, 0) == 0
    assert colour_of(3, 2, 5) == 5
    assert colour_of(-1, 0, 0) == 4
    assert [colour_of(*bits) for bits in phase_colours()] == list(range(PHASES))
    np.testing.assert_array_equal(colour_of(np.arange(4)[:, None], 1, np.arange(3)), [[2, 3, 2], [6, 7, 6]] * 2)


def test_phase_0_is_empty():
    assert not known_mask(TILE, CORE, 0).any()


def test_core_never_known():
    core = (slice(HALO, HALO + CORE),) * 3
    for p in range(PHASES):
        assert not known_mask(TILE, CORE, p)[core].any()


def test_last_phase_knows_whole_halo():
    m = known_mask(TILE, CORE, 7)
    assert m.sum() == TILE**3 - CORE**3


@pytest.mark.parametrize("tile,core", [(16, 8), (12, 8), (10, 4)])
def test_matches_brute_force_for_every_block_of_a_periodic_box(tile, core):
    for block in np.ndindex(4, 4, 4):
        expected, phase = brute_force_mask(tile, core, block)
        np.testing.assert_array_equal(known_mask(tile, core, phase), expected)


def test_counts_per_phase_hand_derived():
    h, c = HALO, CORE
    face, edge, corner = h * c * c, h * h * c, h**3
    # phase 1 (0,0,1): the two z faces (colour 000). phase 2 (0,1,0): y faces (000) and the four
    # y-z edges (001). phase 3 (0,1,1): z faces (010), y faces (001), y-z edges (000).
    # phase 4 (1,0,0): x faces + x-y edges + x-z edges + x-y-z corners (colours 000..011).
    expected = {0: 0, 1: 2 * face, 2: 2 * face + 4 * edge, 3: 4 * face + 4 * edge,
                4: 2 * face + 8 * edge + 8 * corner, 7: 6 * face + 12 * edge + 8 * corner}
    for p, count in expected.items():
        assert known_mask(TILE, CORE, p).sum() == count


def test_known_count_grows_with_phase():
    counts = [known_mask(TILE, CORE, p).sum() for p in range(PHASES)]
    assert all(a < b for a, b in zip(counts, counts[1:]))


@pytest.mark.parametrize("tile,core,msg", [(8, 8, "larger"), (15, 8, "even"), (32, 8, "exceed"),
                                           (4, 0, "at least")])
def test_invalid_sizes(tile, core, msg):
    with pytest.raises(ValueError, match=msg):
        known_mask(tile, core, 1)


def test_invalid_phase():
    with pytest.raises(ValueError, match="phase"):
        known_mask(TILE, CORE, 8)


def test_block_offsets():
    np.testing.assert_array_equal(block_offsets(8, 4), [-1, -1, 0, 0, 0, 0, 1, 1])


def test_no_torch_import():
    import subprocess
    import sys
    code = "import sys, emulator.geometry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_blocks_per_axis_needs_an_even_block_grid():
    assert blocks_per_axis(48, 8) == 6
    with pytest.raises(ValueError, match="multiple of 2\\*core = 16"):
        blocks_per_axis(40, 8)


def test_fitting_cores_are_exactly_the_valid_ones():
    """Against the definition: n a multiple of 2 core, tile - core even, 0 < halo <= core."""
    assert fitting_cores(40, 16) == [10]
    for n, tile in [(40, 16), (48, 16), (528, 48), (64, 20)]:
        expected = [c for c in range(1, tile) if n % (2 * c) == 0 and (tile - c) % 2 == 0 and 0 < (tile - c) // 2 <= c]
        assert fitting_cores(n, tile) == expected and all(halo_width(tile, c) for c in expected)


def test_tile_origin_is_the_block_start_minus_the_halo():
    np.testing.assert_array_equal(tile_origin((0, 1, 5), 16, 8), [-4, 4, 36])


@pytest.mark.parametrize("n,tile,core", [(16, 16, 8), (24, 8, 4), (32, 10, 4), (48, 12, 8)])
def test_planner_phases_and_training_masks_follow_one_colour_rule(n, tile, core):
    """Paint the box with the colour of each voxel's block; every block the planner schedules in
    phase p has colour p, and its tile (cut at tile_origin) holds a smaller colour exactly where
    known_mask(p) is set, the pattern emulator.data trains the network on for phase p."""
    plan = Plan(n, tile, core)
    b = np.arange(n) // core
    colours = colour_of(b[:, None, None], b[None, :, None], b[None, None, :])
    for p in range(PHASES):
        blocks = plan.blocks_in_phase(p)
        assert len(blocks) and (colour_of(*blocks.T) == p).all()
        for block in blocks:
            painted = periodic_crop(colours, tile_origin(block, tile, core), tile)
            np.testing.assert_array_equal(painted < p, known_mask(tile, core, p))


def np_take_crop(field, origin, shape):
    """Reference periodic crop of the last three axes: np.take with mode="wrap" axis by axis."""
    for axis, (o, s) in enumerate(zip(origin, np.broadcast_to(shape, 3))):
        field = np.take(field, np.arange(o, o + s), axis=field.ndim - 3 + axis, mode="wrap")
    return field


def test_periodic_crop_wraps_like_np_take():
    rng = np.random.default_rng(1)
    field = rng.normal(size=(2, 6, 7, 8))
    for _ in range(50):
        origin = rng.integers(-20, 20, size=3)
        shape = rng.integers(1, 19, size=3)                 # also larger than the field: wraps twice
        out = periodic_crop(field, origin, shape)
        np.testing.assert_array_equal(out, np_take_crop(field, origin, shape))
        assert not np.shares_memory(out, field)
    np.testing.assert_array_equal(periodic_crop(field[0], (4, 5, 7), 5), np_take_crop(field[0], (4, 5, 7), 5))


def test_periodic_crop_reads_an_h5py_dataset_like_an_array(tmp_path):
    field = np.random.default_rng(2).normal(size=(8, 8, 8)).astype(np.float32)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = field
        np.testing.assert_array_equal(periodic_crop(f["x"], (-3, 6, 0), (7, 5, 8)),
                                      np_take_crop(field, (-3, 6, 0), (7, 5, 8)))


def test_wrapped_slices_cover_the_range_in_order():
    assert wrapped_slices(-3, 9, 8) == [slice(5, 8), slice(0, 8), slice(0, 1)]
    assert wrapped_slices(2, 6, 8) == [slice(2, 6)]


@pytest.mark.parametrize("n,tile,core,ranks", [(32, 16, 8, 1), (32, 16, 8, 4), (48, 16, 8, 3), (32, 10, 4, 6)])
def test_outpainting_tiles_are_np_take_with_wrap_of_the_box(n, tile, core, ranks):
    """The crops outpainting uses, a rank's pencil (Plan.read_local) then a tile from it
    (outpaint.run.crop), give the tile of the periodic box that np.take with wrap gives."""
    box = np.random.default_rng(3).normal(size=(n,) * 3).astype(np.float32)
    plan = Plan(n, tile, core, ranks)
    for rank in range(ranks):
        local = plan.read_local(box, rank)
        assert local.shape == plan.local_shape(rank) and local.dtype == np.float32
        origin = tuple(start for start, _ in plan.local_extent(rank))
        for p in range(PHASES):
            for block in plan.blocks_in_phase(p, rank):
                np.testing.assert_array_equal(crop(plan, local, origin, block),
                                              np_take_crop(box, tile_origin(block, tile, core), tile))
