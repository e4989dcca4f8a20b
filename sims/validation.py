"""The validation report of predicted (emulated) fields against a truth: a JSON-ready dict of
power spectra, r(k), transfer function, one-point PDF, reduced bispectrum Q(theta), and, where
asked for, seam statistics, calibration over samples and the low-resolution input's spectra.

All statistics come from :mod:`sims.stats` and :mod:`sims.bispectrum` (conventions there).
Spectra are reported on every integer shell up to the grid corner; ``k_nyquist`` is in the
report, and the summary uses only k < k_Nyq (or < k_Nyq / 2).
"""
import json
import math
import os

import numpy as np

from sims import bispectrum, mesh, plots, stats
from sims.errors import InputError
from sims.h5io import FieldSpec, open_h5, read_field

N_THETA = 9


def validate_fields(truth, preds, box_size, lr=None, mas=None, core=None):
    """Validation report (dict of plain Python values, NaN/Inf as None) of ``preds`` against ``truth``.

    truth: (n, n, n) overdensity; preds: a sequence of (n, n, n) samples, a (K, n, n, n) array
    or one (n, n, n) array; box_size [Mpc/h]; lr: optional low-resolution overdensity of the same
    box on any cubic grid (Fourier-resampled to n^3 with ``sims.mesh.resample``); mas: window to
    deconvolve from every field (None, 'ngp', 'cic', 'tsc'); core: tile core size in cells for
    the seam statistic. Keys: see :func:`_spectra_section` and the issue's list; calibration is
    added for K >= 2 samples, ``seam`` when ``core`` is given, ``pk_lr``/``r_lr`` with ``lr``.
    """
    truth = stats.check_field(truth, "truth")
    samples = _as_samples(preds, truth.shape)
    box_size = stats.check_box_size(box_size)
    mas = stats.check_mas(mas)
    report = {"box_size": box_size, "ngrid": truth.shape[0], "n_samples": len(samples),
              "mas": mas or "none", "k_nyquist": stats.k_nyquist(truth.shape[0], box_size)}
    report.update(_spectra_section(truth, samples, box_size, mas))
    report.update(_pdf_section(truth, samples, lr))
    report["bispectrum"] = _bispectrum_section(truth, samples, box_size, mas)
    if lr is not None:
        report.update(_lr_section(truth, lr, box_size, mas))
    if core is not None:
        report["seam"] = _seam_section(truth, samples, core)
    if len(samples) >= 2:
        report["calibration"] = _calibration_section(truth, samples, box_size, mas)
    report["summary"] = _summary(report)
    return jsonable(report)


def validate_files(truth_spec, pred_specs, out_dir, lr_spec=None, mas=None, core=None):
    """Read the fields, build the report, write the plots and ``out_dir/report.json``; return the report.

    Specs are ``FILE[:DATASET]`` (defaults: truth 'hr', predictions 'sr', LR 'lr'); a (K, n, n, n)
    prediction dataset counts as K samples. All input is read and checked before anything is
    written; report.json is written last and atomically, so its presence means a complete run.
    """
    truth, preds, lr = read_inputs(truth_spec, pred_specs, lr_spec)
    lr_data = None if lr is None else lr.data
    report = validate_fields(truth.data, [p.data for p in preds], truth.box_size, lr=lr_data, mas=mas, core=core)
    report["sources"] = {"truth": truth.source, "pred": [p.source for p in preds],
                         "lr": None if lr is None else lr.source}
    os.makedirs(out_dir, exist_ok=True)
    plots.write_plots(report, truth.data, preds[0].data, out_dir, lr=lr_data)
    write_report(report, os.path.join(out_dir, "report.json"))
    return report


