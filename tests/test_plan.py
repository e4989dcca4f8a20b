import numpy as np
import pytest

from emulator.geometry import PHASES, colour_of, known_mask, periodic_crop, tile_origin
from outpaint.plan import Plan, bisect_units, tile_seed
from sims.errors import InputError

GEOMETRIES = [(16, 16, 8), (32, 16, 8), (24, 8, 4), (48, 12, 8), (32, 10, 4)]  # (n, tile, core)


def tile_of(plan, box, block):
    """The tile of ``block`` cut from the periodic ``box`` (n, n, n)."""
    return periodic_crop(box, tile_origin(block, plan.tile, plan.core), plan.tile)


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
def test_eight_phases_of_equal_size_with_the_colour_of_emulator_geometry(n, tile, core):
    plan = Plan(n, tile, core)
    phases = all_phase_blocks(plan)
    assert len(phases) == PHASES == 8
    for p, blocks in enumerate(phases):
        assert len(blocks) == plan.n_tiles // 8 == (n // core) ** 3 // 8
        assert (colour_of(*blocks.T) == p).all()
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
            seen = np.unique(tile_of(plan, owner, b))
            assert set(seen) <= {-1, plan.tile_index(b)}


@pytest.mark.parametrize("n,tile,core", GEOMETRIES)
def test_mask_of_every_tile_is_what_earlier_phases_produced(n, tile, core):
    """Simulate the schedule on a boolean box: the voxels already written when a tile is generated
    are exactly emulator.geometry.known_mask of its phase (the patterns the network is trained on)."""
    plan = Plan(n, tile, core)
    written = np.zeros((n,) * 3, dtype=bool)
    for p, blocks in enumerate(all_phase_blocks(plan)):
        expected = known_mask(tile, core, p)
        for b in blocks:
            np.testing.assert_array_equal(tile_of(plan, written, b), expected)
        for b in blocks:
            written[core_slices(plan, b)] = True
    assert written.all()


RANK_CASES = [(48, 16, 8, r) for r in (1, 2, 3, 4, 5, 7, 8, 9)] + \
    [(32, 10, 4, r) for r in (2, 3, 6, 11, 16)] + [(24, 8, 4, 1)]             # (n, tile, core, ranks)


@pytest.mark.parametrize("units,ranks", [(u, r) for u in [(1, 1), (3, 3), (2, 5), (4, 4), (7, 6)]
                                         for r in range(1, u[0] * u[1] + 1)])
def test_bisection_covers_every_unit_once_with_no_empty_rank(units, ranks):
    rects = bisect_units(((0, units[0]), (0, units[1])), ranks)
    count = np.zeros(units, dtype=np.int64)
    for (x0, x1), (y0, y1) in rects:
        assert x1 > x0 and y1 > y0
        count[x0:x1, y0:y1] += 1
    assert len(rects) == ranks and (count == 1).all() and rects[0][0][0] == rects[0][1][0] == 0


@pytest.mark.parametrize("n,tile,core,ranks", RANK_CASES)
def test_ranks_own_whole_rows_and_every_tile_once(n, tile, core, ranks):
    plan = Plan(n, tile, core, ranks)
    rows = sorted(u for r in range(ranks) for u in plan.rows_of(r))
    assert rows == list(range(plan.blocks**2))
    for p in range(PHASES):
        owned = [plan.blocks_in_phase(p, r) for r in range(ranks)]
        assert all(len(b) for b in owned)                                 # no rank idles in a phase
        indices = np.concatenate([plan.tile_index(b) for b in owned])
        np.testing.assert_array_equal(np.sort(indices), np.sort(plan.tile_index(plan.blocks_in_phase(p))))
        np.testing.assert_array_equal(plan.tiles_per_rank(p), [len(b) for b in owned])
        for r, b in enumerate(owned):
            assert (plan.owners[b[:, 0], b[:, 1]] == r).all()


@pytest.mark.parametrize("n,ranks,balance", [(64, 1, 1.0), (64, 2, 1.0), (64, 4, 1.0), (64, 8, 1.0),
                                             (64, 16, 1.0), (64, 3, 16 / 18), (48, 2, 0.75),
                                             (48, 3, 1.0), (48, 8, 9 / 16)])
def test_load_balance(n, ranks, balance):
    """Units of 2 x 2 rows: (n / 16)^2 of them for core 8; balance = mean / max units per rank."""
    assert Plan(n, 16, 8, ranks).describe()["load_balance"] == pytest.approx(balance)


