"""FastPM particle-mesh N-body solver (Feng et al. 2016, arXiv:1603.00476): kick-drift-kick
leapfrog in the scale factor with growth-exact kick and drift factors.

Variables (H0 = 1, lengths in Mpc/h): comoving positions x [Mpc/h], canonical momenta
p = a^2 dx/dt / H0 [Mpc/h] (peculiar velocity v = 100 p / a km/s), accelerations
F = -grad phi with lap phi = (3/2) Omega_m delta [Mpc/h]; equations of motion

    dx/da = p / (a^3 E(a)),      dp/da = F / (a^2 E(a)).

Growth-exact factors (Feng et al. 2016 sec. 2.3): in linear theory p = G_p(a) Psi and
F = G_f(a) Psi for a fixed Lagrangian displacement Psi, with

    G_p(a) = a^3 E(a) dD1/da = a^2 E(a) f1(a) D1(a),
    G_f(a) = a^2 E(a) dG_p/da = (3/2) Omega_m D1(a)       (from the growth equation),

so a drift from a_i to a_f with p taken at a_c moves x by p (D1(a_f) - D1(a_i)) / G_p(a_c) and a
kick with F taken at a_c changes p by F (G_p(a_f) - G_p(a_i)) / G_f(a_c): both are exact for
linear growth at any step size. Steps are linear in a (the FastPM default); the half-step time of
the leapfrog is the geometric mean sqrt(a_i a_f), as in FastPM.

Force (:func:`accelerations`): CIC paint of the particles on a mesh B times finer than the
particle lattice (n_mesh = B n), delta = rho / mean - 1, potential phi(k) = -(3/2) Omega_m
delta(k) / k^2, the 4-point finite-difference gradient D(k_j) = [8 sin(k_j H) - sin(2 k_j H)] /
(6 H), H = L / n_mesh (Hockney & Eastwood 1988 sec. 7-8; the gradient of FastPM's kernels), so
F_j(k) = -i D(k_j) phi(k), then CIC readout. D vanishes on the Nyquist planes, which makes the
force of the unperturbed lattice exactly zero. The CIC window is not divided out (FastPM's
default kernels do not): dividing by W^2 (FastPM's "gadget" kernel) amplifies the mesh-scale
images of the particle lattice, which alias back onto the largest scales through the readout at
the particle positions.
Linear growth on the lattice is then exact up to the discreteness corrections of order
(k / k_Nyq,particles)^2, largest for modes along the axes (Joyce & Marcos 2007,
arXiv:0704.3697). The correction grows with k: a B = 2 mesh holds the first images of the
lattice's density (k minus twice the particle Nyquist), whose force adds to the mode's, so
while the particles are near their lattice the modes outgrow linear theory, whereas a B = 4 mesh
follows it closely below k_Nyq / 4. Hence, started early, B = 4 ends with a little less power
than B = 2 at intermediate k. docs/simulator.md has the measurements; tests/test_pm.py bounds
them.
FFTs through :mod:`sims.fft` (threaded pyfftw, plans reused).
"""
import functools
from dataclasses import dataclass

import numpy as np

from sims import fft, mesh
from sims.cosmology import D1, E, f1
from sims.errors import InputError
from sims.ics import check_grid