def read_inputs(truth_spec, pred_specs, lr_spec=None):
    """Read truth, every predicted sample and the optional LR field; check they fit together.

    Returns ``(truth, preds, lr)`` as :class:`sims.h5io.Field` (``preds`` a list, ``lr`` None if not
    given). Raises InputError naming the file for missing files or datasets, NaN/Inf, non-cubic
    fields, a prediction whose grid differs from the truth's, or box sizes that differ.
    """
    truth = read_field(truth_spec, default_dataset="hr")
    preds = [sample for spec in pred_specs for sample in _read_samples(spec)]
    lr = None if lr_spec is None else read_field(lr_spec, default_dataset="lr")
    for field in preds + ([lr] if lr is not None else []):
        if abs(field.box_size / truth.box_size - 1) > 1e-6:
            raise InputError(field.source, f"box size {field.box_size} Mpc/h differs from the truth's "
                                           f"{truth.box_size} Mpc/h ({truth.source})")
    for field in preds:
        if field.data.shape != truth.data.shape:
            raise InputError(field.source, f"grid {field.data.shape} differs from the truth's "
                                           f"{truth.data.shape} ({truth.source})")
    return truth, preds, lr


def _read_samples(spec_text):
    """The fields of one prediction spec: one, or K from a (K, n, n, n) dataset."""
    spec = FieldSpec.parse(spec_text, "sr")
    with open_h5(spec.path) as f:
        shape = f[spec.dataset].shape if spec.dataset in f else None
    if shape is None or len(shape) != 4:
        return [read_field(spec)]
    return [read_field(spec, index=i) for i in range(shape[0])]


def _as_samples(preds, shape):
    """The predicted samples as a list of checked (n, n, n) arrays of the truth's shape."""
    if isinstance(preds, np.ndarray) and preds.ndim == 3:
        preds = [preds]
    samples = [stats.check_field(p, f"preds[{i}]") for i, p in enumerate(preds)]
    if not samples:
        raise InputError("preds", "need at least one predicted field")
    for i, sample in enumerate(samples):
        if sample.shape != shape:
            raise InputError(f"preds[{i}]", f"shape {sample.shape} differs from the truth's {shape}")
    return samples


def _spectra_section(truth, samples, box_size, mas):
    """k, nmodes, pk_truth, pk_pred (mean over samples), pk_pred_std, pk_ratio, r (mean of the
    samples' r with the truth), r_std, transfer sqrt(pk_pred / pk_truth)."""
    ens = stats.ensemble(truth, samples, box_size, mas)
    ratio = np.divide(ens.pk_mean, ens.pk_truth, out=np.full_like(ens.pk_truth, np.nan),
                      where=ens.pk_truth > 0)
    return {"k": ens.k, "nmodes": ens.nmodes, "pk_truth": ens.pk_truth, "pk_pred": ens.pk_mean,
            "pk_pred_std": ens.pk_std, "pk_pred_samples": ens.pk_samples, "pk_ratio": ratio,
            "r": ens.r_samples.mean(axis=0), "r_std": ens.r_samples.std(axis=0),
            "transfer": np.sqrt(ratio)}


def _pdf_section(truth, samples, lr):
    """PDFs of log10(1 + delta) on common bins: truth, mean over samples (and LR)."""
    fields = [truth, *samples] + ([lr] if lr is not None else [])
    edges, dens = stats.pdf(fields)
    section = {"pdf_bins": edges, "pdf_truth": dens[0], "pdf_pred": dens[1:1 + len(samples)].mean(axis=0)}
    if lr is not None:
        section["pdf_lr"] = dens[-1]
    return section


def bispectrum_configuration(n, box_size):
    """Default Q(theta) triangle: k1 = max(2, n/16) k_F, k2 = 2 k1, N_THETA angles in [0, pi]
    (k3 from 3 k1 down to k1, below k_Nyq for n >= 16)."""
    k_f = 2 * np.pi / box_size
    k1 = max(2, round(n / 16)) * k_f
    return k1, 2 * k1, np.linspace(0.0, np.pi, N_THETA)


def _bispectrum_section(truth, samples, box_size, mas):
    k1, k2, theta = bispectrum_configuration(truth.shape[0], box_size)
    res = bispectrum.bispectrum_theta([truth, *samples], box_size, k1, k2, theta, mas)
    return {"k1": k1, "k2": k2, "theta": theta, "k3": res.k3, "ntriangles": res.ntriangles,
            "Q_truth": res.Q[0], "Q_pred": res.Q[1:].mean(axis=0), "Q_pred_std": res.Q[1:].std(axis=0),
            "B_truth": res.B[0], "B_pred": res.B[1:].mean(axis=0)}


