import numpy as np
import pytest

from emulator.masks import PHASES, known_mask, phase_of_block
from outpaint.plan import Plan, exchange_colours, fitting_cores, slab_rows, tile_seed
from sims.errors import InputError

GEOMETRIES = [(16, 16, 8), (32, 16, 8), (24, 8, 4), (48, 12, 8), (32, 10, 4)]  # (n, tile, core)


def footprint(plan, block):
    """Global voxel index arrays (np.ix_) of the tile of ``block``."""
    return np.ix_(*(plan.tile_axis(b) for b in block))


def core_slices(plan, block):
    return tuple(slice(b * plan.core, (b + 1) * plan.core) for b in block)


def all_phase_blocks(plan):
    return [plan.blocks_in_phase(p) for p in range(PHASES)]


@pytest.mark.parametrize("n,tile,core", GEOMETRIES)
def test_every_voxel_in_exactly_one_core(n, tile, core):
    plan = Plan(n, tile, core)
    count = np.zeros((n,) * 3, dtype=np.int64)
    for blocks in all_phase_blocks(plan):
        for b in blocks:
            count[core_slices(plan, b)] += 1
    assert (count == 1).all()


@pytest.mark.parametrize("n,tile,core", GEOMETRIES)
def test_eight_phases_of_equal_size_with_the_colour_of_emulator_masks(n, tile, core):
    plan = Plan(n, tile, core)
    phases = all_phase_blocks(plan)
    assert len(phases) == PHASES == 8
    for p, blocks in enumerate(phases):
        assert len(blocks) == plan.n_tiles // 8 == (n // core) ** 3 // 8
        assert all(phase_of_block(b) == p for b in blocks)
    indices = np.concatenate([plan.tile_index(b) for b in phases])
    np.testing.assert_array_equal(np.sort(indices), np.arange(plan.n_tiles))


@pytest.mark.parametrize("n,tile,core", GEOMETRIES)
def test_tiles_of_a_phase_never_read_a_core_written_in_the_same_phase(n, tile, core):
    plan = Plan(n, tile, core)
    for blocks in all_phase_blocks(plan):
        owner = np.full((n,) * 3, -1, dtype=np.int64)
        for b in blocks:
            assert (owner[core_slices(plan, b)] == -1).all()          # cores never overlap
            owner[core_slices(plan, b)] = plan.tile_index(b)
        for b in blocks:
            seen = np.unique(owner[footprint(plan, b)])
            assert set(seen) <= {-1, plan.tile_index(b)}


@pytest.mark.parametrize("n,tile,core", GEOMETRIES)
def test_mask_of_every_tile_is_what_earlier_phases_produced(n, tile, core):
    """Simulate the schedule on a boolean box: the voxels already written when a tile is generated
    are exactly emulator.masks.known_mask of its phase (the patterns the network is trained on)."""
    plan = Plan(n, tile, core)
    written = np.zeros((n,) * 3, dtype=bool)
    for p, blocks in enumerate(all_phase_blocks(plan)):
        expected = known_mask(tile, core, p)
        for b in blocks:
            np.testing.assert_array_equal(written[footprint(plan, b)], expected)
        for b in blocks:
            written[core_slices(plan, b)] = True
    assert written.all()


def test_slab_rows_partition_the_rows_and_whole_pairs_balance_every_phase():
    for nb in (2, 4, 6, 22, 32):
        for ranks in range(1, 2 * nb + 2):
            rows = [slab_rows(nb, ranks, r) for r in range(ranks)]
            flat = [bx for rr in rows for bx in rr]
            assert flat == list(range(nb))                            # contiguous, each row once
            if ranks <= nb // 2:
                assert all(len(rr) % 2 == 0 and len(rr) > 0 for rr in rows)


@pytest.mark.parametrize("ranks", [1, 2, 3, 4, 5, 8])
def test_tiles_per_rank_sum_to_the_phase_and_are_equal_when_ranks_divide_the_row_pairs(ranks):
    plan = Plan(64, 16, 8, ranks)                                    # 8 blocks, 4 row pairs
    for p in range(PHASES):
        counts = plan.tiles_per_rank(p)
        assert counts.sum() == plan.n_tiles // 8
        owned = [len(plan.blocks_in_phase(p, plan.rows_of(r))) for r in range(ranks)]
        np.testing.assert_array_equal(counts, owned)
    assert plan.describe()["balanced_ranks_max"] == 4
    balance = plan.describe()["load_balance"]
    expected = {1: 1.0, 2: 1.0, 4: 1.0, 8: 0.5}                      # 8 ranks: one row each
    assert balance == expected.get(ranks, balance) and 0 < balance < 1 + 1e-12


