"""PNG plots of a validation report (:func:`sims.validation.validate_fields`).

Figures are built with ``matplotlib.figure.Figure`` and its Agg canvas directly, never through
pyplot, so no backend or global state is touched (safe on headless nodes and inside other
programs). Each file is written atomically (sims.outputs.atomic_path).
"""
import os

import numpy as np

from sims import stats
from sims.outputs import atomic_path

PLOTS = ("power.png", "correlation.png", "pdf.png", "bispectrum.png", "slice.png")


def write_plots(report, truth, pred, out_dir, lr=None):
    """Write the five validation plots into ``out_dir`` and return their paths.

    report: the dict of :func:`sims.validation.validate_fields`; truth, pred: (n, n, n) fields
    (the first sample) for the slice; lr: optional LR field for the slice (any grid size).
    """
    from matplotlib.figure import Figure  # noqa: PLC0415  (heavy; only when plotting)

    makers = (_power, _correlation, _pdf, _bispectrum,
              lambda fig, rep: _slice(fig, truth, pred, lr))
    paths = []
    for name, make in zip(PLOTS, makers):
        fig = Figure(figsize=(6.4, 4.8) if name != "slice.png" else (4.2 * (3 if lr is not None else 2), 4.2),
                     layout="constrained")
        make(fig, report)
        path = os.path.join(out_dir, name)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        paths.append(path)
    return paths


def _array(report, key):
    """Report list as a float array (JSON nulls -> NaN)."""
    return np.array([np.nan if v is None else v for v in report[key]], dtype=float)


def _below_nyquist(report):
    return _array(report, "k") < report["k_nyquist"]


def _power(fig, report):
    """P(k) of truth, prediction (mean and +-1 sigma band over samples) and LR; ratio panel."""
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    keep = _below_nyquist(report)
    k = _array(report, "k")[keep]
    truth, pred, std = (_array(report, key)[keep] for key in ("pk_truth", "pk_pred", "pk_pred_std"))
    top.loglog(k, truth, "k-", label="truth")
    top.loglog(k, pred, "C0-", label=f"prediction (mean of {report['n_samples']})")
    top.fill_between(k, pred - std, pred + std, color="C0", alpha=0.3, lw=0)
    bottom.axhline(1.0, color="k", lw=0.8)
    bottom.plot(k, pred / truth, "C0-")
    bottom.fill_between(k, (pred - std) / truth, (pred + std) / truth, color="C0", alpha=0.3, lw=0)
    if "pk_lr" in report:
        lr = _array(report, "pk_lr")[keep]
        top.loglog(k, lr, "C1--", label="LR input")
        bottom.plot(k, lr / truth, "C1--")
    top.set_ylabel(r"$P(k)$ [$(h^{-1}\mathrm{Mpc})^3$]")
    top.legend()
    bottom.set_xlabel(r"$k$ [$h\,\mathrm{Mpc}^{-1}$]")
    bottom.set_ylabel("ratio to truth")
    bottom.set_ylim(0.5, 1.5)


def _correlation(fig, report):
    """r(k) of the prediction (and LR) with the truth."""
    ax = fig.subplots()
    keep = _below_nyquist(report)
    k, r, r_std = _array(report, "k")[keep], _array(report, "r")[keep], _array(report, "r_std")[keep]
    ax.semilogx(k, r, "C0-", label="prediction")
    ax.fill_between(k, r - r_std, r + r_std, color="C0", alpha=0.3, lw=0)
    if "r_lr" in report:
        ax.semilogx(k, _array(report, "r_lr")[keep], "C1--", label="LR input")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel(r"$k$ [$h\,\mathrm{Mpc}^{-1}$]")
    ax.set_ylabel(r"$r(k)$ with truth")
    ax.legend()


def _pdf(fig, report):
    """One-point PDFs of log10(1 + delta)."""
    ax = fig.subplots()
    edges = _array(report, "pdf_bins")
    centres = (edges[1:] + edges[:-1]) / 2
    ax.plot(centres, _array(report, "pdf_truth"), "k-", label="truth")
    ax.plot(centres, _array(report, "pdf_pred"), "C0-", label="prediction")
    if "pdf_lr" in report:
        ax.plot(centres, _array(report, "pdf_lr"), "C1--", label="LR input")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\log_{10}(1 + \delta)$")
    ax.set_ylabel("PDF")
    ax.legend()


def _bispectrum(fig, report):
    """Reduced bispectrum Q(theta) of truth and prediction (mean +- scatter over samples)."""
    ax = fig.subplots()
    bk = report["bispectrum"]
    theta = _array(bk, "theta") / np.pi
    ax.plot(theta, _array(bk, "Q_truth"), "ko-", label="truth")
    ax.errorbar(theta, _array(bk, "Q_pred"), yerr=_array(bk, "Q_pred_std"), fmt="C0s-", label="prediction")
    ax.set_xlabel(r"$\theta_{12} / \pi$")
    ax.set_ylabel(r"$Q(\theta)$")
    ax.set_title(f"$k_1$ = {bk['k1']:.3g}, $k_2$ = {bk['k2']:.3g} $h$/Mpc")
    ax.legend()


def _slice(fig, truth, pred, lr):
    """Middle x-slice of log10(1 + delta): truth, prediction (and LR), one colour scale."""
    panels = [("truth", truth), ("prediction", pred)] + ([("LR input", lr)] if lr is not None else [])
    images = [stats.log_density(field[field.shape[0] // 2]) for _, field in panels]
    vmin, vmax = np.percentile(images[0], [0.5, 99.5])
    axes = fig.subplots(1, len(panels))
    for ax, (title, _), image in zip(axes, panels, images):
        shown = ax.imshow(image.T, origin="lower", vmin=vmin, vmax=vmax, cmap="magma")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes, shrink=0.8, label=r"$\log_{10}(1 + \delta)$")
