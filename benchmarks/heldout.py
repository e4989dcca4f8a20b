"""The held-out pair the model benchmarks share: a new seed simulated at a model's grid spacing."""
from sims.cosmology import PLANCK18
from sims.pairs import simulate_pair

HELD_OUT_SEED = 90210
"""Seed of the held-out simulation; the default model's training pairs used seeds 100-103."""


def held_out_pair(path, model, grid, seed=HELD_OUT_SEED):
    """Simulate a pair into ``path``: a box of ``grid`` voxels per side at the model's HR spacing
    [Mpc/h], HR particles one per voxel, LR particles at the model's LR spacing, z = 0."""
    box_size = grid * model.spacing
    simulate_pair(path, seed=seed, box_size=box_size, lr_particles=round(box_size / model.lr_spacing),
                  hr_particles=grid, grid=grid, redshift=0.0, steps=10, z_init=49.0, cosmo=PLANCK18)
