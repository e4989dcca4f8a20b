"""What outpainting writes to disk: the resumable state next to the output, and the final HDF5.

State directory ``OUT.partial/`` (on a file system every rank sees):

- ``run.json``: the settings that determine the result (box, tile, core, seed, sampler, steps,
  model, LR source). ``--resume`` refuses a state made with other settings. The rank count is
  not a setting: a run may resume on any number of ranks.
- ``row_UUUUU.npy``: the cores of row ``u = bx nb + by`` (the blocks along z at (bx, by),
  :mod:`outpaint.plan`), float32 (core, core, n), and ``row_UUUUU.json``: ``{"done": k,
  "crc32": [...]}``, the row's first ``k`` tiles in its schedule order
  (:meth:`outpaint.plan.Plan.row_position`) are complete, with the crc32 of each one's core. A
  row belongs to one rank whatever the rank count (ranks own whole rows), so each file has one
  writer. After every tile batch the owner writes and flushes the new cores, then replaces the
  JSON: a kill loses at most the batch in flight. A run checks the rows it reuses first
  (:meth:`RunState.open_row`: file size and header, checksums) and generates again what does
  not verify. The row JSONs are the one record of progress: a tile is completed when they say
  so (:meth:`RunState.completed_tiles`), whatever a rank was doing or printing when it died.

Output: one HDF5 file, dataset ``sr`` (1, n, n, n) float32: one sample, with the leading sample
axis that ``emulator upsample`` gives a one-tile box's K samples, so ``sr`` always reads as
(samples, n, n, n) (``sims.validation`` takes every sample). Written by rank 0 alone, streaming the
row files of the state directory one x-plane of blocks at a time, through
``sims.h5io.atomic_h5`` (temporary name, renamed when complete), then the state directory is
removed. Memory: one plane of (core, n, n) voxels. Why not the two alternatives: slab writes by
turns need every rank to reopen one file, which the serial HDF5 library only allows one process
at a time and which breaks on file systems without POSIX locks, and would spread the
temporary-name-and-rename logic over ranks; per-rank files joined by a virtual dataset leave an
output that silently breaks when its side files are moved. The rows are already on disk for
resuming, so one streaming pass (seconds for 528^3, ~1 min for 2048^3) gives a single
self-contained file.
"""
import json
import os
import shutil
import sys
import zlib

import numpy as np

from sims.outputs import write_text
from sims.errors import InputError
from sims.h5io import atomic_h5, write_attrs

SUFFIX = ".partial"
RUN_FILE = "run.json"


def state_path(out_path):
    """The state directory of an output: ``OUT.partial``."""
    return os.fspath(out_path) + SUFFIX


def _write_json(path, obj):
    """Write JSON atomically and durably (sims.outputs)."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _row_file_ok(path, shape):
    """True when ``path`` is a .npy file of float32 ``shape`` (C order) with all its bytes."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            stored, fortran, dtype = read(f)
            size = f.tell() + int(np.prod(shape)) * 4
    except (OSError, ValueError):
        return False
    return (tuple(stored), fortran, dtype) == (shape, False, np.dtype("<f4")) and \
        os.path.getsize(path) == size


def _new_row(path, shape):
    """A new zero row file of float32 ``shape`` with its disk space allocated; its memory map."""
    row = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.path.getsize(path))
        except OSError as err:
            raise OSError(err.errno, os.strerror(err.errno), path) from err
    return row