@pytest.mark.parametrize("n,tile,core", [(32, 16, 8), (48, 12, 8), (32, 10, 4)])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_slab_plus_exchanged_halos_hold_every_known_voxel(n, tile, core, ranks):
    """Each rank knows its own rows' cores as it writes them, and of its x-halo layers only the
    colours received in the exchanges of exchange_colours. Before every tile, the known mask must
    lie within what the rank holds: the exchange schedule sends everything needed in time."""
    plan = Plan(n, tile, core, ranks)
    exchanges = exchange_colours(tile, core)
    colour = np.zeros((n,) * 3, dtype=np.int64)
    for p, blocks in enumerate(all_phase_blocks(plan)):
        for b in blocks:
            colour[core_slices(plan, b)] = p
    held = np.zeros((ranks, n, n, n), dtype=bool)
    for p in range(PHASES):
        for r in range(ranks):
            for b in plan.blocks_in_phase(p, plan.rows_of(r)):
                assert not (known_mask(tile, core, p) & ~held[r][footprint(plan, b)]).any()
                held[r][core_slices(plan, b)] = True
        for r in range(ranks):
            x0, x1 = plan.local_extent(r)
            for xs in (np.arange(x0, x0 + plan.halo), np.arange(x1 - plan.halo, x1)):
                xs = xs % n
                held[r][xs] |= np.isin(colour[xs], sorted(exchanges[p]))


def test_exchange_happens_once_after_phase_3_with_the_even_rows():
    assert exchange_colours(48, 24) == (frozenset(),) * 3 + (frozenset({0, 1, 2, 3}),) + (frozenset(),) * 4


def test_halo_bytes_are_the_boundary_layers_of_even_rows():
    plan = Plan(64, 16, 8, 2)                                        # rows 0-3 and 4-7, halo 4
    layer = plan.halo * 64 * 64 * 4                                  # one full layer, float32
    bytes_ = plan.halo_bytes(3)
    # rank 0: row 0 (even) sends left, row 3 (odd) sends nothing; rank 1: row 4 sends, row 7 not.
    np.testing.assert_array_equal(bytes_, [layer, layer])
    assert all(plan.halo_bytes(p).sum() == 0 for p in range(8) if p != 3)


def test_tile_seed_depends_on_seed_and_index_only():
    seeds = [tile_seed(7, i) for i in range(1000)]
    assert len(set(seeds)) == 1000
    assert seeds[5] == tile_seed(7, 5) and tile_seed(8, 5) != seeds[5]
    assert all(0 <= s < 2**63 for s in seeds)


def test_row_position_orders_each_row_by_phase_then_raster():
    plan = Plan(48, 16, 8)
    for bx in range(plan.blocks):
        blocks = np.concatenate([plan.blocks_in_phase(p, [bx]) for p in range(PHASES)])
        np.testing.assert_array_equal(plan.row_position(blocks), np.arange(4 * 3 * 3))


def test_reference_scale_counts():
    """528^3 with tile 48, core 24: 22^3 tiles in 8 phases of 11^3."""
    d = Plan(528, 48, 24).describe(steps=20)
    assert d["tiles"] == 22**3 and d["tiles_per_phase"] == 11**3 and d["phases"] == 8
    assert d["network_evaluations"] == 22**3 * 20


@pytest.mark.parametrize("n,tile,core,source,msg", [
    (40, 16, 8, "--core", "multiple of 2\\*core = 16"),
    (32, 16, 16, "--tile", "larger"),
    (32, 15, 8, "--tile", "even"),
    (32, 40, 8, "--tile", "exceed"),
    (0, 16, 8, "--n", "positive"),
])
def test_bad_sizes_are_input_errors(n, tile, core, source, msg):
    with pytest.raises(InputError, match=msg) as err:
        Plan(n, tile, core)
    assert err.value.source == source


def test_fitting_cores_are_listed_and_valid():
    cores = fitting_cores(40, 16)
    assert cores == [10]
    with pytest.raises(InputError, match=r"fit tile 16: \[10\]"):
        Plan(40, 16, 8)
    Plan(40, 16, 10)
