"""Statistics of periodic cubic fields: auto and cross power spectra, r(k), transfer function
and the shell binning they share; the linear emulator (LR times a T(k) fitted on training pairs);
spectra of an ensemble of samples against one truth and their calibration; the one-point PDF of
log10(1 + delta); the tile-seam statistic. (The bispectrum is in :mod:`sims.bispectrum`.)

Convention (docs/design.md, docs/reference.md; that of Pylians3 ``Pk_library``, nbodykit ``FFTPower`` and
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

from sims import fft, mesh
from sims.errors import InputError


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
    """Return ``mas``: None (also for 'none') or a key of ``sims.mesh.MAS_ORDER``."""
    mas = None if mas is None or str(mas).lower() == "none" else str(mas).lower()
    if mas is not None and mas not in mesh.MAS_ORDER:
        raise InputError(source, f"mass assignment must be none or one of {', '.join(mesh.MAS_ORDER)}; "
                                 f"got {mas!r}")
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
    for array in (index, nmodes, mean_n):
        array.flags.writeable = False
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


def fourier_modes(field, mas=None):
    """Unnormalised rfft of ``field`` with the mass-assignment window ``sims.mesh.window`` of
    scheme ``mas`` divided out (no division for ``mas=None``); complex64 for float32 input.
    The window is divided out factor by factor (``sims.mesh.window_factors``, in the spectrum's
    precision), so no n^3 window array is built."""
    d = fft.rfftn(field)
    if mas is not None:
        for factor in mesh.window_factors(field.shape[0], mas):
            d /= factor.astype(d.real.dtype)
    return d


def _spectrum(product, box_size):
    """Bin an rfft-grid product d1 conj(d2) (real part) into a :class:`Spectrum` (the module's
    normalisation)."""
    n = product.shape[0]
    _, nmodes, mean_n = shells(n)
    k_f = 2 * np.pi / box_size
    power = bin_modes(product) / nmodes[1:] * box_size ** 3 / float(n) ** 6
    return Spectrum(k=k_f * mean_n[1:], power=power, nmodes=nmodes[1:].copy())


def power_spectrum(field, box_size, mas=None):
    """Auto power spectrum P(k) [(Mpc/h)^3] of a cubic periodic field of side ``box_size`` [Mpc/h].

    P(k) = L^3 / n^6 <|d(n) / W(n)|^2> over integer shells (module docstring; docs/reference.md).
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


def power_ratio(power, power_truth, fill=np.nan):
    """P / P_truth per shell of two spectra on the same shells; ``fill`` where P_truth vanishes."""
    power, power_truth = np.asarray(power, dtype=float), np.asarray(power_truth, dtype=float)
    return np.divide(power, power_truth, out=np.full_like(power_truth, fill), where=power_truth > 0)


def transfer_function(power, power_truth, fill=np.nan):
    """Transfer function T(k) = sqrt(P / P_truth) of two spectra on the same shells (e.g. the
    ``power`` of two :func:`power_spectrum` results); ``fill`` where P_truth vanishes."""
    return np.sqrt(power_ratio(power, power_truth, fill))


def band_figures(k, k_max, pk_ratio, r=None, r_reference=None):
    """Summary of a prediction against the truth over the shells with k < ``k_max`` [h/Mpc].

    ``pk_ratio``: P / P_truth per shell; ``r``: optionally the prediction's r(k) with the truth;
    ``r_reference``: with ``r``, optionally another predictor's r(k) (e.g. the LR's). NaN (or
    None) entries are ignored. Returns None when no shell lies below ``k_max``, else a dict:
    ``pk_ratio_mean``, ``pk_ratio_maxdev`` = max |P / P_truth - 1|; with ``r``, ``r_mean`` and
    ``r_min``; with ``r_reference``, ``r_reference_mean`` and ``r_gap_min`` = min (r - r_reference).
    """
    band = np.asarray(k, dtype=float) < k_max
    if not band.any():
        return None
    ratio = np.asarray(pk_ratio, dtype=float)[band]
    figures = {"pk_ratio_mean": float(np.nanmean(ratio)), "pk_ratio_maxdev": float(np.nanmax(np.abs(ratio - 1)))}
    if r is not None:
        r = np.asarray(r, dtype=float)[band]
        figures.update(r_mean=float(np.nanmean(r)), r_min=float(np.nanmin(r)))
    if r_reference is not None:
        reference = np.asarray(r_reference, dtype=float)[band]
        figures.update(r_reference_mean=float(np.nanmean(reference)), r_gap_min=float(np.nanmin(r - reference)))
    return figures


