"""The tile plan of the 8-phase outpainting schedule and its pencil decomposition over MPI ranks.

Pure numpy: no torch, no MPI. Geometry (all sizes in voxels of the HR grid):

- The periodic box of side ``n`` is split into cubic blocks of side ``core``, ``nb = n / core``
  blocks per axis, ``nb`` even. Block ``(bx, by, bz)`` covers voxels ``[b core, (b + 1) core)``
  on each axis; its global tile index is ``(bx nb + by) nb + bz``.
- Its tile is the block plus a halo of ``halo = (tile - core) / 2`` voxels on every side, voxel
  ``a`` of the tile sitting at global ``(b core - halo + a) mod n`` (periodic wrap).
- Block colour = parity of its index on each axis; phase ``p = 4 px + 2 py + pz`` generates the
  blocks of colour ``(px, py, pz)``. ``emulator.geometry`` owns these rules (colours, halos, the
  known-halo mask of each phase, which the network is trained on, and the periodic crops); this
  module only applies them. Blocks of one colour never touch (the grid is even), so a phase is
  one batch of independent tiles: 8 sequential phases for any volume.
- Row ``u = bx nb + by``: the ``nb`` blocks along z at ``(bx, by)``. Its tiles fall in two phases
  (``pz`` = 0 then 1); :meth:`Plan.row_position` orders them by phase, then ``bz``.

Box sizes: there is no padding rule. A periodic box cannot be padded without breaking its
periodicity, and cropping would drop data silently, so a box whose side is not a multiple of
``2 core`` is an :class:`~sims.errors.InputError` that lists the cores that would fit
(``emulator.geometry.fitting_cores``).

Decomposition (pencils): a rank owns a rectangle of rows in (x, y), whole along z, made of
units of 2 x 2 rows (one row of each (x, y) parity, so that every unit holds ``nb / 2`` tiles of
each of the 8 phases). The ``(nb / 2)^2`` units are split among the ranks by recursive bisection
(:func:`bisect_units`): for a power-of-two rank count dividing the units every rank has the same
share of every phase (load balance 1). More ranks than units would leave ranks without work:
an InputError naming the largest useful count, ``(nb / 2)^2``.

Halo exchange: a rank's local arrays span its rectangle plus ``halo`` voxels on each side in x
and y (whole z). Each halo voxel is sent by the rank owning it, once, after the phase that
writes it (its colour) and before the first phase whose tiles on the receiving rank read it as
known (:func:`first_reads`, from the known-halo masks). :meth:`Plan.halo_pieces` cuts a rank's
halo into pieces of one source row and one colour; the pieces between two ranks go in as few
messages as possible (each sent as late as possible: greedy interval stabbing). Data crosses a
rank boundary only towards the rows that read it: on a regular grid of ranks each rank sends 1
message after phase 1, 3 after phase 3 and 2 after phase 5, and none after the other phases.
"""
import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from emulator.geometry import (PHASES, block_offsets, blocks_per_axis, colour_of, fitting_cores, halo_width,
                               known_mask, periodic_crop, phase_colours)
from sims.errors import InputError, check_int

BYTES_PER_VOXEL = 4
"""float32 fields."""
DIRECTIONS = tuple((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0))
"""Block offsets (dx, dy) of the 8 rows around a row."""


