"""The validation report of predicted (emulated) fields against a truth: a JSON-ready dict of
power spectra, r(k), transfer function, one-point PDF, reduced bispectrum Q(theta), and, where
asked for, seam statistics, calibration over samples, the low-resolution input's spectra and the
same figures for two trivial predictors of the truth: the LR as it is and the LR times a T(k)
fitted on training pairs (the linear emulator).

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
from sims.h5io import FieldSpec, field_dataset, open_h5, read_field
from sims.outputs import write_text

N_THETA = 9


def validate_fields(truth, preds, box_size, lr=None, mas=None, core=None, lr_transfer=None):
    """Validation report (dict of plain Python values, NaN/Inf as None) of ``preds`` against ``truth``.

    truth: (n, n, n) overdensity; preds: a sequence of (n, n, n) samples, a (K, n, n, n) array
    or one (n, n, n) array; box_size [Mpc/h]; lr: optional low-resolution overdensity of the same
    box on any cubic grid (Fourier-resampled to n^3 with ``sims.mesh.resample``); mas: window to
    deconvolve from every field (None, 'ngp', 'cic', 'tsc'); core: tile core size in cells for
    the seam statistic; lr_transfer: with ``lr``, None or the linear emulator's T(k) as
    ``{"k": [h/Mpc], "t": [...]}`` (optionally ``"source"``: where it was fitted), fitted on
    training pairs (:func:`sims.stats.fit_transfer`). Keys: those of the sections below
    (:func:`_spectra_section`, ...); calibration is added for K >= 2 samples, ``seam`` when ``core`` is given,
    ``pk_lr``/``r_lr`` and ``baselines`` (:func:`_lr_section`) with ``lr``.
    """
    truth = stats.check_field(truth, "truth")
    if lr_transfer is not None and lr is None:
        raise InputError("lr_transfer", "the LR x T(k) baseline needs the LR field")
    samples = _as_samples(preds, truth.shape)
    box_size = stats.check_box_size(box_size)
    mas = stats.check_mas(mas)
    report = {"box_size": box_size, "ngrid": truth.shape[0], "n_samples": len(samples),
              "mas": mas or "none", "k_nyquist": stats.k_nyquist(truth.shape[0], box_size)}
    report.update(_spectra_section(truth, samples, box_size, mas))
    report.update(_pdf_section(truth, samples, lr))
    report["bispectrum"] = _bispectrum_section(truth, samples, box_size, mas)
    if lr is not None:
        report.update(_lr_section(truth, lr, box_size, mas, lr_transfer))
    if core is not None:
        report["seam"] = _seam_section(truth, samples, core)
    if len(samples) >= 2:
        report["calibration"] = _calibration_section(truth, samples, box_size, mas)
    report["summary"] = _summary(report)
    return jsonable(report)


def validate_files(truth_spec, pred_specs, out_dir, lr_spec=None, mas=None, core=None,
                   lr_transfer=None):
    """Read the fields, build the report, write the plots and ``out_dir/report.json``; return the report.

    Specs are ``FILE[:DATASET]`` (defaults: truth 'hr', predictions 'sr', LR 'lr'); a (K, n, n, n)
    prediction dataset counts as K samples; ``lr_transfer`` as in :func:`validate_fields`. All
    input is read and checked before anything is written; report.json is written last and
    atomically, so its presence means a complete run.
    """
    truth, preds, lr = read_inputs(truth_spec, pred_specs, lr_spec)
    lr_data = None if lr is None else lr.data
    report = validate_fields(truth.data, [p.data for p in preds], truth.box_size, lr=lr_data, mas=mas,
                             core=core, lr_transfer=lr_transfer)
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
        shape = field_dataset(f, spec).shape
    if len(shape) != 4:
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
    samples' r with the truth), r_std, r_common (r of what the samples share, ``sims.stats.Ensemble``;
    None for one sample), transfer sqrt(pk_pred / pk_truth)."""
    ens = stats.ensemble(truth, samples, box_size, mas)
    return {"k": ens.k, "nmodes": ens.nmodes, "pk_truth": ens.pk_truth, "pk_pred": ens.pk_mean,
            "pk_pred_std": ens.pk_std, "pk_pred_samples": ens.pk_samples,
            "pk_ratio": stats.power_ratio(ens.pk_mean, ens.pk_truth),
            "r": ens.r_samples.mean(axis=0), "r_std": ens.r_samples.std(axis=0), "r_common": ens.r_common,
            "transfer": stats.transfer_function(ens.pk_mean, ens.pk_truth)}


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


