"""Compiled (numba) scatter and gather loops behind :mod:`sims.mesh`.

Mass assignment of order p (1 NGP, 2 CIC, 3 TSC) on a periodic cubic grid of n nodes per axis.
A position x [Mpc/h] has cell coordinate u = x n / L, node j sits at u = j (x_j = j L / n), and
node j receives the weight K_p(u - j) per axis, where K_p is the p-fold convolution of the unit
box (the B-spline of order p; Hockney & Eastwood 1988, "Computer Simulation Using Particles",
ch. 5; Sefusatti et al. 2016, arXiv:1512.07295). The 3D weight is the product of the three 1D
weights.

One 1D rule per order (:func:`ngp_1d`, :func:`cic_1d`, :func:`tsc_1d`) returns its nodes and
weights as tuples of length p. The shared 3D loops (:func:`deposit` for paint, :func:`gather` for
readout) pick the rule through :func:`stencil_1d` at compile time: each entry point branches on
the run-time ``order`` into a call with a constant 1, 2 or 3, which numba types as a literal, so
each order compiles with fixed-length, unrolled loops (faster than run-time loop bounds) and
stays cacheable (first-class function arguments are not, and ``numba.literally`` gave slower
loops; ``benchmarks/bench_paint.py`` times paint and readout). Paint and readout use the same weights, so
readout is the exact adjoint of paint. Grids need n >= 2 nodes per axis (see :func:`wrap_index`).

Parallel paint: threads never write the same cell at the same time. A particle's home slab is
floor(u_x); every stencil up to TSC writes only slabs home - 1 .. home + 2. The x slabs are cut
into an even number of chunks, each at least 3 slabs wide, so a chunk writes only into itself and
one slab of each neighbour, never into the next-but-one chunk. Even chunks are painted
concurrently, then odd chunks: no per-thread grid copies, no atomics. A first parallel pass
stores each particle's home slab, so every thread scans only that int32 array and reads the
positions of its own particles.
"""
import math

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import overload


@nb.njit(cache=True)
def cell_coordinate(x, scale, n):
    """Cell coordinate u = x * scale wrapped into [0, n] (n only through round-off); NaN stays NaN."""
    u = x * scale
    if not (u >= 0.0 and u < n):
        u -= n * math.floor(u / n)
    return u


@nb.njit(cache=True)
def wrap_index(j, n):
    """Node index j in [-n, 2n) folded periodically into [0, n), as an unsigned index (numba skips
    the negative-index check for those). Stencil nodes lie in [-1, n + 1], inside that range for
    n >= 2."""
    if j < 0:
        j += n
    elif j >= n:
        j -= n
    return np.uint64(j)


@nb.njit(cache=True)
def ngp_1d(u, n):
    """NGP nodes and weights at cell coordinate u: the nearest node, weight 1."""
    return (wrap_index(math.floor(u + 0.5), n),), (1.0,)


@nb.njit(cache=True)
def cic_1d(u, n):
    """CIC nodes and weights at cell coordinate u: nodes floor(u), floor(u) + 1 with 1 - f, f."""
    s = math.floor(u)
    f = u - s
    return (wrap_index(s, n), wrap_index(s + 1, n)), (1.0 - f, f)


@nb.njit(cache=True)
def tsc_1d(u, n):
    """TSC nodes and weights at cell coordinate u: the nearest node i with 3/4 - d^2 and its
    neighbours i -+ 1 with (1/2)(1/2 -+ d)^2, where d = u - i."""
    s = math.floor(u + 0.5)
    d = u - s
    nodes = (wrap_index(s - 1, n), wrap_index(s, n), wrap_index(s + 1, n))
    return nodes, (0.5 * (0.5 - d) ** 2, 0.75 - d * d, 0.5 * (0.5 + d) ** 2)


def stencil_1d(u, n, order):
    """The 1D rule of a literal order (1, 2, 3) at cell coordinate u; compiled code only."""
    raise NotImplementedError("stencil_1d is resolved by numba at compile time")


@overload(stencil_1d, prefer_literal=True)
def _stencil_1d_typed(u, n, order):
    if not isinstance(order, types.IntegerLiteral):
        return None
    if order.literal_value == 1:
        return lambda u, n, order: ngp_1d(u, n)
    if order.literal_value == 2:
        return lambda u, n, order: cic_1d(u, n)
    return lambda u, n, order: tsc_1d(u, n)


@nb.njit(cache=True)
def deposit(grid, x, y, z, w, scale, order):
    """Add weight w of a particle at (x, y, z) [Mpc/h] to grid with the order-p stencil."""
    n = grid.shape[0]
    ix, wx = stencil_1d(cell_coordinate(x, scale, n), n, order)
    iy, wy = stencil_1d(cell_coordinate(y, scale, n), n, order)
    iz, wz = stencil_1d(cell_coordinate(z, scale, n), n, order)
    for a in range(len(ix)):
        for b in range(len(iy)):
            wab = w * wx[a] * wy[b]
            for c in range(len(iz)):
                grid[ix[a], iy[b], iz[c]] += wab * wz[c]


