"""Slab decomposition and halo exchange of the outpainting plan with mpi4py.

Each rank holds local arrays of its block rows along x plus ``halo`` layers on each side
(:meth:`outpaint.plan.Plan.local_extent`), whole y-z planes: memory per rank is its slab plus
halos, never the whole box. After a phase, :func:`exchange_halos` sends each x-neighbour only the
voxels of the colours it will read next (:func:`outpaint.plan.exchange_colours`) with two
point-to-point ``Sendrecv`` calls. mpi4py is imported inside the functions, so importing this
module neither initialises MPI nor requires it.
"""
import contextlib
import sys
import traceback

import numpy as np

from outpaint.plan import colour_of
from sims.errors import one_line

TAG_LEFTWARD, TAG_RIGHTWARD = 11, 12


def world():
    """``MPI.COMM_WORLD`` (a one-rank world when not started by mpiexec)."""
    from mpi4py import MPI
    return MPI.COMM_WORLD


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
    return before an aborted rank has died). InputError on every rank when it is held."""
    from sims.errors import InputError
    from sims.outputs import acquire, release

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
    comm.Barrier()                                   # every rank holds it before rank 0 may remove it
    try:
        yield
    finally:
        release(out_path, fd, remove=rank == 0)


def local_rank(comm):
    """Rank of this process among the ranks of its node (shared-memory split of ``comm``)."""
    from mpi4py import MPI
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def device_for_rank(comm):
    """torch device of this rank: CUDA GPU ``local_rank % device_count`` when CUDA is available
    (one rank per GPU), else the CPU."""
    import torch
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank(comm) % torch.cuda.device_count())
    return torch.device("cpu")


def read_rows(dset, start, stop):
    """Rows ``[start, stop)`` along axis 0 of an (n, n, n) dataset or array, indices wrapped modulo
    n, read in contiguous pieces (h5py reads only those rows), as float32 (stop - start, n, n)."""
    n = dset.shape[0]
    pieces, x = [], start
    while x < stop:
        lo = x % n
        hi = min(n, lo + stop - x)
        pieces.append(np.asarray(dset[lo:hi], dtype=np.float32))
        x += hi - lo
    return np.concatenate(pieces, axis=0)


def layer_mask(plan, x_start, colours):
    """bool (halo, n, n): voxels of the ``halo`` x-layers starting at global ``x_start`` whose
    block colour is in ``colours``."""
    b = np.arange(plan.n) // plan.core
    bx = ((np.arange(x_start, x_start + plan.halo) % plan.n) // plan.core)
    colour = colour_of(bx[:, None, None], b[None, :, None], b[None, None, :])
    return np.isin(colour, sorted(colours))


def exchange_halos(comm, plan, field, colours):
    """Fill the x-halo layers of the local array ``field`` (from :meth:`Plan.local_extent`) with
    the neighbours' voxels of ``colours``, in place; a no-op when ``colours`` is empty.

    Leftward pass: send my lowest ``halo`` layers to the left neighbour, receive the right
    neighbour's into my right halo; then the rightward pass. Both sides build the same masks from
    global coordinates, so only the masked voxels travel. Ranks without rows take no part.
    Returns the bytes this rank sent.
    """
    rank = comm.Get_rank()
    if not colours or not len(plan.rows_of(rank)):
        return 0
    x0, x1 = plan.local_extent(rank)
    h = plan.halo
    left, right = plan.neighbours(rank)
    send_left, send_right = plan.send_layers(rank)
    passes = [(send_left, left, x1 - h, right, TAG_LEFTWARD), (send_right, right, x0, left, TAG_RIGHTWARD)]
    sent = 0
    for send_x, dest, recv_x, source, tag in passes:
        send_mask, recv_mask = layer_mask(plan, send_x, colours), layer_mask(plan, recv_x, colours)
        outgoing = np.ascontiguousarray(field[send_x - x0:send_x - x0 + h][send_mask])
        incoming = np.empty(int(recv_mask.sum()), dtype=field.dtype)
        comm.Sendrecv(outgoing, dest=dest, sendtag=tag, recvbuf=incoming, source=source, recvtag=tag)
        field[recv_x - x0:recv_x - x0 + h][recv_mask] = incoming
        sent += outgoing.nbytes
    return sent
