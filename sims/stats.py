"""Fourier statistics of periodic cubic fields: auto and cross power spectra, r(k), transfer
function, and the shell binning they share.

Convention (DESIGN.md, REFERENCE.md; that of Pylians3 ``Pk_library``, nbodykit ``FFTPower`` and
powerbox >= 1.0): with the unnormalised forward FFT ``d(n) = rfftn(delta)(n)`` of an n^3 grid of
side L [Mpc/h],

    P(k) = L^3 / n^6 < |d(n)|^2 >_bin                                      [(Mpc/h)^3]

averaged over the modes of a shell. Shells are integer bins j <= |n| < j + 1 (width k_F = 2 pi / L,
starting at k_F; the DC mode is dropped) out to the corner of the grid (|n| = sqrt(3) n / 2); the
reported k is the mean |k| of the modes in the shell and mode counts are full-space counts (rfft
modes weighted 1 on the kz = 0 and kz = n/2 planes, 2 elsewhere). Nyquist planes are kept; shells
beyond k_Nyq = pi n / L are reported but are incomplete and aliased, so summaries should use
``k < k_nyq`` only. An optional mass-assignment window W = prod_i sinc^p(pi n_i / n) (NGP p = 1,
CIC 2, TSC 3; Hockney & Eastwood 1981, Jing 2005 eq. 18 without the alias sum) is divided out.
"""
import functools
from dataclasses import dataclass

import numpy as np

from sims import fft
from sims.errors import InputError

MAS_CHOICES = (None, "ngp", "cic", "tsc")


@dataclass(frozen=True)
class Spectrum:
    """A binned power spectrum: ``k`` [h/Mpc] (mean |k| of the shell), ``power`` [(Mpc/h)^3],
    ``nmodes`` (full-space mode count of the shell), all of one length."""

    k: np.ndarray
    power: np.ndarray
    nmodes: np.ndarray


def k_nyquist(n, box_size):
    """Nyquist wavenumber pi n / L [h/Mpc] of an n^3 grid of side ``box_size`` [Mpc/h]."""
    return np.pi * n / box_size


def check_field(field, source="field"):
    """Return ``field`` as a float array after checking it is a finite cubic 3D array.

    Raises :class:`InputError` naming ``source`` otherwise.
    """
    field = np.asarray(field)
    if field.ndim != 3 or len(set(field.shape)) != 1:
        raise InputError(source, f"field must be a cubic 3D array, got shape {field.shape}")
    if field.shape[0] < 2:
        raise InputError(source, f"field must have at least 2 cells per side, got {field.shape}")
    if not np.issubdtype(field.dtype, np.floating):
        field = field.astype(np.float32)
    if not np.all(np.isfinite(field)):
        raise InputError(source, f"contains {np.count_nonzero(~np.isfinite(field))} NaN/Inf values")
    return field


def check_box_size(box_size, source="box_size"):
    """Return ``box_size`` [Mpc/h] as a float after checking it is finite and positive."""
    box_size = float(box_size)
    if not np.isfinite(box_size) or box_size <= 0:
        raise InputError(source, f"box size must be a positive number of Mpc/h, got {box_size}")
    return box_size


def check_mas(mas, source="mas"):
    """Return ``mas`` (None or one of 'ngp', 'cic', 'tsc'; 'none' means None)."""
    mas = None if mas in (None, "none") else str(mas).lower()
    if mas not in MAS_CHOICES:
        raise InputError(source, f"mass assignment must be one of none, ngp, cic, tsc; got {mas!r}")
    return mas


@functools.lru_cache(maxsize=8)
def shells(n):
    """Integer shell index floor(|n|) of every rfft mode of an n^3 grid and per-shell totals.

    Returns ``(index, nmodes, mean_n)``: ``index`` int32 (n * n * (n//2+1),) flattened rfft-grid
    shell numbers (0 = the DC shell, dropped by callers); ``nmodes`` full-space mode count per
    shell (Hermitian weights); ``mean_n`` the mode-weighted mean |n| per shell (in units of k_F).
    Shells from 0 to floor(sqrt(3) n / 2). Cached: the index array of a 256^3 grid is 34 MB.
    """
    nx, ny, nz = (m.astype(np.float32) for m in fft.integer_modes(n))
    norm = np.sqrt(nx ** 2 + ny ** 2 + nz ** 2)
    index = np.floor(norm).astype(np.int32).ravel()
    weights = np.broadcast_to(fft.hermitian_weights(n).astype(np.float32), norm.shape).ravel()
    nmodes = np.bincount(index, weights=weights)
    mean_n = np.bincount(index, weights=weights * norm.ravel()) / np.maximum(nmodes, 1)
    index.flags.writeable = False
    return index, nmodes, mean_n


