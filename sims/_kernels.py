"""Compiled (numba) scatter and gather loops behind :mod:`sims.mesh`.

Mass assignment of order p (1 NGP, 2 CIC, 3 TSC) on a periodic cubic grid of n nodes per axis.
A position x [Mpc/h] has cell coordinate u = x n / L, node j sits at u = j (x_j = j L / n), and
node j receives the weight K_p(u - j) per axis, where K_p is the p-fold convolution of the unit
box (the B-spline of order p; Hockney & Eastwood 1988, "Computer Simulation Using Particles",
sec. 5-3, eq. 5-72..5-74; Sefusatti et al. 2016, arXiv:1512.07295, eq. 8). The 3D weight is the
product of the three 1D weights. Paint (scatter) and readout (gather) share :func:`stencil_1d`,
so readout is the exact adjoint of paint.

Parallel paint: threads never write the same cell at the same time. The x slabs are cut into an
even number of chunks, each at least p - 1 slabs wide, with about equal particle counts. A particle
belongs to the chunk holding its first stencil slab, and writes at most p - 1 slabs past that
chunk's end, i.e. only into the next chunk. Even chunks are painted concurrently, then odd
chunks, so the grid needs no per-thread copies and no atomics.
"""
import numba as nb
import numpy as np


@nb.njit(cache=True)
def cell_coordinate(x, scale, n):
    """Cell coordinate u = x * scale wrapped into [0, n] (n only through round-off); NaN stays NaN."""
    u = x * scale
    if not (u >= 0.0 and u < n):
        u -= n * np.floor(u / n)
    return u


@nb.njit(cache=True)
def wrap_index(j, n):
    """Node index j folded periodically into [0, n)."""
    if j < 0 or j >= n:
        j %= n
    return j


@nb.njit(cache=True)
def stencil_1d(u, order):
    """First node s and the weights of nodes s, s+1, s+2 for a particle at cell coordinate u.

    NGP: the nearest node; CIC: nodes floor(u), floor(u)+1 with 1-f, f; TSC: the nearest node
    i with 3/4 - d^2 and its neighbours with (1/2)(1/2 -+ d)^2, d = u - i. Unused weights are 0.
    """
    if order == 1:
        s = np.floor(u + 0.5)
        return int(s), (1.0, 0.0, 0.0)
    if order == 2:
        s = np.floor(u)
        f = u - s
        return int(s), (1.0 - f, f, 0.0)
    s = np.floor(u + 0.5)
    d = u - s
    return int(s) - 1, (0.5 * (0.5 - d) ** 2, 0.75 - d * d, 0.5 * (0.5 + d) ** 2)


@nb.njit(cache=True)
def deposit(grid, x, y, z, w, scale, order):
    """Add weight w of a particle at (x, y, z) [Mpc/h] to grid with its order-p stencil."""
    n = grid.shape[0]
    sx, wx = stencil_1d(cell_coordinate(x, scale, n), order)
    sy, wy = stencil_1d(cell_coordinate(y, scale, n), order)
    sz, wz = stencil_1d(cell_coordinate(z, scale, n), order)
    for a in range(order):
        i = wrap_index(sx + a, n)
        for b in range(order):
            j = wrap_index(sy + b, n)
            wab = w * wx[a] * wy[b]
            for c in range(order):
                grid[i, j, wrap_index(sz + c, n)] += wab * wz[c]


@nb.njit(cache=True)
def gather(grid, x, y, z, scale, order):
    """Order-p interpolation of grid at (x, y, z) [Mpc/h], accumulated in float64."""
    n = grid.shape[0]
    sx, wx = stencil_1d(cell_coordinate(x, scale, n), order)
    sy, wy = stencil_1d(cell_coordinate(y, scale, n), order)
    sz, wz = stencil_1d(cell_coordinate(z, scale, n), order)
    total = 0.0
    for a in range(order):
        i = wrap_index(sx + a, n)
        for b in range(order):
            j = wrap_index(sy + b, n)
            row = 0.0
            for c in range(order):
                row += wz[c] * grid[i, j, wrap_index(sz + c, n)]
            total += wx[a] * wy[b] * row
    return total


@nb.njit(cache=True)
def first_slab(x, scale, n, order):
    """The x slab of a particle's first stencil node, in [0, n); -1 for a non-finite position."""
    u = cell_coordinate(x, scale, n)
    if u != u:
        return -1
    return wrap_index(stencil_1d(u, order)[0], n)


@nb.njit(cache=True, parallel=True)
def slab_histogram(positions, scale, n, order, blocks):
    """Particles per first-stencil x slab, shape (n,), and the count of non-finite positions."""
    npart = positions.shape[0]
    counts = np.zeros((blocks, n + 1), np.int64)
    for b in nb.prange(blocks):
        for p in range(b * npart // blocks, (b + 1) * npart // blocks):
            finite = np.isfinite(positions[p, 1]) and np.isfinite(positions[p, 2])
            s = first_slab(positions[p, 0], scale, n, order) if finite else -1
            counts[b, s if s >= 0 else n] += 1
    total = counts.sum(axis=0)
    return total[:n], total[n]


@nb.njit(cache=True, parallel=True)
def paint_chunks(positions, weights, grid, scale, order, bounds):
    """Zero grid, then deposit every particle, even chunks of x slabs in parallel, then odd ones.

    bounds: int64 (nchunks + 1,) slab boundaries, bounds[0] = 0, bounds[-1] = n; nchunks is 1
    (serial) or even, every chunk at least order - 1 slabs wide. weights: float64 (N,) or empty
    (weight 1 for every particle).
    """
    n = grid.shape[0]
    for i in nb.prange(n):
        grid[i] = 0.0
    nchunks = bounds.shape[0] - 1
    unit = weights.shape[0] == 0
    for phase in range(2):
        for half in nb.prange((nchunks - phase + 1) // 2):
            chunk = 2 * half + phase
            lo, hi = bounds[chunk], bounds[chunk + 1]
            for p in range(positions.shape[0]):
                s = first_slab(positions[p, 0], scale, n, order)
                if s >= lo and s < hi:
                    w = 1.0 if unit else weights[p]
                    deposit(grid, positions[p, 0], positions[p, 1], positions[p, 2], w, scale, order)


@nb.njit(cache=True, parallel=True)
def readout_all(grid, positions, scale, order, out):
    """out[p] = order-p interpolation of grid at particle p; returns the non-finite position count."""
    bad = 0
    for p in nb.prange(positions.shape[0]):
        x, y, z = positions[p, 0], positions[p, 1], positions[p, 2]
        if np.isfinite(x) and np.isfinite(y) and np.isfinite(z):
            out[p] = gather(grid, x, y, z, scale, order)
        else:
            out[p] = np.nan
            bad += 1
    return bad