def fit_transfer(pairs, box_size, mas=None):
    """Transfer function from a predictor to the truth, fitted on training pairs (that of the
    linear emulator when the predictor is the LR).

    ``pairs``: a non-empty iterable of ``(predicted, truth)`` overdensities, e.g. ``(lr, hr)``,
    every field on one cubic grid of side ``box_size`` [Mpc/h] (LR already on the HR grid).
    Returns ``(k, T)`` float64 on the shells of :func:`power_spectrum`: ``k`` [h/Mpc] and
    T(k) = sqrt(sum_i P_truth,i / sum_i P_predicted,i); shells where the summed predicted power
    vanishes give T = 0.
    """
    box_size = check_box_size(box_size)
    mas = check_mas(mas)
    p_predicted = p_truth = 0.0
    shape = None
    for i, (predicted, truth) in enumerate(pairs):
        predicted, truth = check_pair(predicted, truth, (f"pairs[{i}] predicted", f"pairs[{i}] truth"))
        if shape is not None and predicted.shape != shape:
            raise InputError(f"pairs[{i}]", f"grid {predicted.shape} differs from that of pairs[0], {shape}")
        shape = predicted.shape
        spectrum = power_spectrum(predicted, box_size, mas)
        p_predicted = p_predicted + spectrum.power
        p_truth = p_truth + power_spectrum(truth, box_size, mas).power
    if shape is None:
        raise InputError("pairs", "need at least one (predicted, truth) pair to fit T(k)")
    return spectrum.k, transfer_function(p_truth, p_predicted, fill=0.0)


def apply_transfer(field, box_size, k, t, keep_mass=False):
    """``field`` (an overdensity on a cubic grid of side ``box_size`` [Mpc/h]; the LR on the
    output grid for the linear emulator) with every Fourier mode multiplied by T(|k|), returned
    as float32.

    T is interpolated linearly in |k| [h/Mpc] between the points ``(k, t)`` (increasing ``k``,
    ``t`` >= 0, e.g. from :func:`fit_transfer`) and held constant beyond their ends; the
    k = 0 mode is multiplied by 1, so the mean is kept. The result is then clipped at delta = -1
    (no negative densities), which raises the mean by the clipped amount (``keep_mass``: taken
    back from the underdense voxels instead, :func:`clip_keeping_mass`).
    """
    field = check_field(field)
    box_size = check_box_size(box_size)
    k, t = np.asarray(k, dtype=np.float64), np.asarray(t, dtype=np.float64)
    if k.ndim != 1 or k.shape != t.shape or k.size == 0:
        raise InputError("transfer", f"k and t must be 1D arrays of one length, got shapes "
                                        f"{k.shape} and {t.shape}")
    if not (np.all(np.isfinite(k)) and np.all(np.diff(k) > 0)
            and np.all(np.isfinite(t)) and np.all(t >= 0)):
        raise InputError("transfer", "k must be finite and increasing, t finite and >= 0")
    kx, ky, kz = (c.astype(np.float32) for c in fft.wavenumbers(field.shape[0], box_size))
    d = fft.rfftn(field)
    # d_T(k) = T(|k|) d_LR(k), T(0) = 1.
    gain = np.interp(np.sqrt(kx ** 2 + ky ** 2 + kz ** 2), k, t).astype(d.real.dtype)
    gain[0, 0, 0] = 1
    d *= gain
    out = fft.irfftn(d, field.shape).astype(np.float32, copy=False)
    return clip_keeping_mass(out) if keep_mass else np.maximum(out, -1, out=out)


