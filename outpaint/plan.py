"""The tile plan of the 8-phase outpainting schedule (DESIGN.md, "Outpainting schedule").

Pure numpy: no torch, no MPI. Geometry (all sizes in voxels of the HR grid):

- The periodic box of side ``n`` is split into cubic blocks of side ``core``, ``nb = n / core``
  blocks per axis, ``nb`` even. Block ``(bx, by, bz)`` covers voxels ``[b core, (b + 1) core)``
  on each axis; its global tile index is ``(bx nb + by) nb + bz``.
- Its tile is the block plus a halo of ``halo = (tile - core) / 2`` voxels on every side, voxel
  ``a`` of the tile sitting at global ``(b core - halo + a) mod n`` (periodic wrap).
- Block colour = parity of its index on each axis; phase ``p = 4 px + 2 py + pz`` generates the
  blocks of colour ``(px, py, pz)`` (``emulator.masks`` owns this order and the known-halo mask of
  each phase, which the network is trained on). Blocks of one colour never touch (the grid is
  even), so a phase is one batch of independent tiles: 8 sequential phases for any volume.

Box sizes: there is no padding rule. A periodic box cannot be padded without breaking its
periodicity, and cropping would drop data silently, so a box whose side is not a multiple of
``2 core`` is an :class:`~sims.errors.InputError` that lists the cores that would fit.

Decomposition (slabs): ranks own contiguous ranges of block rows along x (whole y-z planes),
several rows per rank when ``nb > ranks``. A phase of x-parity ``px`` only touches rows of that
parity, so ranks get whole pairs of rows (one even, one odd) while there are enough rows
(``ranks <= nb / 2``): every rank then has the same share of every phase. Above ``nb / 2`` ranks
the rows are shared singly and half the ranks idle in each phase; above ``nb`` ranks some own
nothing. :meth:`Plan.describe` reports the resulting load balance.

Halo exchange: a rank's local arrays span its rows plus ``halo`` layers on each side in x. The
colours whose voxels a neighbour must receive, and when, are derived from the known-halo masks
(:func:`exchange_colours`): a colour is sent once, right before the first phase whose tiles read it
in their x-halo. For this schedule that is one exchange, after phase 3, of the ``halo`` boundary
layers of even rows (colours 0..3); odd rows (phases 4..7) are never read across a rank boundary.
"""
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from emulator.masks import PHASES, block_offsets, halo_width, known_mask, phase_colours
from sims.errors import InputError

BYTES_PER_VOXEL = 4
"""float32 fields."""


def colour_of(bx, by, bz):
    """Colour (= phase) 4 px + 2 py + pz of block indices (arrays broadcast), ``p`` bits = parities."""
    return 4 * (np.asarray(bx) % 2) + 2 * (np.asarray(by) % 2) + np.asarray(bz) % 2


