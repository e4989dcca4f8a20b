"""Paired low/high-resolution boxes from one set of initial conditions: two FastPM runs of the
same volume and seed (resolution-invariant white noise, :mod:`sims.ics`), 2LPT starts at
``z_init``, both painted with CIC and written as one paired-box file (:mod:`sims.pairfile`).

Grid rule: a particle lattice of n per side may be painted on a grid of g per side only if one
divides the other (g % n == 0 or n % g == 0). Then the unperturbed lattice paints to a uniform
field (n % g == 0) or to a pattern periodic on the lattice (g % n == 0) whose images sit at
multiples of the particle Nyquist frequency; any other ratio folds the lattice's images onto
arbitrary grid modes (a moire pattern at large scales).
"""
import contextlib
import dataclasses
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from sims import ics, lpt, mesh, pm
from sims.cosmology import RHO_CRIT
from sims.errors import InputError, check_int
from sims.h5io import open_h5
from sims.pairfile import write_pair
from sims.snapshot import write_snapshot


@dataclass(frozen=True)
class PairConfig:
    """Everything that defines one simulated pair except the cosmology.

    ``seed`` >= 0 (white noise, :func:`sims.ics.white_noise`); ``box_size`` [Mpc/h];
    ``lr_particles`` <= ``hr_particles`` per side (even, >= 4); ``grid`` (HR) and ``lr_grid``
    (LR; None means ``grid``) cells per side, each fitting its particle lattice (module
    docstring); output ``redshift`` >= 0; ``steps`` KDK steps linear in a from ``z_init`` >
    ``redshift``; force mesh ``force_mesh_factor`` times the particle lattice. Invalid values
    raise :class:`~sims.errors.InputError` naming the field. The field names are the paired
    file's attribute names: :func:`sims.pairfile.write_pair` takes ``box_size``, ``redshift``,
    ``lr_particles`` and ``hr_particles`` as its own and stores the rest as they are.
    """

    seed: int
    box_size: float
    lr_particles: int
    hr_particles: int
    grid: int
    lr_grid: int | None = None
    redshift: float = 0.0
    steps: int = 10
    z_init: float = 49.0
    force_mesh_factor: int = 2

    def __post_init__(self):
        for name in ("seed", "lr_particles", "hr_particles", "grid", "steps", "force_mesh_factor"):
            object.__setattr__(self, name, pm.as_int(name, getattr(self, name)))
        object.__setattr__(self, "lr_grid", self.grid if self.lr_grid is None
                           else pm.as_int("lr_grid", self.lr_grid))
        for name in ("box_size", "redshift", "z_init"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.seed < 0:
            raise InputError("seed", f"must be >= 0, got {self.seed}")
        if not 0 <= self.redshift < self.z_init:
            raise InputError("redshift", f"must be >= 0 and below z_init = {self.z_init}, got {self.redshift}")
        if self.lr_particles > self.hr_particles:
            raise InputError("lr_particles", f"must not exceed hr_particles = {self.hr_particles}, "
                                             f"got {self.lr_particles}")
        for name in ("lr_particles", "hr_particles"):
            self._check_run(name)
        check_fits(self.hr_particles, self.grid, "grid")
        check_fits(self.lr_particles, self.lr_grid, "lr_grid")

    def _check_run(self, particles_field):
        """Validate the PM run of one resolution, naming this config's fields in errors."""
        fields = {"n_particles": particles_field, "B": "force_mesh_factor", "a_init": "z_init",
                  "a_final": "redshift"}
        try:
            self.pm_config(getattr(self, particles_field))
        except InputError as err:
            raise InputError(fields.get(err.source, err.source), err.problem) from None

    def pm_config(self, n_particles):
        """The :class:`sims.pm.PMConfig` of the run with ``n_particles`` per side."""
        return pm.PMConfig(n_particles=n_particles, box_size=self.box_size, B=self.force_mesh_factor,
                           steps=self.steps, a_init=1 / (1 + self.z_init), a_final=1 / (1 + self.redshift))


def check_fits(n_particles, grid, source):
    """Raise InputError(source) unless ``grid`` and ``n_particles`` divide one another."""
    if grid < 1 or (grid % n_particles and n_particles % grid):
        raise InputError(source, f"{grid} cells per side do not fit {n_particles} particles per side: "
                                 f"one must be a multiple of the other (e.g. {n_particles}, "
                                 f"{2 * n_particles} or {max(n_particles // 2, 1)})")


def particle_mass(cosmo, box_size, n_total):
    """Mass of one of ``n_total`` equal particles filling a box of side L [Mpc/h] at the mean
    matter density: rho_crit Omega_m L^3 / n_total [1e10 Msun/h] (rho_crit = 3 H0^2 / (8 pi G),
    :data:`sims.cosmology.RHO_CRIT`)."""
    return RHO_CRIT * cosmo.Omega_m * box_size ** 3 / n_total


def run_particles(config, n_particles, cosmo, callback=None):
    """2LPT initial conditions at ``z_init`` from ``config.seed`` on an ``n_particles``^3
    lattice, evolved by FastPM to ``config.redshift``. Returns (positions, momenta) [Mpc/h],
    float64 (n^3, 3), momenta p = a^2 dx/dt / H0 (:mod:`sims.pm`)."""
    run = config.pm_config(n_particles)
    delta_k = ics.linear_density_modes(config.seed, n_particles, config.box_size, cosmo)
    positions, momenta = lpt.lpt_state(delta_k, config.box_size, cosmo, run.a_init, order=2)
    return pm.evolve(positions, momenta, run, cosmo, callback=callback)


def paint_overdensity(positions, grid, box_size):
    """CIC overdensity delta = rho / mean - 1 of equal-mass particles, float32 (grid^3)."""
    return mesh.overdensity(mesh.paint(positions, grid, box_size, mas="cic"))


def save_snapshot(path, positions, momenta, config, cosmo):
    """Write final particles as a Gadget-style snapshot: peculiar velocities v = 100 p / a [km/s]
    (p in H0 Mpc/h units, H0 = 100 h km/s/Mpc), equal masses (:func:`particle_mass`)."""
    a = 1 / (1 + config.redshift)
    write_snapshot(path, positions, 100.0 * momenta / a, None, config.box_size, config.redshift,
                   cosmo, particle_mass(cosmo, config.box_size, len(positions)))


def simulate_pair(out_path, *, seed, box_size, lr_particles, hr_particles, grid, lr_grid=None,
                  redshift, steps, z_init, cosmo, force_mesh_factor=2, keep_snapshots_dir=None,
                  progress=True):
    """Run the LR and HR simulations of one seed and write the paired box ``out_path``.

    Keyword form of :func:`write_simulated_pair` (the arguments are the fields of
    :class:`PairConfig`). Returns the :class:`PairConfig`.
    """
    config = PairConfig(seed=seed, box_size=box_size, lr_particles=lr_particles,
                        hr_particles=hr_particles, grid=grid, lr_grid=lr_grid, redshift=redshift,
                        steps=steps, z_init=z_init, force_mesh_factor=force_mesh_factor)
    write_simulated_pair(out_path, config, cosmo, keep_snapshots_dir=keep_snapshots_dir,
                         progress=progress)
    return config


def write_simulated_pair(out_path, config, cosmo, keep_snapshots_dir=None, progress=True):
    """Run the LR and HR simulations of ``config`` and write the paired box ``out_path``.

    LR (``lr_particles``^3) is painted on ``lr_grid``, HR on ``grid``, both CIC overdensity
    float32 without deconvolution; datasets ``lr``, ``hr``, attributes ``cosmology`` and every
    field of ``config``. With ``keep_snapshots_dir`` the final particles are also written there
    as ``snap_lr.hdf5`` and ``snap_hr.hdf5``. The pair file is written last and atomically, so its existence means the
    box is complete. ``progress``: tqdm bars over the PM steps.
    """
    fields = {}
    for label, n, g in (("lr", config.lr_particles, config.lr_grid), ("hr", config.hr_particles, config.grid)):
        with _step_bar(f"{label.upper()} {n}^3 PM", config.steps, progress) as callback:
            positions, momenta = run_particles(config, n, cosmo, callback)
        if keep_snapshots_dir is not None:
            os.makedirs(keep_snapshots_dir, exist_ok=True)
            save_snapshot(os.path.join(keep_snapshots_dir, f"snap_{label}.hdf5"), positions, momenta,
                          config, cosmo)
        fields[label] = paint_overdensity(positions, g, config.box_size)
    write_pair(out_path, fields["lr"], fields["hr"], cosmology=cosmo, **asdict(config))


def simulate_boxes(out_dir, config, cosmo, boxes=1, first_box=0, force=False, keep_snapshots=False,
                   progress=True):
    """Write boxes ``first_box`` .. ``first_box + boxes - 1`` as ``out_dir/box_IIII.h5``, box i
    from seed ``config.seed + i`` (:func:`write_simulated_pair`); boxes already complete with
    these settings (:func:`pair_complete`) are skipped unless ``force``, so repeating an
    interrupted run resumes it. keep_snapshots: also write box i's final particles to
    ``out_dir/snapshots/box_IIII/``. Returns the number of boxes skipped."""
    check_int("boxes", boxes)
    check_int("first_box", first_box, minimum=0)
    indices = range(first_box, first_box + boxes)
    configs = [dataclasses.replace(config, seed=config.seed + i) for i in indices]
    paths = [os.path.join(out_dir, f"box_{i:04d}.h5") for i in indices]
    done = [not force and pair_complete(path, c, cosmo) for path, c in zip(paths, configs)]
    os.makedirs(out_dir, exist_ok=True)
    with contextlib.closing(tqdm(total=boxes, desc="boxes", unit="box", disable=not progress)) as bar:
        for i, path, box_config, complete in zip(indices, paths, configs, done):
            if not complete:
                snapshots = os.path.join(out_dir, "snapshots", f"box_{i:04d}") if keep_snapshots else None
                write_simulated_pair(path, box_config, cosmo, keep_snapshots_dir=snapshots,
                                     progress=progress)
            bar.update()
    return sum(done)


@contextlib.contextmanager
def _step_bar(desc, steps, enabled):
    """Yield a PM step callback that advances a tqdm bar over ``steps`` (None if not ``enabled``)."""
    if not enabled:
        yield None
        return
    with tqdm(total=steps, desc=desc, leave=False, unit="step") as bar:
        def callback(info):
            bar.set_postfix(a=f"{info['a']:.3f}", refresh=False)
            bar.update()
        yield callback


def pair_complete(path, config, cosmo):
    """True if ``path`` is a finished pair file made with ``config`` and ``cosmo``; False if it
    does not exist. A file made with other settings raises InputError (refuse to mix runs)."""
    if not os.path.exists(path):
        return False
    with open_h5(path) as f:
        stored = {k: f.attrs[k] for k in f.attrs}
    wanted = asdict(config)
    stored_cosmo = json.loads(stored.get("cosmology", "{}"))
    different = [k for k, v in wanted.items() if k not in stored or not _same(stored[k], v)]
    different += [f"cosmology.{k}" for k, v in cosmo.to_dict().items()
                  if not _same(stored_cosmo.get(k, math.nan), v)]
    if different:
        raise InputError(path, f"exists but was made with other settings ({', '.join(different)}); "
                               "remove it or pass --force to overwrite")
    return True


def _same(stored, wanted):
    return bool(np.isclose(float(stored), float(wanted), rtol=1e-12, atol=0))
