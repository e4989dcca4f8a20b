"""Halo exchange between ranks (outpaint.mpi); its multi-rank behaviour is exercised by the real
mpiexec runs of tests/test_run.py."""
import subprocess
import sys

import numpy as np

from emulator.geometry import PHASES
from outpaint.mpi import exchange_halos, world, z_selections
from outpaint.plan import Plan
from test_run import CORE, MPIEXEC, N, TILE, lognormal


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


IDLE_BARRIER_SCRIPT = """
import os, resource, sys, time
from outpaint.mpi import idle_barrier, world
comm, flag = world(), sys.argv[1]
cpu = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
comm.Barrier()
start = cpu()
if comm.Get_rank() == 0:
    time.sleep(2.0)
    open(flag, "w").close()
idle_barrier(comm)
if comm.Get_rank() == 1:
    print(f"{os.path.exists(flag)} {cpu() - start:.3f}")
"""


def test_idle_barrier_waits_for_every_rank_asleep(tmp_path):
    """Rank 1 may leave only after rank 0 has arrived (rank 0's file exists by then), and waits
    2 s of rank 0's work without computing: a busy-polling barrier (MPICH's Barrier) would
    spend those 2 s on a core, CPU time a sleeping one cannot accumulate however loaded the
    machine."""
    script = tmp_path / "idle.py"
    script.write_text(IDLE_BARRIER_SCRIPT)
    out = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(script), str(tmp_path / "flag")],
                         capture_output=True, text=True, check=True, timeout=300).stdout.split()
    assert out[0] == "True"
    assert float(out[1]) < 0.5