def corner_transfer(k, t, k_nyq):
    """A fitted transfer function kept only as a damping of the grid's corner shells.

    ``(k, t)``: points of T(k) (k [h/Mpc] increasing, e.g. from :func:`fit_transfer` of a model's
    output against the truth); ``k_nyq``: the grid's Nyquist wavenumber [h/Mpc]. Returns ``(k, t)``
    float64 points for :func:`apply_transfer`: (k_nyq, 1), the points beyond k_nyq with T capped
    at 1 and made non-increasing (running minimum), and (sqrt(3) k_nyq, 0): modes up to k_nyq are
    left as they are, none beyond is amplified, and the single mode at the cube's corner (the
    period-2 checkerboard (-1)^(i+j+k), where a CIC-painted truth has almost no power and a
    network's 2x resampling leaves its artifacts) is removed; one mode per box cannot be fitted.
    """
    k, t = np.asarray(k, dtype=np.float64), np.asarray(t, dtype=np.float64)
    k_corner = np.sqrt(3) * k_nyq
    beyond = (k > k_nyq) & (k < k_corner)
    if not beyond.any():
        raise InputError("k", f"no shell lies beyond k_Nyq = {k_nyq:.4g} h/Mpc")
    damping = np.minimum.accumulate(np.clip(t[beyond], 0.0, 1.0))
    return np.concatenate([[k_nyq], k[beyond], [k_corner]]), np.concatenate([[1.0], damping, [0.0]])


def clip_keeping_mass(delta):
    """``delta`` (an overdensity array) clipped at -1 with the matter the clipping adds taken back
    from its other underdense voxels (-1 < delta < 0), in proportion to their 1 + delta: no
    negative density, the same total mass (sum of 1 + delta) unless the underdense voxels hold less
    than the clipping adds (then they are emptied), and every voxel with delta >= 0 unchanged, so
    the dense structures keep their power. float32."""
    delta = np.asarray(delta, dtype=np.float32)
    added = float(np.sum(np.maximum(-1.0 - delta, 0.0), dtype=np.float64))
    out = np.maximum(delta, -1.0)
    if added == 0:
        return out
    voids = (out > -1) & (out < 0)
    held = float(np.sum(1.0 + out[voids], dtype=np.float64))
    keep = max(1.0 - added / held, 0.0) if held > 0 else 1.0
    out[voids] = (1.0 + out[voids]) * keep - 1.0
    return out


def calibrated_mean_r(r_posterior, members):
    """r(k) with the truth of the mean of ``members`` samples of a calibrated sampler whose
    posterior mean correlates with the truth as ``r_posterior`` (array or scalar).

    Calibrated: the truth is t = mu + e with e uncorrelated with the posterior mean mu, and the
    samples are mu + e_i with e_i independent and as strong as e. Then P_mu = rho^2 P_t, each e_i
    carries (1 - rho^2) P_t, and r_K = rho^2 / sqrt(rho^2 + (1 - rho^2) / K): rho^2 for one
    sample, rho for infinitely many (the ensemble-mean correlation of a perfect ensemble,
    Murphy 1990, QJRMS 116, 89). Averaging K calibrated samples that know only what the LR knows
    (rho = r_LR) therefore stays below r_LR by (1 - r_LR) / K to first order in 1 - r_LR.
    """
    if int(members) < 1:
        raise InputError("members", f"need at least one sample, got {members}")
    rho2 = np.square(np.asarray(r_posterior, dtype=float))
    return rho2 / np.sqrt(rho2 + (1 - rho2) / int(members))


