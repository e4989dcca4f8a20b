"""Pencil decomposition and halo exchange of the outpainting plan with mpi4py.

Each rank holds local arrays of its rectangle of rows plus ``halo`` voxels on each side in x and
y, whole z (:meth:`outpaint.plan.Plan.local_extent`): memory per rank is its pencil plus halos,
never the whole box. After a phase, :func:`exchange_halos` sends each neighbour the halo voxels
due then (:meth:`outpaint.plan.Plan.messages`: only the colours it reads, each once, one
message per neighbour) with nonblocking point-to-point calls. mpi4py is imported inside the
functions, so importing this module neither initialises MPI nor requires it.
"""
import contextlib
import sys
import time
import traceback

import numpy as np
import torch
from mpi4py import MPI

from emulator.geometry import colour_of
from outpaint.plan import BYTES_PER_VOXEL
from sims.errors import InputError, one_line
from sims.outputs import acquire, release

TAG_HALO = 11
IDLE_POLL_S = 0.005
"""Seconds between the checks of a rank waiting in :func:`idle_barrier`."""


def world():
    """``MPI.COMM_WORLD`` (a one-rank world when not started by mpiexec)."""
    return MPI.COMM_WORLD


def idle_barrier(comm):
    """A barrier that waits asleep: for ranks waiting on serial work of another (rank 0 simulating,
    validating or writing), which would otherwise share its cores with an MPI library busy-polling
    in ``Barrier`` (MPICH spins a whole core). Returns within IDLE_POLL_S of the last arrival."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(IDLE_POLL_S)


@contextlib.contextmanager
def abort_on_error(comm):
    """Turn an exception on one rank into ``MPI_Abort`` of every rank when there are several, so
    that no rank waits forever in a collective for one that has died (what ``python -m mpi4py``
    does for a whole script). The rank first prints the error: one line ``error: ...`` when it
    is not a bug (sims.errors.one_line: a full disk, Ctrl-C, ...), else its traceback. With one
    rank the exception propagates unchanged. Use it only around code after the input checks,
    which raise the same InputError on every rank."""
    try:
        yield
    except BaseException as err:
        if comm.Get_size() > 1:
            status_message = one_line(err)
            if status_message is None:
                traceback.print_exc()
            else:
                print(f"error: {status_message[1]}", file=sys.stderr)
            sys.stderr.flush()
            comm.Abort(1 if status_message is None else status_message[0])
        raise


@contextlib.contextmanager
def run_lock(comm, out_path):
    """Hold the lock of output ``out_path`` (sims.outputs) on every rank for the block: rank 0
    takes it exclusively, which fails while any process of another run holds it, then shares it
    with the other ranks, so that it stays held while any rank of this run lives (mpiexec may
    return before an aborted rank has died; the last holder removes the lock file,
    sims.outputs.release). InputError on every rank when it is held."""
    rank, fd, refused = comm.Get_rank(), None, None
    if rank == 0:
        try:
            fd = acquire(out_path, then_shared=True)
        except InputError as err:
            refused = (err.source, err.problem)
    refused = comm.bcast(refused, root=0)
    if refused is not None:
        raise InputError(*refused)
    if rank != 0:
        fd = acquire(out_path, shared=True)          # shared with rank 0: never refused
    comm.Barrier()                                   # every rank holds it before any releases it
    try:
        yield
    except BaseException:
        release(out_path, fd)
        raise
    if rank != 0:                                    # rank 0 last, so that it removes the file
        release(out_path, fd)
    comm.Barrier()
    if rank == 0:
        release(out_path, fd)


def local_rank(comm):
    """Rank of this process among the ranks of its node (shared-memory split of ``comm``)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def device_for_rank(comm):
    """torch device of this rank: CUDA GPU ``local_rank % device_count`` when CUDA is available
    (one rank per GPU), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank(comm) % torch.cuda.device_count())
    return torch.device("cpu")


def z_selections(plan):
    """bool (n,) per z bit of the colour (emulator.geometry.colour_of): the voxels of the blocks
    with that parity of bz."""
    z_bit = colour_of(0, 0, np.arange(plan.n) // plan.core)
    return z_bit == 0, z_bit == 1


def pack(field, pieces, select, side):
    """The voxels of ``pieces`` at their ``side`` ("src" or "dst") in ``field``, one flat float32
    array in piece order."""
    parts = []
    for p in pieces:
        (x, y), (nx, ny) = getattr(p, side), p.size
        parts.append(field[x:x + nx, y:y + ny, select[p.colour % 2]].ravel())
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def unpack(field, pieces, select, buffer):
    """Write ``buffer`` (as :func:`pack` made it) into the ``dst`` of ``pieces`` in ``field``."""
    offset = 0
    for p in pieces:
        (x, y), (nx, ny) = p.dst, p.size
        z = select[p.colour % 2]
        count = nx * ny * int(z.sum())
        field[x:x + nx, y:y + ny, z] = buffer[offset:offset + count].reshape(nx, ny, -1)
        offset += count


def exchange_halos(comm, plan, field, phase):
    """After ``phase``, send the halo pieces due then (:meth:`outpaint.plan.Plan.messages`: one
    message per peer) and fill this rank's halo in the local array ``field`` with those it
    receives, in place. Nonblocking sends and receives, then one wait: no ordering between peers.
    Pieces this rank sends itself (a rectangle spanning the periodic box) are copied. Returns the
    bytes sent to other ranks."""
    rank = comm.Get_rank()
    sends, receives = plan.messages(rank, phase)
    select = z_selections(plan)
    incoming = {s: np.empty(sum(plan.piece_bytes(p) for p in ps) // BYTES_PER_VOXEL, dtype=np.float32)
                for s, ps in receives.items() if s != rank}
    requests = [comm.Irecv(buf, source=s, tag=TAG_HALO) for s, buf in incoming.items()]
    outgoing = {d: pack(field, ps, select, "src") for d, ps in sends.items()}
    requests += [comm.Isend(buf, dest=d, tag=TAG_HALO) for d, buf in outgoing.items() if d != rank]
    if rank in outgoing:
        unpack(field, receives[rank], select, outgoing[rank])
    MPI.Request.Waitall(requests)
    for source, buf in incoming.items():
        unpack(field, receives[source], select, buf)
    return sum(buf.nbytes for d, buf in outgoing.items() if d != rank)