def bin_modes(values):
    """Full-space sums of an rfft-grid array over the integer shells, DC shell dropped.

    ``values`` (n, n, n//2+1) real; each rfft mode is counted with its Hermitian weight. Returns
    the per-shell sums for shells 1 .. floor(sqrt(3) n / 2) (float64).
    """
    n = values.shape[0]
    index, _, _ = shells(n)
    weighted = values * fft.hermitian_weights(n).astype(values.dtype)
    return np.bincount(index, weights=weighted.ravel(), minlength=len(shells(n)[1]))[1:]


def window(n, mas):
    """Mass-assignment window on the rfft grid (``sims.mesh.window``), or 1 for ``mas=None``."""
    if mas is None:
        return 1.0
    from sims import mesh  # noqa: PLC0415  (sims.mesh lands alongside; see module docstring)
    return mesh.window(n, mas)


def fourier_modes(field, mas=None):
    """Unnormalised rfft of ``field`` with the mass-assignment window ``mas`` divided out."""
    return fft.rfftn(field) / window(field.shape[0], mas)


def _spectrum(product, box_size):
    """Bin an rfft-grid product d1 conj(d2) (real part) into a :class:`Spectrum` (DESIGN.md norm)."""
    n = product.shape[0]
    _, nmodes, mean_n = shells(n)
    k_f = 2 * np.pi / box_size
    power = bin_modes(product) / nmodes[1:] * box_size ** 3 / float(n) ** 6
    return Spectrum(k=k_f * mean_n[1:], power=power, nmodes=nmodes[1:])


def power_spectrum(field, box_size, mas=None):
    """Auto power spectrum P(k) [(Mpc/h)^3] of a cubic periodic field of side ``box_size`` [Mpc/h].

    P(k) = L^3 / n^6 <|d(n) / W(n)|^2> over integer shells (module docstring; REFERENCE.md).
    """
    field = check_field(field)
    box_size = check_box_size(box_size)
    d = fourier_modes(field, check_mas(mas))
    return _spectrum(d.real ** 2 + d.imag ** 2, box_size)


def cross_power(a, b, box_size, mas=None):
    """Cross power P_ab(k) = L^3 / n^6 <Re(d_a conj d_b)> [(Mpc/h)^3] on the shells of
    :func:`power_spectrum`; ``mas`` is the window of both fields."""
    a, b = check_pair(a, b)
    box_size = check_box_size(box_size)
    mas = check_mas(mas)
    da, db = fourier_modes(a, mas), fourier_modes(b, mas)
    return _spectrum(da.real * db.real + da.imag * db.imag, box_size)


def check_pair(a, b, sources=("a", "b")):
    """Check two fields are finite, cubic and of the same shape; return them as arrays."""
    a, b = check_field(a, sources[0]), check_field(b, sources[1])
    if a.shape != b.shape:
        raise InputError(sources[1], f"shape {b.shape} differs from {sources[0]} shape {a.shape}")
    return a, b


def correlation(a, b, box_size, mas=None):
    """Cross-correlation coefficient r(k) = P_ab / sqrt(P_aa P_bb) of the shell-averaged spectra.

    Returns ``(k, r)``; a window common to both fields cancels, so ``mas`` only matters when the
    binned spectra are also used elsewhere. Shells where either auto power vanishes give r = 0.
    """
    a, b = check_pair(a, b)
    box_size = check_box_size(box_size)
    mas = check_mas(mas)
    da, db = fourier_modes(a, mas), fourier_modes(b, mas)
    paa = _spectrum(da.real ** 2 + da.imag ** 2, box_size)
    pbb = _spectrum(db.real ** 2 + db.imag ** 2, box_size).power
    pab = _spectrum(da.real * db.real + da.imag * db.imag, box_size).power
    return paa.k, ratio_r(pab, paa.power, pbb)


def ratio_r(pab, paa, pbb):
    """r = P_ab / sqrt(P_aa P_bb), 0 where the denominator vanishes."""
    denom = np.sqrt(paa * pbb)
    return np.divide(pab, denom, out=np.zeros_like(pab), where=denom > 0)


def transfer_function(pred, truth, box_size, mas=None):
    """Transfer function T(k) = sqrt(P_pred / P_truth) on the shells of :func:`power_spectrum`.

    Returns ``(k, T)``; shells where P_truth vanishes give T = 0.
    """
    pred, truth = check_pair(pred, truth, ("pred", "truth"))
    p_pred = power_spectrum(pred, box_size, mas)
    p_truth = power_spectrum(truth, box_size, mas).power
    ratio = np.divide(p_pred.power, p_truth, out=np.zeros_like(p_truth), where=p_truth > 0)
    return p_pred.k, np.sqrt(ratio)
