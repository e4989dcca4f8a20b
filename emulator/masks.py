"""Known-halo masks of the 8-colour outpainting schedule (DESIGN.md, "Outpainting schedule").

The box is split into cubic blocks of side ``core`` voxels, with an even number of blocks per
axis so that the colouring below is consistent across the periodic wrap. Block ``(bx, by, bz)``
has colour ``(bx % 2, by % 2, bz % 2)``. A tile is a block plus a halo of
``halo = (tile - core) / 2`` voxels on every side; ``halo <= core``, so a halo only reaches the
26 blocks adjacent to its own.

Phase order: phase ``p`` generates the blocks of colour ``(px, py, pz)`` with
``p = 4 px + 2 py + pz`` (``px`` the most significant bit), so phase 0 is colour (0, 0, 0) and
phase 7 is colour (1, 1, 1). The neighbour of a colour-``c`` block at block offset ``d`` in
{-1, 0, 1}^3 has colour ``c XOR (|dx|, |dy|, |dz|)`` whatever the block's position, hence the known
region of a tile depends on its phase only: the halo voxels lying in neighbours whose phase is
smaller than ``p``. Phase 0 knows nothing; the core is never known; phase 7 knows its whole halo.

Pure numpy (no torch): the outpainting planner imports this module too.
"""
import numpy as np

PHASES = 8


def phase_colours():
    """Colour bits ``(px, py, pz)`` of each phase 0..7 (``p = 4 px + 2 py + pz``)."""
    return tuple(((p >> 2) & 1, (p >> 1) & 1, p & 1) for p in range(PHASES))


def phase_of_block(block_index):
    """Phase (0..7) in which the block with integer index ``(bx, by, bz)`` is generated."""
    bx, by, bz = (int(b) % 2 for b in block_index)
    return 4 * bx + 2 * by + bz


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


def block_offsets(tile, core):
    """Block offset (-1, 0 or +1) of each voxel along one tile axis, int array (tile,)."""
    halo = halo_width(tile, core)
    offsets = np.zeros(tile, dtype=np.int64)
    offsets[:halo] = -1
    offsets[halo + core:] = 1
    return offsets


def known_mask(tile, core, phase):
    """Known-halo pattern of a tile generated in ``phase``: bool (tile, tile, tile), axes (x, y, z).

    True where the voxel lies in a neighbouring block generated in an earlier phase.
    """
    phase = int(phase)
    if not 0 <= phase < PHASES:
        raise ValueError(f"phase must be in 0..{PHASES - 1}, got {phase}")
    odd = np.abs(block_offsets(tile, core))            # neighbour parity flip along the axis
    px, py, pz = phase_colours()[phase]
    nx = (px ^ odd)[:, None, None]
    ny = (py ^ odd)[None, :, None]
    nz = (pz ^ odd)[None, None, :]
    return (4 * nx + 2 * ny + nz) < phase