def local_global(plan, rank):
    """Global (x, y) voxel indices of the local arrays' first two axes of ``rank``."""
    return tuple(np.arange(a, b) % plan.n for a, b in plan.local_extent(rank))


@pytest.mark.parametrize("n,tile,core,ranks", RANK_CASES)
def test_pieces_copy_owned_final_voxels_into_the_halo(n, tile, core, ranks):
    """Every piece reads the same global voxels as it fills, from the sender's own rows, of its
    colour only, into the receiver's halo; it is sent no earlier than its colour is written."""
    plan = Plan(n, tile, core, ranks)
    for dest in range(ranks):
        gx, gy = local_global(plan, dest)
        (X0, X1), (Y0, Y1) = plan.local_extent(dest)
        for p in plan.halo_pieces(dest):
            sx, sy = local_global(plan, p.source)
            (dx, dy), (sx0, sy0), (nx, ny) = p.dst, p.src, p.size
            np.testing.assert_array_equal(gx[dx:dx + nx], sx[sx0:sx0 + nx])
            np.testing.assert_array_equal(gy[dy:dy + ny], sy[sy0:sy0 + ny])
            assert (plan.owners[np.ix_(sx[sx0:sx0 + nx] // core, sy[sy0:sy0 + ny] // core)] == p.source).all()
            colours = np.unique(colour_of(sx[sx0:sx0 + nx, None] // core, sy[None, sy0:sy0 + ny] // core, 0))
            assert colours.tolist() == [p.colour & 6] and p.round >= p.colour
            inner_x = plan.halo <= dx and dx + nx <= X1 - X0 - plan.halo
            inner_y = plan.halo <= dy and dy + ny <= Y1 - Y0 - plan.halo
            assert not (inner_x and inner_y)                              # lands in the halo


@pytest.mark.parametrize("n,tile,core,ranks", RANK_CASES)
def test_own_rows_plus_received_pieces_hold_every_known_voxel(n, tile, core, ranks):
    """Simulate the run in each rank's local coordinates: a rank holds its cores once written and
    the halo pieces once received (sent after their round, from voxels the sender holds). Before
    every tile, its known mask must lie within what its rank holds."""
    plan = Plan(n, tile, core, ranks)
    held = [np.zeros(plan.local_shape(r), dtype=bool) for r in range(ranks)]
    origin = [tuple(a for a, _ in plan.local_extent(r)) for r in range(ranks)]
    zsel = [(np.arange(n) // core) % 2 == k for k in (0, 1)]
    for p in range(PHASES):
        mask = known_mask(tile, core, p)
        for r in range(ranks):
            for b in plan.blocks_in_phase(p, r):
                region = periodic_crop(held[r], tile_origin(b, tile, core) - (*origin[r], 0), tile)
                assert not (mask & ~region).any(), (p, r, b)
                core_of = (slice(b[a] * core - o, (b[a] + 1) * core - o) for a, o in enumerate((*origin[r], 0)))
                held[r][tuple(core_of)] = True
        for r in range(ranks):
            sends, receives = plan.messages(r, p)
            for dest, pieces in sends.items():
                assert pieces == receives.get(r) if dest == r else pieces == plan.messages(dest, p)[1][r]
                for piece in pieces:
                    (sx, sy), (dx, dy), (nx, ny) = piece.src, piece.dst, piece.size
                    z = zsel[piece.colour % 2]
                    assert held[r][sx:sx + nx, sy:sy + ny, z].all()       # final when sent
                    held[dest][dx:dx + nx, dy:dy + ny, z] = True
    assert all(h[plan.halo:-plan.halo, plan.halo:-plan.halo].all() for h in held)


def test_regular_grid_messages_and_bytes():
    """16 ranks on 8 x 8 units of a 128^3 box (core 8, halo 4): 2 x 2 units (4 x 4 rows) each.
    Data crosses a boundary only towards the rows that read it. After phase 1: the strip of its
    2 even-x rows on one y-face (colours 0, 1) to one y-neighbour; after phase 3: colours 2, 3 of
    the other y-face strip (read diagonally), the x-face strip of 4 rows (colours 0-3) and one
    corner (colours 2, 3), three messages; after phase 5: colours 4, 5 of the first y-face strip
    and a corner of colours 0, 1, two messages."""
    plan = Plan(128, 16, 8, 16)
    strip = plan.halo * plan.core * 64 * 4           # halo x core voxels x n / 2 (one z parity) x 4 B
    corner = plan.halo**2 * 128 * 4                  # halo x halo x n (both z parities) x 4 B
    for p in range(PHASES):                           # every rank alike
        assert len(set(plan.message_counts(p))) == 1 and len(set(plan.halo_bytes(p))) == 1
    assert [int(plan.message_counts(p)[0]) for p in range(PHASES)] == [0, 1, 0, 3, 0, 2, 0, 0]
    sent = [int(plan.halo_bytes(p)[0]) for p in range(PHASES)]
    assert sent == [0, 2 * 2 * strip, 0, 2 * 2 * strip + 4 * 2 * strip + corner, 0,
                    2 * 2 * strip + corner, 0, 0]
    d = plan.describe()
    assert d["halo_bytes_total"] == 16 * sum(sent) and d["messages"] == [0, 16, 0, 48, 0, 32, 0, 0]


def test_too_many_ranks_is_one_input_error_naming_the_largest_useful_count():
    with pytest.raises(InputError, match="at most 9 ranks") as err:
        Plan(48, 16, 8, 10)
    assert err.value.source == "mpiexec -n"
    Plan(48, 16, 8, 9)


def test_target_scales_are_balanced_with_bounded_memory():
    """2048^3 at core 16 on 8..1024 ranks and 4096^3 on 4096 ranks: load balance 1 and local
    arrays of the rank's share of the box plus halos, never the whole box."""
    for n, ranks in [(2048, r) for r in (8, 64, 1024)] + [(4096, 4096)]:
        plan = Plan(n, 48, 16, ranks)
        d = plan.describe()
        assert d["load_balance"] == 1.0
        (x0, x1), (y0, y1) = plan.rects[0]
        assert all((b[1] - b[0]) * (c[1] - c[0]) == (x1 - x0) * (y1 - y0) for b, c in plan.rects)
        sides = [(x1 - x0) * 16 + 2 * plan.halo, (y1 - y0) * 16 + 2 * plan.halo]
        assert d["memory_per_rank_bytes"] == 2 * 4 * n * sides[0] * sides[1]
        assert d["memory_per_rank_bytes"] <= 2.25 * (2 * 4 * n**3 / ranks)   # LR + field share, halos
        assert max(d["messages_max_rank"]) == 3


def test_tile_seed_depends_on_seed_and_index_only():
    seeds = [tile_seed(7, i) for i in range(1000)]
    assert len(set(seeds)) == 1000
    assert seeds[5] == tile_seed(7, 5) and tile_seed(8, 5) != seeds[5]
    assert all(0 <= s < 2**63 for s in seeds)


def test_row_position_orders_each_row_by_phase_then_z():
    plan = Plan(48, 16, 8)
    for u in range(plan.blocks**2):
        blocks = plan.row_blocks(u)
        np.testing.assert_array_equal(plan.row_position(blocks), np.arange(plan.blocks))
        assert (plan.row_index(blocks) == u).all()
        np.testing.assert_array_equal(colour_of(*blocks.T), np.repeat(colour_of(*blocks[0]) + np.arange(2), 3))


def test_reference_scale_counts():
    """528^3 with tile 48, core 24: 22^3 tiles in 8 phases of 11^3."""
    d = Plan(528, 48, 24).describe(steps=20)
    assert d["tiles"] == 22**3 and d["tiles_per_phase"] == 11**3 and d["phases"] == 8
    assert d["network_evaluations"] == 22**3 * 20


@pytest.mark.parametrize("n,tile,core,source,msg", [
    (40, 16, 8, "core", "multiple of 2\\*core = 16"),
    (32, 16, 16, "tile", "larger"),
    (32, 15, 8, "tile", "even"),
    (32, 40, 8, "tile", "exceed"),
    (0, 16, 8, "n", "must be an integer >= 1"),
])
def test_bad_sizes_are_input_errors(n, tile, core, source, msg):
    with pytest.raises(InputError, match=msg) as err:
        Plan(n, tile, core)
    assert err.value.source == source


def test_a_box_that_does_not_fit_lists_the_cores_that_fit():
    with pytest.raises(InputError, match=r"fit tile 16: \[10\]"):
        Plan(40, 16, 8)
    Plan(40, 16, 10)
