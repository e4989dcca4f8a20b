"""Halo exchange between ranks (outpaint.mpi); its multi-rank behaviour is exercised by the real
mpiexec runs of tests/test_run.py."""

import numpy as np

from emulator.geometry import PHASES
from outpaint.mpi import exchange_halos, world, z_selections
from outpaint.plan import Plan
from test_run import CORE, N, TILE, lognormal


def test_exchange_fills_exactly_the_planned_pieces():
    """One rank: every piece comes from itself (its pencil spans the periodic box), so after the
    exchanges of all phases its halo must hold the wrapped box exactly where a piece lands, in
    the piece's colour, and be untouched elsewhere; no byte goes to another rank."""
    plan = Plan(N, TILE, CORE, 1)
    box, h = lognormal(N, 3), plan.halo
    local = np.full(plan.local_shape(0), np.nan, dtype=np.float32)
    local[h:-h, h:-h] = box
    expected = local.copy()
    assert [exchange_halos(world(), plan, local, p) for p in range(PHASES)] == [0] * PHASES
    (x0, _), (y0, _) = plan.local_extent(0)
    select = z_selections(plan)
    for p in plan.halo_pieces(0):
        (dx, dy), (nx, ny), z = p.dst, p.size, select[p.colour % 2]
        xs, ys = (np.arange(a + o, a + o + m) % N for a, o, m in ((dx, x0, nx), (dy, y0, ny)))
        expected[dx:dx + nx, dy:dy + ny, z] = box[np.ix_(xs, ys, np.flatnonzero(z))]
    np.testing.assert_array_equal(local, expected)
    assert np.isnan(local).any() and not np.isnan(local[h:-h, h:-h]).any()