def tile_seed(seed, index):
    """Noise seed of tile ``index`` (int in [0, 2^63)): a hash of (global seed, tile index) only,
    independent of rank, batch and phase (numpy SeedSequence entropy mixing)."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def bisect_units(box, ranks):
    """Rectangles ``((x0, x1), (y0, y1))`` of ``ranks`` owners covering the rectangle ``box`` of
    units once, every one non-empty (needs ``ranks`` <= units), by recursive bisection: each cut
    (either axis, near the middle or in proportion to the ranks on each side) minimises the
    larger units-per-rank of the two sides; ties go to the longer axis (squarer pencils, smaller
    halos). The first rectangle holds the box's first unit."""
    (x0, x1), (y0, y1) = box
    if ranks == 1:
        return [box]
    best = None
    for axis in sorted((0, 1), key=lambda a: -(box[a][1] - box[a][0])):
        side = box[axis][1] - box[axis][0]
        other = (x1 - x0) * (y1 - y0) // side
        half = ranks // 2
        for cut in sorted({side // 2, (side + 1) // 2, side * half // ranks, -(-side * half // ranks)}):
            lo, hi = max(1, ranks - (side - cut) * other), min(cut * other, ranks - 1)
            if not 0 < cut < side or lo > hi:
                continue
            first = min(max(round(ranks * cut / side), lo), hi)
            cost = max(cut * other / first, (side - cut) * other / (ranks - first))
            if best is None or cost < best[0]:
                best = (cost, axis, cut, first)
    _, axis, cut, first = best
    start = box[axis][0]
    low, high = list(box), list(box)
    low[axis], high[axis] = (start, start + cut), (start + cut, box[axis][1])
    return bisect_units(tuple(low), first) + bisect_units(tuple(high), ranks - first)


def first_reads(tile, core):
    """Per row offset (dx, dy) (:data:`DIRECTIONS`), ``{colour: phase}``: the first phase whose
    tiles read blocks of that colour at that offset as known (any z offset), derived from
    ``emulator.geometry.known_mask`` around a block of each colour."""
    offsets = block_offsets(tile, core)
    out = {}
    for dx, dy in DIRECTIONS:
        reads = {}
        for q, (px, py, pz) in enumerate(phase_colours()):
            known = known_mask(tile, core, q)[np.ix_(offsets == dx, offsets == dy)]
            colours = colour_of(px + dx, py + dy, pz + offsets)
            for c in np.unique(np.broadcast_to(colours, known.shape)[known]):
                reads.setdefault(int(c), q)
        out[(dx, dy)] = reads
    return out


def stab(intervals):
    """Phases after which to send, for closed intervals [ready, deadline] of phases: the fewest
    points hitting every interval, each as late as possible (greedy by deadline); for each interval
    the latest point within it."""
    points = []
    for start, end in sorted(intervals, key=lambda iv: (iv[1], iv[0])):
        if not points or start > points[-1]:
            points.append(end)
    return [max(p for p in points if p <= end) for _, end in intervals]


class Piece(NamedTuple):
    """Halo voxels of one colour of one source row: local (x, y) starts in the sender's arrays
    (``src``) and the receiver's (``dst``), extent ``size`` (x, y) [voxels], whole z restricted to
    the blocks of ``colour``; sent after phase ``round``."""

    source: int
    dest: int
    round: int
    colour: int
    src: tuple
    dst: tuple
    size: tuple


@dataclass(frozen=True)
class Plan:
    """Outpainting plan of a periodic box of side ``n`` voxels with tiles of side ``tile`` keeping
    cores of side ``core``, decomposed over ``ranks`` pencil owners.

    Raises :class:`~sims.errors.InputError` (naming ``--tile``, ``--core`` or ``mpiexec -n``) when
    the sizes do not fit: invalid halo, ``n`` not a multiple of ``2 core`` (an even block grid is
    required), or more ranks than units of 2 x 2 rows.
    """

    n: int
    tile: int
    core: int
    ranks: int = 1

    def __post_init__(self):
        for name in ("n", "tile", "core", "ranks"):
            check_int(name, getattr(self, name))
        try:
            halo_width(self.tile, self.core)
        except ValueError as err:
            raise InputError("tile", str(err)) from err
        try:
            blocks_per_axis(self.n, self.core)
        except ValueError as err:
            raise InputError("core", f"{err}; cores that fit tile {self.tile}: "
                             f"{fitting_cores(self.n, self.tile) or 'none'}") from err
        if self.ranks > self.max_ranks:
            raise InputError("mpiexec -n", (
                f"{self.ranks} ranks for a box of {self.blocks}^3 blocks: a rank needs at least "
                f"2 x 2 rows of blocks, so at most {self.max_ranks} ranks can work; run on "
                f"{self.max_ranks} or fewer"))

    @property
    def halo(self):
        """Halo width (tile - core) / 2 [voxels] (``emulator.geometry.halo_width``)."""
        return halo_width(self.tile, self.core)

    @property
    def blocks(self):
        """Blocks per axis, nb = n / core (even)."""
        return self.n // self.core

    @property
    def n_tiles(self):
        """Tiles in the whole plan, nb^3 (one per block)."""
        return self.blocks**3

    @property
    def max_ranks(self):
        """Most ranks that get work: the (nb / 2)^2 units of 2 x 2 rows."""
        return (self.blocks // 2) ** 2

    def tile_index(self, blocks):
        """Global tile index (bx nb + by) nb + bz of block indices ``blocks`` (..., 3)."""
        b = np.asarray(blocks)
        return (b[..., 0] * self.blocks + b[..., 1]) * self.blocks + b[..., 2]

    def row_index(self, blocks):
        """Row bx nb + by of block indices ``blocks`` (..., 3)."""
        b = np.asarray(blocks)
        return b[..., 0] * self.blocks + b[..., 1]

    def row_position(self, blocks):
        """Position of each block (..., 3) in its row's schedule: phase (z parity), then bz."""
        bz = np.asarray(blocks)[..., 2]
        return (bz % 2) * (self.blocks // 2) + bz // 2

    def row_blocks(self, row):
        """Block indices (nb, 3) of row ``row`` in its schedule order (:meth:`row_position`)."""
        bz = np.concatenate([np.arange(0, self.blocks, 2), np.arange(1, self.blocks, 2)])
        bx, by = divmod(int(row), self.blocks)
        return np.stack([np.full_like(bz, bx), np.full_like(bz, by), bz], axis=-1)

    @cached_property
    def rects(self):
        """Rectangle ``((x0, x1), (y0, y1))`` of rows [block indices] of each rank."""
        units = self.blocks // 2
        return tuple(((2 * x0, 2 * x1), (2 * y0, 2 * y1))
                     for (x0, x1), (y0, y1) in bisect_units(((0, units), (0, units)), self.ranks))

    @cached_property
    def owners(self):
        """Rank owning each row, int array (nb, nb) indexed [bx, by]."""
        owners = np.full((self.blocks, self.blocks), -1, dtype=np.int64)
        for rank, ((x0, x1), (y0, y1)) in enumerate(self.rects):
            owners[x0:x1, y0:y1] = rank
        return owners

    def rows_of(self, rank):
        """Rows of ``rank``, sorted list of row indices."""
        (x0, x1), (y0, y1) = self.rects[rank]
        return [bx * self.blocks + by for bx in range(x0, x1) for by in range(y0, y1)]

    def blocks_in_phase(self, phase, rank=None):
        """Block indices (k, 3) generated in ``phase``, in raster order, optionally only those of
        ``rank``'s rectangle."""
        px, py, pz = phase_colours()[phase]
        (x0, x1), (y0, y1) = ((0, self.blocks),) * 2 if rank is None else self.rects[rank]
        grid = np.meshgrid(np.arange(x0 + (x0 + px) % 2, x1, 2), np.arange(y0 + (y0 + py) % 2, y1, 2),
                           np.arange(pz, self.blocks, 2), indexing="ij")
        return np.stack([g.ravel() for g in grid], axis=-1).astype(np.int64)

    def tiles_per_rank(self, phase):
        """Tiles of ``phase`` on each rank, int array (ranks,)."""
        return np.array([len(self.blocks_in_phase(phase, r)) for r in range(self.ranks)], dtype=np.int64)

    def local_extent(self, rank):
        """Global voxel ranges ``((x0, x1), (y0, y1))`` of ``rank``'s local arrays: its rows plus
        ``halo`` voxels on each side (starts may be negative and stops exceed n: wrap modulo n);
        whole z."""
        c, h = self.core, self.halo
        return tuple((a * c - h, b * c + h) for a, b in self.rects[rank])

    def local_shape(self, rank):
        """Shape (x, y, z) [voxels] of ``rank``'s local arrays."""
        (x0, x1), (y0, y1) = self.local_extent(rank)
        return x1 - x0, y1 - y0, self.n

    def read_local(self, field, rank):
        """``rank``'s local array, float32 :meth:`local_shape`, cut from the periodic (n, n, n)
        ``field`` (an array, or an h5py dataset of which only the hyperslabs needed are read)."""
        (x0, _), (y0, _) = self.local_extent(rank)
        return periodic_crop(field, (x0, y0, 0), self.local_shape(rank)).astype(np.float32, copy=False)

    def halo_pieces(self, rank):
        """Pieces (:class:`Piece`) of ``rank``'s halo: for each row around its rectangle (the
        ring, periodic) and each colour that a tile of ``rank`` reads there as known, the part of
        that row inside ``rank``'s local arrays, with the phase after which its owner sends it.
        Cached; sorted by source, then ring order."""
        cache = self.__dict__.setdefault("_pieces", {})
        if rank not in cache:
            cache[rank] = self._halo_pieces(rank)
        return cache[rank]

    def _halo_pieces(self, rank):
        (X0, X1), (Y0, Y1) = self.rects[rank]
        w, d, c, h, nb = X1 - X0, Y1 - Y0, self.core, self.halo, self.blocks
        reads = self._first_reads

        def span(slot, width):
            """(local start, start within the block, size) of a ring slot along one axis."""
            if slot == -1:
                return 0, c - h, h
            if slot == width:
                return h + width * c, 0, h
            return h + slot * c, 0, c

        entries = []
        for sx in range(-1, w + 1):
            for sy in range(-1, d + 1):
                if 0 <= sx < w and 0 <= sy < d:
                    continue
                bx, by = (X0 + sx) % nb, (Y0 + sy) % nb
                row_colours = {int(colour_of(bx, by, bz)) for bz in (0, 1)}
                first = {}
                for dx, dy in DIRECTIONS:
                    if 0 <= sx - dx < w and 0 <= sy - dy < d:
                        for colour, q in reads[(dx, dy)].items():
                            if colour in row_colours:
                                first[colour] = min(q, first.get(colour, PHASES))
                source = int(self.owners[bx, by])
                (sx0, _), (sy0, _) = self.rects[source]
                (lx, ix, nx), (ly, iy, ny) = span(sx, w), span(sy, d)
                src = (h + (bx - sx0) * c + ix, h + (by - sy0) * c + iy)
                entries += [(source, colour, q - 1, src, (lx, ly), (nx, ny))
                            for colour, q in sorted(first.items())]
        entries.sort(key=lambda e: e[0])
        pieces = []
        for source in sorted({e[0] for e in entries}):
            group = [e for e in entries if e[0] == source]
            rounds = stab([(e[1], e[2]) for e in group])
            pieces += [Piece(source, rank, r, e[1], e[3], e[4], e[5]) for e, r in zip(group, rounds)]
        return tuple(pieces)

    @cached_property
    def _first_reads(self):
        return first_reads(self.tile, self.core)

    def neighbours(self, rank):
        """Ranks owning a row of ``rank``'s ring (may include ``rank``): the ranks it may send to
        or receive from (symmetric)."""
        (X0, X1), (Y0, Y1) = self.rects[rank]
        xs, ys = np.arange(X0 - 1, X1 + 1) % self.blocks, np.arange(Y0 - 1, Y1 + 1) % self.blocks
        return sorted(set(self.owners[np.ix_(xs, ys)].ravel().tolist()))

    def messages(self, rank, phase):
        """(sends, receives) of ``rank`` after ``phase``: ``{rank: [Piece, ...]}`` each, one message
        per peer, pieces in the order both sides pack them."""
        sends, receives = {}, {}
        for p in self.halo_pieces(rank):
            if p.round == phase:
                receives.setdefault(p.source, []).append(p)
        for dest in self.neighbours(rank):
            for p in self.halo_pieces(dest):
                if p.source == rank and p.round == phase:
                    sends.setdefault(dest, []).append(p)
        return sends, receives

    def piece_bytes(self, piece):
        """Bytes of a piece: its x-y extent times the n / 2 voxels of one z parity, float32."""
        return piece.size[0] * piece.size[1] * (self.n // 2) * BYTES_PER_VOXEL

    @cached_property
    def _traffic(self):
        """(bytes, messages) each rank sends to other ranks after each phase, int arrays (8, ranks)."""
        sent = np.zeros((PHASES, self.ranks), dtype=np.int64)
        messages = set()
        for dest in range(self.ranks):
            for p in self.halo_pieces(dest):
                if p.source != dest:
                    sent[p.round, p.source] += self.piece_bytes(p)
                    messages.add((p.round, p.source, dest))
        count = np.zeros((PHASES, self.ranks), dtype=np.int64)
        for phase, source, _ in messages:
            count[phase, source] += 1
        return sent, count

    def halo_bytes(self, phase):
        """Bytes each rank sends to other ranks after ``phase``, int array (ranks,)."""
        return self._traffic[0][phase]

    def message_counts(self, phase):
        """Messages each rank sends to other ranks after ``phase``, int array (ranks,)."""
        return self._traffic[1][phase]

    def memory_per_rank(self):
        """Bytes of the two local float32 arrays (LR and field: rows plus halos) of the largest
        rank; the output writer (rank 0, at the end) needs one plane of (core, n, n) besides."""
        return max(2 * math.prod(self.local_shape(r)) * BYTES_PER_VOXEL for r in range(self.ranks))

    def describe(self, steps=20, evaluations_per_step=1, batch_size=8):
        """A summary of the plan as a JSON-ready dict.

        phases; tiles in total and per phase; per phase the min/mean/max tiles per rank, the bytes
        sent by the busiest sender and the messages (all ranks together) after it;
        ``load_balance`` = work / (ranks x sum over phases of the busiest rank's tiles) (1 =
        perfect); ``network_evaluations`` = tiles x steps x evaluations_per_step; ``max_ranks``
        = (nb / 2)^2, the most ranks that get work; ``sequential_evaluations`` = network passes
        in sequence when each rank runs batches of ``batch_size`` tiles (sum over phases of the
        busiest rank's batches x steps x evaluations per step); memory per rank of the local
        arrays [bytes].
        """
        per_phase = [self.tiles_per_rank(p) for p in range(PHASES)]
        busiest = sum(int(t.max()) for t in per_phase)
        nfe = steps * evaluations_per_step
        sent, count = self._traffic
        return {
            "n": self.n, "tile": self.tile, "core": self.core, "halo": self.halo,
            "blocks_per_axis": self.blocks, "ranks": self.ranks, "phases": PHASES,
            "max_ranks": self.max_ranks,
            "tiles": self.n_tiles, "tiles_per_phase": self.n_tiles // PHASES,
            "tiles_per_rank": [{"phase": p, "min": int(t.min()), "mean": float(t.mean()),
                                "max": int(t.max())} for p, t in enumerate(per_phase)],
            "load_balance": self.n_tiles / (self.ranks * busiest),
            "halo_bytes_max_rank": [int(s.max()) for s in sent],
            "halo_bytes_total": int(sent.sum()),
            "messages": [int(m.sum()) for m in count],
            "messages_max_rank": [int(m.max()) for m in count],
            "network_evaluations": self.n_tiles * nfe,
            "sequential_evaluations": sum(math.ceil(int(t.max()) / batch_size) for t in per_phase) * nfe,
            "memory_per_rank_bytes": self.memory_per_rank(),
        }
