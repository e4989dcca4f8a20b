"""Training examples from paired LR/HR boxes: periodic crops, cube symmetries, outpainting masks.

A paired box file (``emulator simulate`` / ``ingest``) holds datasets ``lr`` and ``hr``
(overdensity, periodic, same box). LR is brought to the HR grid by Fourier resampling when the
grids differ. Boxes are normalised once at load; every example is then cut from memory.

Augmentation (as map2map): one of the 48 symmetries of the cube (6 axis permutations x 8 axis
flips), applied identically to LR and HR. A flip ``i -> n - 1 - i`` is a reflection composed with
a one-voxel translation, which a random crop origin makes irrelevant. Masks are not transformed:
the network is trained on exactly the 8 patterns of the outpainting schedule, and crops are cut
with the periodic crop that outpainting uses (emulator.geometry).

Randomness: example ``i`` of training step ``step`` draws everything from
``np.random.default_rng([seed, stream, step, i])``, so a batch depends neither on the number of
data-loader workers nor on the number of ranks (rank r takes its slice of the global batch).
"""
import glob
import itertools
import os
from dataclasses import dataclass

import numpy as np
import torch

from emulator.geometry import PHASES, known_mask, periodic_crop
from sims.errors import InputError
from sims.mesh import resample_overdensity
from sims.pairfile import read_pair

PAIR_PATTERNS = ("*.h5", "*.hdf5")

SYMMETRIES = tuple((perm, flips) for perm in itertools.permutations(range(3))
                   for flips in itertools.product((False, True), repeat=3))
"""The 48 elements of the cube's symmetry group: (axis permutation, flip of each output axis)."""


def apply_symmetry(field, index):
    """Apply symmetry ``index`` (0..47) to the last three axes of ``field``; returns a new array.

    The output axis j is input axis ``perm[j]``, then reversed if ``flips[j]``.
    """
    perm, flips = SYMMETRIES[index]
    lead = tuple(range(field.ndim - 3))
    out = np.transpose(field, lead + tuple(len(lead) + p for p in perm))
    flip_axes = tuple(len(lead) + j for j in range(3) if flips[j])
    return np.ascontiguousarray(np.flip(out, flip_axes) if flip_axes else out)


@dataclass(frozen=True)
class PairBox:
    """One paired box in memory: ``lr`` and ``hr`` overdensity on the HR grid, float32 (n, n, n).

    box_size [Mpc/h]; n_lr: the LR's resolution per side, the particles per side of the LR run where
    the file records ``lr_particles`` (a 64^3-particle run painted on a 128^3 grid resolves only
    64^3), else its grid size in the file; its Nyquist is pi n_lr / box_size.
    """

    lr: np.ndarray
    hr: np.ndarray
    box_size: float
    n_lr: float
    source: str

    @property
    def spacing(self):
        """HR grid spacing box_size / n [Mpc/h]."""
        return self.box_size / self.hr.shape[0]


def find_pair_files(data_dir):
    """Sorted paired-box files (``*.h5``, ``*.hdf5``) in ``data_dir``; InputError when none."""
    if not os.path.isdir(data_dir):
        raise InputError(data_dir, "data directory does not exist")
    paths = sorted({p for pattern in PAIR_PATTERNS for p in glob.glob(os.path.join(data_dir, pattern))})
    if not paths:
        raise InputError(data_dir, "contains no paired box files (*.h5, *.hdf5)")
    return paths


def read_pair_box(path):
    """Read one paired file, check that both fields are overdensities (>= -1) and bring LR to the
    HR grid when needed (:func:`sims.mesh.resample_overdensity`: Fourier resampling, clipped at -1)."""
    lr, hr, attrs = read_pair(path)
    if hr.min() < -1 - 1e-5 or lr.min() < -1 - 1e-5:
        raise InputError(path, "fields must be overdensities (delta >= -1); found values below -1")
    n_hr, n_lr = hr.shape[0], lr.shape[0]
    if n_lr != n_hr:
        lr = resample_overdensity(lr, n_hr)
    resolution = float(attrs.get("lr_particles", n_lr))
    return PairBox(lr=lr, hr=hr, box_size=float(attrs["box_size"]), n_lr=resolution, source=str(path))


