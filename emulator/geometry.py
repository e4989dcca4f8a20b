"""Geometry of the 8-phase outpainting schedule: blocks, colours, phases, halos, masks, periodic crops.

One module for training (``emulator.data`` draws the masks the network learns) and outpainting
(``outpaint.plan`` schedules, crops and exchanges with the same rules); docs/outpainting.md
describes the schedule. All sizes are in voxels of the HR grid.

Blocks: the periodic box of side ``n`` is split into cubic blocks of side ``core``, ``nb = n /
core`` per axis with ``nb`` even (:func:`blocks_per_axis`), so that the colouring below is
consistent across the periodic wrap. Block ``(bx, by, bz)`` covers voxels ``[b core, (b + 1)
core)`` on each axis.

Tiles: a tile is a block plus a halo of ``halo = (tile - core) / 2`` voxels on every side
(:func:`halo_width`); ``halo <= core``, so a halo only reaches the 26 blocks adjacent to its own.
Voxel ``a`` of the tile of block ``b`` sits at global ``(b core - halo + a) mod n``
(:func:`tile_origin`, cut out by :func:`periodic_crop`).

Colours and phases: block ``(bx, by, bz)`` has colour ``(bx % 2, by % 2, bz % 2)`` and is
generated in phase ``p = 4 (bx % 2) + 2 (by % 2) + bz % 2`` (:func:`colour_of`; ``px`` the most
significant bit), so phase 0 is colour (0, 0, 0) and phase 7 colour (1, 1, 1). Blocks of one
colour never touch, so a phase is one batch of independent tiles. The neighbour at block offset
``d`` in {-1, 0, 1}^3 of a block of colour ``c`` has colour ``c XOR (|dx|, |dy|, |dz|)`` wherever
the block lies, hence the known region of a tile depends on its phase only (:func:`known_mask`):
the halo voxels lying in neighbours of a smaller phase. Phase 0 knows nothing; the core is never
known; phase 7 knows its whole halo.

Pure numpy (no torch): the outpainting planner imports this module too.
"""
import numpy as np

PHASES = 8


def colour_of(bx, by, bz):
    """Colour, which is also the phase, ``4 (bx % 2) + 2 (by % 2) + bz % 2`` (0..7) of integer
    block indices (ints or arrays, broadcast; negative indices wrap like the periodic box)."""
    return 4 * (np.asarray(bx) % 2) + 2 * (np.asarray(by) % 2) + np.asarray(bz) % 2


def phase_colours():
    """Colour bits ``(px, py, pz)`` of each phase 0..7: the blocks of ``p = 4 px + 2 py + pz``."""
    return tuple(((p >> 2) & 1, (p >> 1) & 1, p & 1) for p in range(PHASES))


def halo_width(tile, core):
    """Halo ``(tile - core) / 2`` [voxels], validating ``tile > core``, even difference, halo <= core."""
    tile, core = int(tile), int(core)
    if core < 1:
        raise ValueError(f"core must be at least 1 voxel, got {core}")
    if tile <= core:
        raise ValueError(f"tile ({tile}) must be larger than core ({core})")
    if (tile - core) % 2:
        raise ValueError(f"tile - core must be even so the halo is symmetric, got {tile} - {core}")
    halo = (tile - core) // 2
    if halo > core:
        raise ValueError(f"halo ({halo}) must not exceed core ({core}): a halo may only reach "
                         "the adjacent blocks")
    return halo


def blocks_per_axis(n, core):
    """Blocks per axis ``nb = n / core`` of a periodic box of side ``n`` [voxels]; ValueError
    unless ``n`` is a multiple of ``2 core`` (``nb`` even)."""
    if n % (2 * core):
        raise ValueError(f"the box side of {n} voxels must be a multiple of 2*core = {2 * core} "
                         "(an even number of blocks per axis keeps the 8 colours consistent across "
                         "the periodic wrap; no padding is possible for a periodic box)")
    return n // core


def fitting_cores(n, tile):
    """Cores [voxels] that a periodic box of side ``n`` admits with tiles of side ``tile``: those
    that both :func:`halo_width` and :func:`blocks_per_axis` accept."""
    return [core for core in range(1, tile) if _fits(n, tile, core)]


def _fits(n, tile, core):
    try:
        halo_width(tile, core)
        blocks_per_axis(n, core)
    except ValueError:
        return False
    return True


def tile_origin(block, tile, core):
    """Global voxel index (3,) of voxel (0, 0, 0) of the tile of ``block`` (3,): ``b core - halo``
    on each axis, not wrapped (may be negative; :func:`periodic_crop` wraps it)."""
    return np.asarray(block) * core - halo_width(tile, core)


def block_offsets(tile, core):
    """Block offset (-1, 0 or +1) of each voxel along one tile axis, int array (tile,)."""
    halo = halo_width(tile, core)
    offsets = np.zeros(tile, dtype=np.int64)
    offsets[:halo] = -1
    offsets[halo + core:] = 1
    return offsets


def known_mask(tile, core, phase):
    """Known-halo pattern of a tile generated in ``phase``: bool (tile, tile, tile), axes (x, y, z).

    True where the voxel lies in a neighbouring block of a smaller colour (:func:`colour_of`),
    i.e. one generated in an earlier phase; computed around a block of colour ``phase``.
    """
    phase = int(phase)
    if not 0 <= phase < PHASES:
        raise ValueError(f"phase must be in 0..{PHASES - 1}, got {phase}")
    d = block_offsets(tile, core)
    bx, by, bz = phase_colours()[phase]
    neighbours = colour_of((bx + d)[:, None, None], (by + d)[None, :, None], (bz + d)[None, None, :])
    return neighbours < phase


def wrapped_slices(start, stop, n):
    """Slices within [0, n), in order, of the global index range [start, stop) taken modulo n."""
    slices, i = [], int(start)
    while i < stop:
        lo = i % n
        hi = min(n, lo + int(stop) - i)
        slices.append(slice(lo, hi))
        i += hi - lo
    return slices


def periodic_crop(field, origin, shape):
    """Block of ``shape`` voxels (an int: a cube) at voxel ``origin`` (3,) of the periodic last
    three axes of ``field``, wrapping around: ``out[..., a, b, c] = field[..., (o0 + a) % n0,
    (o1 + b) % n1, (o2 + c) % n2]``; a new array.

    Reads contiguous slabs only, so ``field`` may be an h5py dataset (only those hyperslabs are
    read) as well as an array.
    """
    shape = np.broadcast_to(shape, 3)
    x, y, z = (wrapped_slices(o, o + s, n) for o, s, n in zip(origin, shape, field.shape[-3:]))
    return np.block([[[np.asarray(field[..., i, j, k]) for k in z] for j in y] for i in x])