@dataclass(frozen=True)
class Ensemble:
    """Spectra of K predicted samples against one truth, on the shells of :func:`power_spectrum`.

    ``k`` [h/Mpc], ``nmodes``, ``pk_truth`` (nbins,), ``pk_samples`` (K, nbins) [(Mpc/h)^3] and
    ``r_samples`` (K, nbins) the cross-correlation coefficient of each sample with the truth.
    ``r_common`` (nbins,): r with the truth of what the samples share, the limit of the mean of
    K -> infinity samples (the sampler's posterior mean), estimated without the finite-K noise:
    with samples s_i = m + e_i, e_i independent of each other and of the truth t,
    <Re s_i conj s_j> (i != j) estimates P_m and <Re s_i conj t> estimates P_mt, so
    r_common = P_mt / sqrt(P_m P_t) (cross-spectra of independent realisations have no noise
    bias: Tristram et al. 2005, MNRAS 358, 833). NaN for K = 1 and where the shared power is <= 0.
    """

    k: np.ndarray
    nmodes: np.ndarray
    pk_truth: np.ndarray
    pk_samples: np.ndarray
    r_samples: np.ndarray
    r_common: np.ndarray

    @property
    def pk_mean(self):
        """Mean of the samples' P(k)."""
        return self.pk_samples.mean(axis=0)

    @property
    def pk_std(self):
        """Sample standard deviation (ddof = 1; 0 for one sample) of the samples' P(k)."""
        if len(self.pk_samples) < 2:
            return np.zeros_like(self.pk_truth)
        return self.pk_samples.std(axis=0, ddof=1)


def ensemble(truth, samples, box_size, mas=None):
    """P(k) of the truth and of each sample, and each sample's r(k) with the truth (:class:`Ensemble`).

    ``samples``: a sequence of fields of the truth's shape. The truth is transformed once and
    each sample once, so memory stays at a few rfft grids whatever K.
    """
    truth = check_field(truth, "truth")
    box_size = check_box_size(box_size)
    mas = check_mas(mas)
    dt = fourier_modes(truth, mas)
    p_truth = _spectrum(dt.real ** 2 + dt.imag ** 2, box_size)
    pk, p_cross, r = [], [], []
    total = np.zeros_like(dt)
    for i, sample in enumerate(samples):
        _, sample = check_pair(truth, sample, ("truth", f"samples[{i}]"))
        ds = fourier_modes(sample, mas)
        total += ds
        pk.append(_spectrum(ds.real ** 2 + ds.imag ** 2, box_size).power)
        p_cross.append(_spectrum(dt.real * ds.real + dt.imag * ds.imag, box_size).power)
        r.append(ratio_r(p_cross[-1], p_truth.power, pk[-1]))
    if not pk:
        raise InputError("samples", "need at least one predicted sample")
    n_samples = len(pk)
    r_common = np.full_like(p_truth.power, np.nan)
    if n_samples >= 2:          # sum over i != j of s_i conj s_j = |sum s|^2 - sum |s|^2
        p_shared = ((_spectrum(total.real ** 2 + total.imag ** 2, box_size).power - np.sum(pk, axis=0))
                    / (n_samples * (n_samples - 1)))
        denom = np.sqrt(np.maximum(p_shared, 0) * p_truth.power)
        np.divide(np.mean(p_cross, axis=0), denom, out=r_common, where=denom > 0)
    return Ensemble(k=p_truth.k, nmodes=p_truth.nmodes, pk_truth=p_truth.power,
                    pk_samples=np.array(pk), r_samples=np.array(r), r_common=r_common)