def _lr_section(truth, lr, box_size, mas, lr_transfer=None):
    """P(k) of the LR field and its r(k) with the truth up to the LR grid's Nyquist (NaN above),
    and ``baselines``: the trivial predictors of the truth, "lr" (the LR on the truth's grid as
    it is) and, given ``lr_transfer``, "lr_transfer" (it times T(k),
    :func:`sims.stats.apply_transfer`), each with pk, pk_ratio, r on every shell (no cut at the
    LR Nyquist: a predictor of the truth is judged on all its k) and the summary figures."""
    lr = stats.check_field(lr, "lr")
    n_lr, n = lr.shape[0], truth.shape[0]
    on_grid = lr if n_lr == n else mesh.resample(lr, n)
    predictors = {"lr": on_grid}
    if lr_transfer is not None:
        k_t, t = _transfer_points(lr_transfer)
        predictors["lr_transfer"] = stats.apply_transfer(on_grid, box_size, k_t, t)
    ens = stats.ensemble(truth, list(predictors.values()), box_size, mas)
    beyond = ens.k >= stats.k_nyquist(min(n_lr, n), box_size)
    k_nyq = stats.k_nyquist(n, box_size)
    baselines = {}
    for i, name in enumerate(predictors):
        ratio = stats.power_ratio(ens.pk_samples[i], ens.pk_truth)
        baselines[name] = {"pk": ens.pk_samples[i], "pk_ratio": ratio, "r": ens.r_samples[i],
                           "summary": _figures(ens.k, k_nyq, ratio, ens.r_samples[i])}
    if lr_transfer is not None:
        baselines["lr_transfer"]["transfer"] = {"k": k_t, "t": t, "source": lr_transfer.get("source")}
    return {"ngrid_lr": n_lr, "pk_lr": np.where(beyond, np.nan, ens.pk_samples[0]),
            "r_lr": np.where(beyond, np.nan, ens.r_samples[0]), "baselines": baselines}


def _transfer_points(lr_transfer):
    """The (k, t) arrays of an ``lr_transfer`` dict; InputError when it is not one."""
    if not isinstance(lr_transfer, dict) or not {"k", "t"} <= set(lr_transfer):
        raise InputError("lr_transfer", "must be a dict with lists 'k' [h/Mpc] and 't'")
    return np.asarray(lr_transfer["k"], dtype=float), np.asarray(lr_transfer["t"], dtype=float)


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


def _figures(k, k_nyq, pk_ratio, r):
    """max |P / P_truth - 1| and min r(k) over k < k_Nyq / 2 and k < k_Nyq
    (:func:`sims.stats.band_figures`)."""
    half, full = (stats.band_figures(k, k_max, pk_ratio, r) for k_max in (k_nyq / 2, k_nyq))
    return {"max_abs_pk_ratio_dev_half_nyq": half["pk_ratio_maxdev"],
            "max_abs_pk_ratio_dev_nyq": full["pk_ratio_maxdev"],
            "min_r_half_nyq": half["r_min"], "min_r_nyq": full["r_min"]}


def _summary(report):
    """Scalar figures of merit of the prediction (:func:`_figures`), seams and calibration."""
    summary = {**_figures(report["k"], report["k_nyquist"], report["pk_ratio"], report["r"]),
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
    write_text(path, json.dumps(report, indent=1, allow_nan=False))


BASELINE_LABELS = {"lr": "LR as is", "lr_transfer": "LR x T(k)"}


def summary_table(report, rows=8):
    """A short text table (< 100 characters a line): P(k) of truth and prediction, then P / P_truth
    and r of the prediction (SR) and of each baseline at ``rows`` values of k below k_Nyq; the
    summary figures of each; then the prediction's summary."""
    k = np.array(report["k"], dtype=float)
    below = np.flatnonzero(k < report["k_nyquist"])
    picks = below[np.unique(np.linspace(0, len(below) - 1, rows).round().astype(int))]
    baselines = report.get("baselines", {})
    columns = {"SR": report, **{BASELINE_LABELS[name]: part for name, part in baselines.items()}}
    lines = [f"box {report['box_size']:g} Mpc/h, grid {report['ngrid']}^3, {report['n_samples']} sample(s), "
             f"mas {report['mas']}",
             (f"{'':34}" + "".join(f"{label:^16}" for label in columns)).rstrip(),
             f"{'k [h/Mpc]':>10} {'P_truth':>11} {'P_pred':>11}"
             + f" {'P ratio':>7} {'r':>7}" * len(columns)]
    for i in picks:
        lines.append(f"{k[i]:10.4f} {report['pk_truth'][i]:11.4g} {report['pk_pred'][i]:11.4g}"
                     + "".join(f" {_number(part['pk_ratio'][i])} {_number(part['r'][i])}"
                               for part in columns.values()))
    if baselines:
        lines.append(f"{'':10} {'|dP/P| k<kN/2':>14} {'|dP/P| k<kN':>12} {'min r k<kN/2':>13} "
                     f"{'min r k<kN':>11}")
        for label, part in columns.items():
            fig = part["summary"]
            lines.append(f"{label:<10} {_number(fig['max_abs_pk_ratio_dev_half_nyq'], 14)} "
                         f"{_number(fig['max_abs_pk_ratio_dev_nyq'], 12)} "
                         f"{_number(fig['min_r_half_nyq'], 13)} {_number(fig['min_r_nyq'], 11)}")
    lines += [f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}"
              for key, value in report["summary"].items()]
    return "\n".join(lines)


def _number(value, width=7):
    """``value`` (None for NaN in a report) right-aligned in ``width`` >= 7 characters: .3f, or
    .1e from 1000 on."""
    text = "nan" if value is None else format(value, ".3f" if abs(value) < 1e3 else ".1e")
    return f"{text:>{width}}"