def fitting_cores(n, tile):
    """Cores that a box of side ``n`` admits with this ``tile``: ``n`` a multiple of ``2 core`` and
    ``(tile - core) / 2`` a valid halo (even difference, ``0 < halo <= core``)."""
    return [c for c in range(1, tile) if n % (2 * c) == 0 and (tile - c) % 2 == 0 and (tile - c) // 2 <= c]


def tile_seed(seed, index):
    """Noise seed of tile ``index`` (int in [0, 2^63)): a hash of (global seed, tile index) only,
    independent of rank, batch and phase (numpy SeedSequence entropy mixing)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def slab_rows(nb, ranks, rank):
    """Block rows (along x) owned by ``rank`` of ``ranks``: a contiguous ``range``.

    Whole pairs of rows while ``ranks <= nb / 2`` (balanced in every phase), single rows up to
    ``nb`` ranks, nothing for ranks ``>= nb``.
    """
    pairs = nb // 2
    if ranks <= pairs:
        return range(2 * (rank * pairs // ranks), 2 * ((rank + 1) * pairs // ranks))
    active = min(ranks, nb)
    if rank >= active:
        return range(0)
    return range(rank * nb // active, (rank + 1) * nb // active)


@dataclass(frozen=True)
class Plan:
    """Outpainting plan of a periodic box of side ``n`` voxels with tiles of side ``tile`` keeping
    cores of side ``core``, decomposed over ``ranks`` slab owners.

    Raises :class:`~sims.errors.InputError` (naming ``--tile`` or ``--core``) when the sizes do not
    fit: invalid halo, or ``n`` not a multiple of ``2 core`` (an even block grid is required).
    """

    n: int
    tile: int
    core: int
    ranks: int = 1

    def __post_init__(self):
        for name in ("n", "tile", "core", "ranks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"--{name}", f"must be a positive integer, got {value!r}")
        try:
            halo_width(self.tile, self.core)
        except ValueError as err:
            raise InputError("--tile", str(err)) from err
        if self.n % (2 * self.core):
            raise InputError("--core", (
                f"the box side of {self.n} voxels must be a multiple of 2*core = {2 * self.core} "
                "(an even number of blocks per axis keeps the 8 colours consistent across the "
                f"periodic wrap; no padding is possible for a periodic box); cores that fit tile "
                f"{self.tile}: {fitting_cores(self.n, self.tile) or 'none'}"))

    @property
    def halo(self):
        """Halo width (tile - core) / 2 [voxels]."""
        return (self.tile - self.core) // 2

    @property
    def blocks(self):
        """Blocks per axis, nb = n / core (even)."""
        return self.n // self.core

    @property
    def n_tiles(self):
        """Tiles in the whole plan, nb^3 (one per block)."""
        return self.blocks**3

    def tile_index(self, blocks):
        """Global tile index (bx nb + by) nb + bz of block indices ``blocks`` (..., 3)."""
        b = np.asarray(blocks)
        return (b[..., 0] * self.blocks + b[..., 1]) * self.blocks + b[..., 2]

    def blocks_in_phase(self, phase, rows=None):
        """Block indices (k, 3) generated in ``phase``, in raster order, optionally restricted to
        block rows ``rows`` (an iterable of bx)."""
        px, py, pz = phase_colours()[phase]
        xs = np.arange(px, self.blocks, 2)
        if rows is not None:
            xs = np.intersect1d(xs, np.asarray(list(rows), dtype=np.int64))
        ys, zs = np.arange(py, self.blocks, 2), np.arange(pz, self.blocks, 2)
        grid = np.meshgrid(xs, ys, zs, indexing="ij")
        return np.stack([g.ravel() for g in grid], axis=-1).astype(np.int64)

    def tile_axis(self, b):
        """Global voxel indices (tile,) of a tile along one axis for block index ``b`` (wrapped)."""
        return (b * self.core - self.halo + np.arange(self.tile)) % self.n

    def rows_of(self, rank):
        """Block rows of ``rank`` (:func:`slab_rows`)."""
        return slab_rows(self.blocks, self.ranks, rank)

    def owner_of_row(self, bx):
        """Rank owning block row ``bx``."""
        return self._row_owners[bx % self.blocks]

    @cached_property
    def _row_owners(self):
        owners = np.full(self.blocks, -1, dtype=np.int64)
        for rank in range(min(self.ranks, self.blocks)):
            owners[list(self.rows_of(rank))] = rank
        return owners

    def row_position(self, blocks):
        """Position of each block (k, 3) in its row's schedule: the row's tiles ordered by phase,
        then raster (by, bz). A row has 4 phases of (nb / 2)^2 tiles each."""
        b = np.asarray(blocks)
        per_axis = self.blocks // 2
        phase_in_row = 2 * (b[..., 1] % 2) + b[..., 2] % 2
        return (phase_in_row * per_axis + b[..., 1] // 2) * per_axis + b[..., 2] // 2

    def tiles_per_rank(self, phase):
        """Tiles of ``phase`` on each rank, int array (ranks,)."""
        per_row = (self.blocks // 2) ** 2
        px = phase_colours()[phase][0]
        return np.array([sum(per_row for bx in self.rows_of(r) if bx % 2 == px)
                         for r in range(self.ranks)], dtype=np.int64)

    def local_extent(self, rank):
        """Global x range [start, stop) of ``rank``'s local arrays: its rows plus ``halo`` layers
        on each side (start may be negative and stop may exceed n: wrap modulo n)."""
        rows = self.rows_of(rank)
        return rows.start * self.core - self.halo, rows.stop * self.core + self.halo

    def send_layers(self, rank):
        """(to_left, to_right): global x start of the ``halo`` layers that ``rank`` sends to its
        left neighbour (its lowest layers) and right neighbour (its highest layers)."""
        rows = self.rows_of(rank)
        return rows.start * self.core, rows.stop * self.core - self.halo

    def neighbours(self, rank):
        """(left, right) ranks owning the rows adjacent to ``rank``'s slab (periodic)."""
        rows = self.rows_of(rank)
        return int(self.owner_of_row(rows.start - 1)), int(self.owner_of_row(rows.stop))

    def layer_voxels(self, x_start, colours):
        """Voxels of colours ``colours`` in the ``halo`` x-layers starting at global ``x_start``
        (whole y-z planes): the size of one halo message."""
        xs = np.arange(x_start, x_start + self.halo) % self.n
        layers_of_parity = np.bincount((xs // self.core) % 2, minlength=2)
        per_parity = self.n // 2                  # voxels of each block parity along y or z
        return int(sum(layers_of_parity[phase_colours()[k][0]] * per_parity**2 for k in colours))

    def halo_bytes(self, phase):
        """Bytes each rank sends (both neighbours together) in the exchange after ``phase``,
        int array (ranks,); ranks without rows send nothing."""
        colours = exchange_colours(self.tile, self.core)[phase]
        out = np.zeros(self.ranks, dtype=np.int64)
        for r in range(min(self.ranks, self.blocks)):
            if colours and len(self.rows_of(r)):
                out[r] = sum(self.layer_voxels(x, colours) for x in self.send_layers(r)) * BYTES_PER_VOXEL
        return out

    def memory_per_rank(self):
        """Bytes of the two local float32 arrays (LR and field, rows plus halos) of the largest slab."""
        longest = max(len(self.rows_of(r)) for r in range(self.ranks))
        return 2 * (longest * self.core + 2 * self.halo) * self.n**2 * BYTES_PER_VOXEL

    def describe(self, steps=20, evaluations_per_step=1, batch_size=8):
        """A summary of the plan as a JSON-ready dict.

        phases; tiles in total and per phase; per phase the min/mean/max tiles per rank and halo
        bytes sent by the busiest rank; ``load_balance`` = work / (ranks x sum over phases of the
        busiest rank's tiles) (1 = perfect); ``network_evaluations`` = tiles x steps x
        evaluations_per_step; ``balanced_ranks_max`` = nb / 2, the most ranks that slabs keep
        busy in every phase; ``sequential_evaluations`` = network passes in sequence when each
        rank runs batches of ``batch_size`` tiles (sum over phases of the busiest rank's batches x
        steps x evaluations per step); memory per rank of the local arrays.
        """
        per_phase = [self.tiles_per_rank(p) for p in range(PHASES)]
        halo = [self.halo_bytes(p) for p in range(PHASES)]
        busiest = sum(int(t.max()) for t in per_phase)
        nfe = steps * evaluations_per_step
        return {
            "n": self.n, "tile": self.tile, "core": self.core, "halo": self.halo,
            "blocks_per_axis": self.blocks, "ranks": self.ranks, "phases": PHASES,
            "balanced_ranks_max": self.blocks // 2,
            "tiles": self.n_tiles, "tiles_per_phase": self.n_tiles // PHASES,
            "tiles_per_rank": [{"phase": p, "min": int(t.min()), "mean": float(t.mean()),
                                "max": int(t.max())} for p, t in enumerate(per_phase)],
            "load_balance": self.n_tiles / (self.ranks * busiest),
            "halo_bytes_max_rank": [int(h.max()) for h in halo],
            "halo_bytes_total": int(sum(h.sum() for h in halo)),
            "network_evaluations": self.n_tiles * nfe,
            "sequential_evaluations": sum(math.ceil(int(t.max()) / batch_size) for t in per_phase) * nfe,
            "memory_per_rank_bytes": self.memory_per_rank(),
        }


def x_halo_colours(tile, core, phase):
    """Colours that a tile of ``phase`` reads as known in its x-halo (voxels with x block offset
    +-1), derived from ``emulator.masks.known_mask``: a frozenset of phases < ``phase``."""
    offsets = block_offsets(tile, core)
    bits = [(c + np.abs(offsets)) % 2 for c in phase_colours()[phase]]
    colour = 4 * bits[0][:, None, None] + 2 * bits[1][None, :, None] + bits[2][None, None, :]
    in_x_halo = np.broadcast_to((offsets != 0)[:, None, None], colour.shape)
    return frozenset(int(c) for c in np.unique(colour[known_mask(tile, core, phase) & in_x_halo]))


def exchange_colours(tile, core):
    """Colours sent to the x-neighbours after each phase: a tuple of 8 frozensets.

    A colour goes out once, after the phase just before the first phase that reads it in an
    x-halo (:func:`x_halo_colours`), so every message carries final values and is sent as late as
    possible (fewer, larger messages). The result: colours {0, 1, 2, 3} after phase 3, nothing else.
    """
    first_read = {}
    for q in range(PHASES):
        for c in x_halo_colours(tile, core, q):
            first_read.setdefault(c, q)
    return tuple(frozenset(c for c, q in first_read.items() if q == p + 1) for p in range(PHASES))