@dataclass(frozen=True)
class Calibration:
    """Spread of K samples of one truth, per shell of :func:`power_spectrum`.

    ``coverage``: fraction of the truth's Fourier components (real and imaginary parts of every
    mode) that lie within [min, max] of the samples' components. If the truth were one more
    draw from the samples' distribution this would be ``nominal_coverage`` = (K - 1) / (K + 1)
    (the rank of the truth among K + 1 exchangeable draws is uniform), whatever that distribution.
    ``dispersion_ratio``: <|mean sample - truth|^2> / ((1 + 1/K) <|sample - mean|^2> K / (K - 1)),
    which is 1 for exchangeable truth and samples, > 1 for under-dispersed samples (too little
    scatter for their error) and < 1 for over-dispersed ones.
    """

    k: np.ndarray
    nmodes: np.ndarray
    coverage: np.ndarray
    nominal_coverage: float
    dispersion_ratio: np.ndarray


def calibration(samples, truth, box_size, mas=None):
    """:class:`Calibration` of K >= 2 predicted ``samples`` (sequence of fields) of ``truth``.

    Self-conjugate modes (Nyquist corners) have no imaginary part and count as covered there.
    """
    truth = check_field(truth, "truth")
    box_size = check_box_size(box_size)
    mas = check_mas(mas)
    spectra = np.array([fourier_modes(check_pair(truth, s, ("truth", f"samples[{i}]"))[1], mas)
                        for i, s in enumerate(samples)])
    n_samples = len(spectra)
    if n_samples < 2:
        raise InputError("samples", f"calibration needs at least 2 samples, got {n_samples}")
    dt = fourier_modes(truth, mas)
    covered = (_within(spectra.real, dt.real) + _within(spectra.imag, dt.imag)) / np.float32(2)
    mean = spectra.mean(axis=0)
    scatter = sum(np.abs(s - mean) ** 2 for s in spectra) / np.float32(n_samples - 1)
    error, spread = bin_modes(np.abs(mean - dt) ** 2), (1 + 1 / n_samples) * bin_modes(scatter)
    _, nmodes, mean_n = shells(truth.shape[0])
    return Calibration(k=2 * np.pi / box_size * mean_n[1:], nmodes=nmodes[1:].copy(),
                       coverage=bin_modes(covered) / nmodes[1:],
                       nominal_coverage=(n_samples - 1) / (n_samples + 1),
                       dispersion_ratio=np.divide(error, spread, out=np.full_like(error, np.inf),
                                                  where=spread > 0))


def _within(samples, value):
    """1 where ``value`` lies within [min, max] of ``samples`` over axis 0, else 0 (float32)."""
    return ((samples.min(axis=0) <= value) & (value <= samples.max(axis=0))).astype(np.float32)


def log_density(delta, floor=1e-3):
    """log10(1 + delta) with 1 + delta clipped below at ``floor`` so empty cells (delta = -1)
    stay finite: they land at log10(floor) = -3 by default, below any occupied cell of a
    painted grid with fewer than 1000 particles per cell on average."""
    return np.log10(np.maximum(np.asarray(delta, dtype=np.float64) + 1.0, floor))


def pdf(fields, nbins=60, floor=1e-3):
    """One-point PDFs of log10(1 + delta) (:func:`log_density`) of several fields on common bins.

    Returns ``(edges, densities)``: ``edges`` (nbins + 1,) spanning the range of all fields,
    ``densities`` (F, nbins) normalised to unit integral over log10(1 + delta).
    """
    logs = [log_density(check_field(f, f"fields[{i}]"), floor) for i, f in enumerate(fields)]
    lo, hi = min(x.min() for x in logs), max(x.max() for x in logs)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, int(nbins) + 1)
    return edges, np.array([np.histogram(x, bins=edges, density=True)[0] for x in logs])


VOID_MAP_POINTS = 1025
"""Points of a fitted void map (quantiles of the underdense voxels)."""