def load_pairs(paths, tile):
    """Read every paired file; all must share one HR grid spacing and hold at least one tile."""
    boxes = [read_pair_box(p) for p in paths]
    spacing = boxes[0].spacing
    for box in boxes:
        if abs(box.spacing - spacing) > 1e-6 * spacing:
            raise InputError(box.source, f"HR grid spacing {box.spacing:.6g} Mpc/h differs from "
                             f"{spacing:.6g} Mpc/h of {boxes[0].source}")
        if box.hr.shape[0] < tile:
            raise InputError(box.source, f"HR grid {box.hr.shape[0]}^3 is smaller than the tile {tile}^3")
    return boxes


def split_pairs(boxes, n_val):
    """(train, validation): the last ``n_val`` boxes are held out; with a single box both use it."""
    if len(boxes) <= n_val:
        return boxes, boxes
    return boxes[:len(boxes) - n_val], boxes[len(boxes) - n_val:]


class CropDataset(torch.utils.data.Dataset):
    """Random training examples from normalised boxes, keyed by ``(step, i)``.

    ``boxes``: list of (lr, hr) pairs of normalised float32 (n, n, n) arrays on the same grid
    spacing. Each example is a dict of float32 tensors of shape (1, tile, tile, tile): ``hr``
    (target), ``lr`` (condition), ``known`` (hr where mask, else 0) and ``mask`` (1 known, 0 not).
    With probability ``p_mask`` the mask is the known-halo pattern of a phase drawn uniformly
    from 1..7, otherwise empty (phase 0). ``stream`` separates training (0) and validation (1) draws.
    """

    def __init__(self, boxes, tile, core, p_mask, seed, stream=0):
        if not 0.0 <= p_mask <= 1.0:
            raise ValueError(f"p_mask must be in [0, 1], got {p_mask}")
        self.boxes, self.tile, self.p_mask, self.seed, self.stream = boxes, tile, p_mask, seed, stream
        self.masks = np.stack([known_mask(tile, core, p) for p in range(PHASES)])
        volumes = np.array([hr.size for _, hr in boxes], dtype=np.float64)
        self.box_weights = volumes / volumes.sum()

    def draw(self, step, i):
        """The random choices of example ``(step, i)``: box, crop origin, symmetry, phase."""
        rng = np.random.default_rng([self.seed, self.stream, step, i])
        box = int(rng.choice(len(self.boxes), p=self.box_weights))
        origin = rng.integers(0, self.boxes[box][1].shape, size=3)
        symmetry = int(rng.integers(len(SYMMETRIES)))
        masked = rng.random() < self.p_mask
        phase = int(rng.integers(1, PHASES)) if masked else 0
        return box, origin, symmetry, phase

    def __getitem__(self, key):
        box, origin, symmetry, phase = self.draw(*key)
        lr, hr = self.boxes[box]
        pair = np.stack([periodic_crop(lr, origin, self.tile), periodic_crop(hr, origin, self.tile)])
        lr_t, hr_t = apply_symmetry(pair, symmetry)
        mask = self.masks[phase].astype(np.float32)
        arrays = {"lr": lr_t, "hr": hr_t, "known": hr_t * mask, "mask": mask}
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))[None] for k, v in arrays.items()}


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler: for each step from ``start`` to ``stop``, this rank's keys ``(step, i)``
    with i in [rank * batch, (rank + 1) * batch) of the global batch ``batch * world``."""

    def __init__(self, start, stop, batch, rank=0):
        self.start, self.stop, self.batch, self.rank = start, stop, batch, rank

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield [(step, i) for i in range(self.rank * self.batch, (self.rank + 1) * self.batch)]

    def __len__(self):
        return max(self.stop - self.start, 0)
