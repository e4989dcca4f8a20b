import numpy as np
import pytest

from emulator.masks import PHASES, block_offsets, known_mask, phase_colours, phase_of_block

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


def test_phase_of_block_is_periodic_in_parity():
    assert phase_of_block((0, 0, 0)) == 0
    assert phase_of_block((3, 2, 5)) == 5
    assert phase_of_block((-1, 0, 0)) == 4


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
    code = "import sys, emulator.masks; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