@dataclass(frozen=True)
class PMConfig:
    """One PM run: ``n_particles`` per side (lattice n^3), ``box_size`` [Mpc/h], force mesh
    ``B`` times finer than the lattice, ``steps`` KDK steps linear in a from ``a_init`` to
    ``a_final``. Invalid values raise :class:`~sims.errors.InputError` naming the field."""

    n_particles: int
    box_size: float
    B: int = 2
    steps: int = 10
    a_init: float = 0.02
    a_final: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "n_particles", check_grid(self.n_particles, "n_particles"))
        for name in ("B", "steps"):
            object.__setattr__(self, name, as_int(name, getattr(self, name)))
        for name in ("box_size", "a_init", "a_final"):
            object.__setattr__(self, name, float(getattr(self, name)))
        checks = (
            ("box_size", np.isfinite(self.box_size) and self.box_size > 0, "must be > 0 [Mpc/h]"),
            ("B", self.B >= 1, "force mesh factor must be >= 1"),
            ("steps", self.steps >= 1, "must be >= 1"),
            ("a_init", 0 < self.a_init < self.a_final, "must be in (0, a_final)"),
            ("a_final", self.a_final <= 100, "must be <= 100"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise InputError(name, f"{rule}, got {getattr(self, name)}")

    @property
    def n_mesh(self):
        """Force mesh cells per side, B * n_particles."""
        return self.B * self.n_particles

    def time_steps(self):
        """Scale factors a_0 = a_init, ..., a_steps = a_final, linear in a; (steps + 1,)."""
        return np.linspace(self.a_init, self.a_final, self.steps + 1)


def as_int(name, value):
    """``value`` as an int if it is integral (not a bool); InputError(name) otherwise."""
    if isinstance(value, bool) or not float(value).is_integer():
        raise InputError(name, f"must be an integer, got {value!r}")
    return int(value)


def G_p(cosmo, a):
    """Momentum growth G_p = a^3 E dD1/da = a^2 E f1 D1 [linear p per unit displacement]."""
    return a ** 2 * E(cosmo, a) * f1(cosmo, a) * D1(cosmo, a)


def G_f(cosmo, a):
    """Force growth G_f = a^2 E dG_p/da = (3/2) Omega_m D1(a) (module docstring)."""
    return 1.5 * cosmo.Omega_m * D1(cosmo, a)


def drift_factor(cosmo, a_i, a_c, a_f):
    """Delta x / p for a drift a_i -> a_f with momenta at a_c: (D1(a_f) - D1(a_i)) / G_p(a_c)."""
    return float((D1(cosmo, a_f) - D1(cosmo, a_i)) / G_p(cosmo, a_c))


def kick_factor(cosmo, a_i, a_c, a_f):
    """Delta p / F for a kick a_i -> a_f with forces at a_c: (G_p(a_f) - G_p(a_i)) / G_f(a_c)."""
    return float((G_p(cosmo, a_f) - G_p(cosmo, a_i)) / G_f(cosmo, a_c))


@functools.lru_cache(maxsize=4)
def force_kernels(n_mesh, box_size):
    """The factors of F_j(k) = -i D(k_j) phi(k), phi(k) = -1.5 Omega_m delta(k) / k^2.

    Returns ``(green, gradients)``: ``green`` = 1 / k^2 [(Mpc/h)^2], float32 (n, n, n//2+1),
    0 at k = 0; ``gradients``: three broadcastable complex64 arrays i D(k_j) [h/Mpc] (module
    docstring), zero on the Nyquist planes, so F_j(k) = 1.5 Omega_m gradients[j] green delta(k).
    Cached per mesh.
    """
    kx, ky, kz = fft.wavenumbers(n_mesh, box_size)
    k2 = kx ** 2 + ky ** 2 + kz ** 2
    k2[0, 0, 0] = np.inf
    H = box_size / n_mesh
    gradients = tuple((1j * (8 * np.sin(k * H) - np.sin(2 * k * H)) / (6 * H)).astype(np.complex64)
                      for k in (kx, ky, kz))
    return (1.0 / k2).astype(np.float32), gradients


def accelerations(positions, n_mesh, box_size, Omega_m):
    """PM accelerations F = -grad phi, lap phi = 1.5 Omega_m delta [Mpc/h, H0 = 1], float32 (N, 3).

    ``positions`` (N, 3) [Mpc/h] of equal-mass particles, CIC-painted on an ``n_mesh``^3 grid;
    kernel in the module docstring. The mass grid m relates to delta = m n_mesh^3 / N - 1; the
    factor n_mesh^3 / N is folded into the kernel and the -1 only touches k = 0, which the
    Green's function zeroes.
    """
    mass_k = fft.rfftn(mesh.paint(positions, n_mesh, box_size, mas="cic"))
    green, gradients = force_kernels(n_mesh, box_size)
    mass_k *= green
    scale = np.float32(1.5 * Omega_m * n_mesh ** 3 / len(positions))
    acc = np.empty((3, len(positions)), np.float32)
    for j, gradient in enumerate(gradients):
        force = fft.irfftn(mass_k * (scale * gradient), (n_mesh,) * 3)
        mesh.readout(force, positions, box_size, mas="cic", out=acc[j])
    return acc.T


def evolve(positions, momenta, config, cosmo, callback=None):
    """Evolve particles from ``config.a_init`` to ``config.a_final`` with FastPM KDK steps.

    ``positions``, ``momenta``: (N, 3) [Mpc/h] at a_init (e.g. from :func:`sims.lpt.lpt_state`);
    not modified. Each step a_i -> a_f: kick a_i -> a_h = sqrt(a_i a_f) with F(a_i), drift
    a_i -> a_f with p(a_h), force at a_f, kick a_h -> a_f with F(a_f). ``callback(info)`` is
    called after every step with a dict ``step`` (1-based), ``steps``, ``a``, ``positions`` and
    ``momenta`` (the arrays being evolved: read, do not modify). Returns new float64 arrays
    (positions wrapped into [0, L), momenta).
    """
    L, n_mesh = config.box_size, config.n_mesh
    x = np.mod(np.asarray(positions, dtype=np.float64), L)
    p = np.array(momenta, dtype=np.float64)
    acc = accelerations(x, n_mesh, L, cosmo.Omega_m)
    a = config.time_steps()
    for step, (a_i, a_f) in enumerate(zip(a[:-1], a[1:]), start=1):
        a_h = np.sqrt(a_i * a_f)
        p += kick_factor(cosmo, a_i, a_i, a_h) * acc
        x += drift_factor(cosmo, a_i, a_h, a_f) * p
        np.mod(x, L, out=x)
        acc = accelerations(x, n_mesh, L, cosmo.Omega_m)
        p += kick_factor(cosmo, a_h, a_f, a_f) * acc
        if callback is not None:
            callback({"step": step, "steps": config.steps, "a": float(a_f), "positions": x,
                      "momenta": p})
    return x, p