class RunState:
    """The state directory of one outpainting run for a plan (see the module docstring)."""

    def __init__(self, directory, plan):
        self.directory, self.plan = os.fspath(directory), plan

    def _row(self, row, ext):
        return os.path.join(self.directory, f"row_{row:05d}.{ext}")

    @property
    def row_shape(self):
        """Shape (core, core, n) of a row file [voxels]."""
        return self.plan.core, self.plan.core, self.plan.n

    @classmethod
    def create(cls, directory, plan, settings):
        """Start a fresh state directory (replacing any old one) holding ``settings``."""
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        _write_json(os.path.join(directory, RUN_FILE), {"settings": settings})
        return cls(directory, plan)

    @classmethod
    def open(cls, directory, plan, settings):
        """An existing state directory, checked against ``settings``; InputError on a mismatch."""
        try:
            stored = _read_json(os.path.join(directory, RUN_FILE))["settings"]
        except (OSError, ValueError, KeyError) as err:
            raise InputError(directory, f"is not a readable outpainting state ({err}); use --force "
                             "to start over") from err
        changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if changed:
            detail = "; ".join(f"{k}: {stored.get(k)!r} then, {settings.get(k)!r} now" for k in changed)
            raise InputError(directory, f"was made with other settings ({detail}); resume with the "
                             "same settings or use --force to start over")
        return cls(directory, plan)

    def done(self, row):
        """Completed tiles of row ``row`` (its first ``done`` in row schedule order) as its JSON
        records them; 0 when the JSON is missing or malformed."""
        try:
            return self._record(row)[0]
        except ValueError:
            return 0

    def _record(self, row):
        """(done, checksums) of the row's JSON; (0, []) without one; ValueError when malformed."""
        path = self._row(row, "json")
        if not os.path.exists(path):
            return 0, []
        try:
            record = _read_json(path)
            done, sums = int(record["done"]), [int(c) for c in record["crc32"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: unreadable record ({type(err).__name__}: {err})") from err
        if not 0 <= done <= min(len(sums), self.plan.blocks):
            raise ValueError(f"{path}: inconsistent record of {done} tiles")
        return done, sums[:done]

    def _checksum(self, data, block):
        """crc32 of the core of ``block`` in the row array ``data``."""
        z = slice(block[2] * self.plan.core, (block[2] + 1) * self.plan.core)
        return zlib.crc32(np.ascontiguousarray(data[:, :, z]))

    def open_row(self, row):
        """Verify row ``row`` and return its completed count: a row file of the wrong size or
        header is made again (zeros, its disk space allocated now, so that a full disk is an
        OSError here and never a SIGBUS in a later write), and the record keeps only the leading
        tiles whose checksums match: the rest are generated again. Call on the rank that owns
        the row."""
        path = self._row(row, "npy")
        try:
            recorded, sums = self._record(row)
        except ValueError as err:
            print(f"{err}; generating the row again", file=sys.stderr)
            recorded, sums = 0, []
        if _row_file_ok(path, self.row_shape):
            data, blocks = np.load(path, mmap_mode="r"), self.plan.row_blocks(row)
            done = next((j for j in range(recorded) if self._checksum(data, blocks[j]) != sums[j]), recorded)
            del data
        else:
            _new_row(path, self.row_shape)
            done = 0
        if done < recorded:
            print(f"{path}: {recorded - done} of its {recorded} recorded tiles are missing or do not "
                  "match their checksums; generating them again", file=sys.stderr)
        _write_json(self._row(row, "json"), {"done": done, "crc32": sums[:done]})
        return done

    def store(self, row, blocks, cores):
        """Write the cores (k, core, core, core) of ``blocks`` (k, 3) of row ``row`` (the next
        ``k`` tiles in its schedule), flush them, then record the row's new count with the
        checksum of each new core."""
        known, sums = self._record(row)              # as open_row left it: verified
        c = self.plan.core
        data = np.load(self._row(row, "npy"), mmap_mode="r+")
        for block, core in zip(blocks, cores):
            data[:, :, block[2] * c:(block[2] + 1) * c] = core
        data.flush()
        done = int(self.plan.row_position(blocks).max()) + 1
        ordered = self.plan.row_blocks(row)
        sums = sums[:known] + [self._checksum(data, ordered[j]) for j in range(known, done)]
        del data
        _write_json(self._row(row, "json"), {"done": done, "crc32": sums})

    def row(self, row):
        """Read-only memory map of row ``row``'s cores, float32 (core, core, n)."""
        return np.load(self._row(row, "npy"), mmap_mode="r")

    def completed_tiles(self):
        """Global indices of the tiles whose cores the state records, sorted: a tile counts as
        completed once its row file is flushed and its row's JSON names it, never earlier."""
        plan = self.plan
        recorded = [plan.tile_index(plan.row_blocks(u)[:self.done(u)]) for u in range(plan.blocks**2)]
        return np.sort(np.concatenate(recorded))

    def complete(self):
        """True when every row has all its tiles."""
        return all(self.done(u) == self.plan.blocks for u in range(self.plan.blocks**2))

    def planes(self):
        """(index into ``sr`` (1, n, n, n), values) of every x-plane of blocks of the complete
        state, one (core, n, n) plane in memory at a time."""
        plan, c = self.plan, self.plan.core
        if not self.complete():
            raise RuntimeError(f"{self.directory}: rows are incomplete; cannot write the output")
        plane = np.empty((c, plan.n, plan.n), dtype=np.float32)
        for bx in range(plan.blocks):
            for by in range(plan.blocks):
                plane[:, by * c:(by + 1) * c] = self.row(bx * plan.blocks + by)
            yield np.s_[0, bx * c:(bx + 1) * c], plane

    def remove(self):
        shutil.rmtree(self.directory)


def write_output(out_path, shape, parts, attrs):
    """Write dataset ``sr`` of ``shape`` (samples, n, n, n) float32 into ``out_path`` (atomic:
    temporary name, renamed when complete) from ``parts``, an iterable of (index, values) that
    together fill it, with attributes ``attrs`` plus ``created_by``: the one writer of emulated
    fields (a one-tile box's samples in one part, an outpainted box plane by plane)."""
    with atomic_h5(out_path) as f:
        dset = f.create_dataset("sr", shape=shape, dtype=np.float32)
        for index, values in parts:
            dset[index] = values
        write_attrs(f, **attrs)