@nb.njit(cache=True)
def gather(grid, x, y, z, scale, order):
    """Order-p interpolation of grid at (x, y, z) [Mpc/h], accumulated in float64."""
    n = grid.shape[0]
    ix, wx = stencil_1d(cell_coordinate(x, scale, n), n, order)
    iy, wy = stencil_1d(cell_coordinate(y, scale, n), n, order)
    iz, wz = stencil_1d(cell_coordinate(z, scale, n), n, order)
    total = 0.0
    for a in range(len(ix)):
        for b in range(len(iy)):
            row = 0.0
            for c in range(len(iz)):
                row += wz[c] * grid[ix[a], iy[b], iz[c]]
            total += wx[a] * wy[b] * row
    return total


@nb.njit(cache=True)
def paint_chunk(positions, weights, slabs, grid, scale, order, lo, hi):
    """Deposit the particles whose home slab lies in [lo, hi); weights empty means weight 1."""
    unit = weights.shape[0] == 0
    for p in range(positions.shape[0]):
        if slabs[p] >= lo and slabs[p] < hi:
            w = 1.0 if unit else weights[p]
            deposit(grid, positions[p, 0], positions[p, 1], positions[p, 2], w, scale, order)


@nb.njit(cache=True)
def readout_range(grid, positions, scale, order, start, stop, out):
    """out[p] = interpolation at particle p for p in start..stop-1 (NaN and counted if not finite)."""
    bad = 0
    for p in range(start, stop):
        x, y, z = positions[p, 0], positions[p, 1], positions[p, 2]
        if math.isfinite(x) and math.isfinite(y) and math.isfinite(z):
            out[p] = gather(grid, x, y, z, scale, order)
        else:
            out[p] = math.nan
            bad += 1
    return bad


# The parallel drivers below take the order at run time and call the serial workers above with a
# constant 1, 2 or 3 (typed as a literal, see the module docstring): hence the three-way branches.

@nb.njit(cache=True, parallel=True)
def home_slabs(positions, scale, n, blocks):
    """Each particle's home x slab floor(u_x) in [0, n) (n for a non-finite position), int32 (N,),
    and the particle counts per slab of each of the ``blocks`` contiguous particle ranges (one
    task each), int64 (blocks, n + 1); the last column counts non-finite positions."""
    npart = positions.shape[0]
    slabs = np.empty(npart, np.int32)
    counts = np.zeros((blocks, n + 1), np.int64)
    for b in nb.prange(blocks):
        for p in range(b * npart // blocks, (b + 1) * npart // blocks):
            x, y, z = positions[p, 0], positions[p, 1], positions[p, 2]
            s = n
            if math.isfinite(x) and math.isfinite(y) and math.isfinite(z):
                s = math.floor(cell_coordinate(x, scale, n))
                if s == n:
                    s = 0
            slabs[p] = s
            counts[b, s] += 1
    return slabs, counts


@nb.njit(cache=True, parallel=True)
def paint_chunks(positions, weights, slabs, grid, scale, order, bounds, phase):
    """Add to grid the weights of the particles in chunks phase, phase + 2, ... in parallel.

    Call with phase 0, then phase 1. slabs: the particles' home slabs from :func:`home_slabs`
    (all finite, i.e. < n). bounds: int64 (nchunks + 1,) slab boundaries, bounds[0] = 0,
    bounds[-1] = n; nchunks is 1 (serial) or even, each chunk at least 3 slabs wide.
    weights: float64 (N,) or empty (weight 1 for every particle).
    """
    for half in nb.prange((bounds.shape[0] - phase) // 2):
        lo, hi = bounds[2 * half + phase], bounds[2 * half + phase + 1]
        if order == 1:
            paint_chunk(positions, weights, slabs, grid, scale, 1, lo, hi)
        elif order == 2:
            paint_chunk(positions, weights, slabs, grid, scale, 2, lo, hi)
        else:
            paint_chunk(positions, weights, slabs, grid, scale, 3, lo, hi)


@nb.njit(cache=True, parallel=True)
def readout_all(grid, positions, scale, order, blocks, out):
    """out[p] = order-p interpolation of grid at particle p, the particles split into ``blocks``
    contiguous ranges; returns the count of non-finite positions (their out is NaN) per block."""
    npart = positions.shape[0]
    bad = np.zeros(blocks, np.int64)
    for b in nb.prange(blocks):
        start, stop = b * npart // blocks, (b + 1) * npart // blocks
        if order == 1:
            bad[b] = readout_range(grid, positions, scale, 1, start, stop, out)
        elif order == 2:
            bad[b] = readout_range(grid, positions, scale, 2, start, stop, out)
        else:
            bad[b] = readout_range(grid, positions, scale, 3, start, stop, out)
    return bad