def fit_void_map(pairs, below=0.0, points=VOID_MAP_POINTS):
    """Quantile map of a predictor's underdense voxels onto the truth's, fitted on training pairs.

    Quantile mapping (Panofsky & Brier 1968; the bias correction of Maraun 2013, J. Climate 26,
    2137, eq. 1): x -> F_truth^-1(F_pred(x)), with F the one-point CDFs of the voxels pooled
    over ``pairs`` (an iterable of (predicted, truth) cubic overdensity fields, a pair's two of
    one shape). Only values below ``below`` are mapped; two factors on 1 + y then tie the map to the
    fields: one makes it end at ``below`` (continuous with the identity above it), one keeps the
    predicted underdense voxels' mass (sum of 1 + delta) over the pairs, so the map moves matter
    within the voids and leaves the dense structures, which hold the power spectrum, as they are.

    Returns ``(x, y)`` float64 points (x increasing, y non-decreasing) for :func:`apply_void_map`.
    """
    predicted, truth = [], []
    for i, (pred, true) in enumerate(pairs):
        pred, true = check_pair(pred, true, (f"pairs[{i}] predicted", f"pairs[{i}] truth"))
        predicted.append(pred.ravel())
        truth.append(true.ravel())
    if not predicted:
        raise InputError("pairs", "need at least one (predicted, truth) pair to fit a void map")
    predicted, truth = np.concatenate(predicted), np.concatenate(truth)
    fraction = float(np.mean(predicted < below))
    if fraction == 0:
        raise InputError("pairs", f"no predicted voxel lies below delta = {below}")
    probabilities = fraction * np.linspace(0.0, 1.0, int(points))
    x, first = np.unique(np.quantile(predicted, probabilities), return_index=True)
    if len(x) < 2:
        raise InputError("pairs", f"the predicted voxels below delta = {below} take a single value")
    y = np.quantile(truth, probabilities)[first]
    y = (1 + y) * (1 + below) / (1 + y[-1]) - 1                 # ends at `below`
    voids = predicted[predicted < below]
    y = (1 + y) * np.sum(1 + voids) / np.sum(1 + np.interp(voids, x, y)) - 1     # void mass kept
    return x, y


def apply_void_map(field, x, y):
    """``field`` (an overdensity array) with its values below x[-1] mapped through the points
    ``(x, y)`` of :func:`fit_void_map` (linear interpolation; y[0] below x[0]) and the others
    unchanged; float32."""
    field = np.asarray(field, dtype=np.float32)
    return np.where(field < x[-1], np.interp(field, x, y), field).astype(np.float32)


@dataclass(frozen=True)
class SeamStatistic:
    """Per axis (x, y, z): ``ratio`` of the mean squared finite difference across tile-boundary
    planes to that across interior planes (1 = no seams) and its 1-sigma ``error``."""

    ratio: np.ndarray
    error: np.ndarray


def seam_statistic(field, core, offset=0):
    """Seam statistic of a periodic field assembled from cubic blocks of side ``core`` cells.

    Block boundaries lie between cells i - 1 and i for i = offset (mod core). For each axis the
    squared difference (f_i - f_{i-1})^2 is averaged over each plane i; the ratio is the mean over
    boundary planes divided by the mean over interior planes. Its error is the scatter of the
    interior plane means divided by sqrt(number of boundary planes), relative to their mean
    (planes one block apart are nearly independent).
    """
    field = check_field(field)
    n = field.shape[0]
    core = int(core)
    if core < 2 or n % core or n // core < 2:
        raise InputError("core", f"block size {core} must be >= 2 and divide the grid size {n} "
                                 "into at least 2 blocks")
    boundary = (np.arange(n) - offset) % core == 0
    ratios, errors = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        planes = np.mean((field - np.roll(field, 1, axis=axis)) ** 2, axis=others, dtype=np.float64)
        interior = planes[~boundary]
        ratios.append(planes[boundary].mean() / interior.mean())
        errors.append(interior.std(ddof=1) / np.sqrt(boundary.sum()) / interior.mean())
    return SeamStatistic(ratio=np.array(ratios), error=np.array(errors))