def _lr_section(truth, lr, box_size, mas):
    """P(k) of the LR field and its r(k) with the truth, up to the LR grid's Nyquist (NaN above)."""
    lr = stats.check_field(lr, "lr")
    n_lr, n = lr.shape[0], truth.shape[0]
    on_grid = lr if n_lr == n else mesh.resample(lr, n)
    ens = stats.ensemble(truth, [on_grid], box_size, mas)
    beyond = ens.k >= stats.k_nyquist(min(n_lr, n), box_size)
    return {"ngrid_lr": n_lr, "pk_lr": np.where(beyond, np.nan, ens.pk_samples[0]),
            "r_lr": np.where(beyond, np.nan, ens.r_samples[0])}


def _seam_section(truth, samples, core):
    """Seam ratio per axis for each sample, their mean, and the truth's own as the reference."""
    per_sample = [stats.seam_statistic(s, core) for s in samples]
    reference = stats.seam_statistic(truth, core)
    return {"core": int(core), "ratio": np.mean([s.ratio for s in per_sample], axis=0),
            "error": np.mean([s.error for s in per_sample], axis=0) / np.sqrt(len(per_sample)),
            "ratio_samples": [s.ratio for s in per_sample], "ratio_truth": reference.ratio,
            "error_truth": reference.error}


def _calibration_section(truth, samples, box_size, mas):
    cal = stats.calibration(samples, truth, box_size, mas)
    below = cal.k < stats.k_nyquist(truth.shape[0], box_size)
    return {"k": cal.k, "coverage": cal.coverage, "nominal_coverage": cal.nominal_coverage,
            "dispersion_ratio": cal.dispersion_ratio,
            "mean_coverage_nyq": np.average(cal.coverage[below], weights=cal.nmodes[below]),
            "mean_dispersion_ratio_nyq": np.average(cal.dispersion_ratio[below], weights=cal.nmodes[below])}


def _summary(report):
    """Scalar figures of merit over k < k_Nyq / 2 and k < k_Nyq."""
    k, k_nyq = np.asarray(report["k"]), report["k_nyquist"]
    dev, r = np.abs(np.asarray(report["pk_ratio"]) - 1), np.asarray(report["r"])
    half, full = k < k_nyq / 2, k < k_nyq
    summary = {"max_abs_pk_ratio_dev_half_nyq": np.nanmax(dev[half]),
               "max_abs_pk_ratio_dev_nyq": np.nanmax(dev[full]),
               "min_r_half_nyq": r[half].min(), "min_r_nyq": r[full].min(),
               "n_samples": report["n_samples"]}
    if "seam" in report:
        summary["max_seam_ratio"] = max(report["seam"]["ratio"])
    if "calibration" in report:
        cal = report["calibration"]
        summary["mean_coverage_nyq"] = cal["mean_coverage_nyq"]
        summary["nominal_coverage"] = cal["nominal_coverage"]
    return summary


def jsonable(value):
    """Plain Python copy of nested dicts/lists/arrays with NaN and Inf replaced by None."""
    if isinstance(value, dict):
        return {key: jsonable(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(report, path):
    """Write ``report`` as JSON to ``path`` atomically (temporary name, then rename)."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1, allow_nan=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def summary_table(report, rows=8):
    """A short text table: P(k) of truth and prediction, their ratio and r at ``rows`` values of
    k below k_Nyq, then the summary figures."""
    k = np.array(report["k"], dtype=float)
    below = np.flatnonzero(k < report["k_nyquist"])
    picks = below[np.unique(np.linspace(0, len(below) - 1, rows).round().astype(int))]
    lines = [f"box {report['box_size']:g} Mpc/h, grid {report['ngrid']}^3, {report['n_samples']} sample(s), "
             f"mas {report['mas']}",
             f"{'k [h/Mpc]':>10} {'P_truth':>11} {'P_pred':>11} {'ratio':>7} {'r':>7}"]
    for i in picks:
        ratio = report["pk_ratio"][i]
        lines.append(f"{k[i]:10.4f} {report['pk_truth'][i]:11.4g} {report['pk_pred'][i]:11.4g} "
                     f"{'nan' if ratio is None else format(ratio, '.3f'):>7} {report['r'][i]:7.3f}")
    lines += [f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}"
              for key, value in report["summary"].items()]
    return "\n".join(lines)
