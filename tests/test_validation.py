"""The validation report (library and ``emulator validate``): keys, consistency on known
inputs, LR / seam / calibration sections, plots, and clear errors with no report on bad input."""
import json

import numpy as np
import pytest

from emulator.cli import main
from sims import h5io, mesh, validation
from sims.errors import InputError

N, BOX = 32, 64.0
ISSUE_KEYS = {"box_size", "ngrid", "k", "nmodes", "pk_truth", "pk_pred", "pk_pred_std", "pk_ratio", "r",
              "transfer", "pdf_bins", "pdf_truth", "pdf_pred", "bispectrum", "summary"}


def lognormal(seed, n=N, sigma=0.6):
    """A positive-density overdensity field: 1 + delta = exp(g - sigma^2 / 2), g smoothed noise."""
    g = np.random.default_rng(seed).standard_normal((n, n, n))
    g = sum(np.roll(g, s, axis=a) for a in range(3) for s in (-1, 0, 1)) / 3.0
    return (np.exp(sigma * g - sigma ** 2 / 2) - 1).astype(np.float32)


def test_identical_prediction_gives_unit_ratios_and_equal_statistics():
    truth = lognormal(0)
    report = validation.validate_fields(truth, [truth.copy()], BOX)
    assert ISSUE_KEYS <= set(report)
    assert report["ngrid"] == N and report["box_size"] == BOX and report["n_samples"] == 1
    assert {"k1", "k2", "theta", "Q_truth", "Q_pred"} <= set(report["bispectrum"])
    np.testing.assert_allclose(report["pk_ratio"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(report["r"], 1.0, atol=1e-6)
    np.testing.assert_allclose(report["transfer"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(report["pdf_pred"], report["pdf_truth"])
    np.testing.assert_allclose(report["bispectrum"]["Q_pred"], report["bispectrum"]["Q_truth"], rtol=1e-6)
    summary = report["summary"]
    assert summary["max_abs_pk_ratio_dev_nyq"] < 1e-6 and summary["min_r_half_nyq"] > 1 - 1e-6
    assert "calibration" not in report and "seam" not in report and "pk_lr" not in report
    json.dumps(report, allow_nan=False)


def test_summary_figures_follow_their_definitions():
    truth = lognormal(1)
    preds = [1.1 * truth, lognormal(2)]
    report = validation.validate_fields(truth, np.stack(preds), BOX)
    k, ratio, r = (np.array(report[key], dtype=float) for key in ("k", "pk_ratio", "r"))
    k_nyq = np.pi * N / BOX
    assert report["k_nyquist"] == pytest.approx(k_nyq)
    half = k < k_nyq / 2
    assert report["summary"]["max_abs_pk_ratio_dev_half_nyq"] == pytest.approx(np.max(np.abs(ratio[half] - 1)))
    assert report["summary"]["min_r_half_nyq"] == pytest.approx(np.min(r[half]))
    pk = np.array(report["pk_pred_samples"])
    np.testing.assert_allclose(pk[0], 1.21 * np.array(report["pk_truth"]), rtol=1e-5)
    np.testing.assert_allclose(report["pk_pred"], pk.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(report["pk_pred_std"], pk.std(axis=0, ddof=1), rtol=1e-6)
    assert report["calibration"]["nominal_coverage"] == pytest.approx(1 / 3)


def test_lr_section_on_a_coarser_grid_stops_at_its_nyquist():
    truth = lognormal(3)
    lr = mesh.resample(truth, N // 2)  # keeps every mode the coarse grid holds, so r = 1 there
    report = validation.validate_fields(truth, [truth], BOX, lr=lr)
    k = np.array(report["k"])
    beyond = k >= np.pi * (N // 2) / BOX
    assert all(v is None for v, b in zip(report["pk_lr"], beyond) if b)
    np.testing.assert_allclose([v for v, b in zip(report["r_lr"], beyond) if not b], 1.0, atol=1e-5)
    np.testing.assert_allclose([v for v, b in zip(report["pk_lr"], beyond) if not b],
                               np.array(report["pk_truth"])[~beyond], rtol=1e-4)
    assert report["ngrid_lr"] == N // 2 and len(report["pdf_lr"]) == len(report["pdf_truth"])


def test_seam_section_sees_tiles_with_jumps():
    truth = lognormal(4)
    jumps = 2.0 * (np.arange(N // 8) % 2)  # a step of 2 at every z boundary of 8-cell tiles
    seamed = truth + np.repeat(jumps, 8)[None, None, :].astype(np.float32)
    report = validation.validate_fields(truth, [seamed], BOX, core=8)
    seam = report["seam"]
    assert seam["core"] == 8 and seam["ratio"][2] > seam["ratio_truth"][2] + 1
    # a z-dependent step leaves x and y differences, hence their ratios, as in the truth
    np.testing.assert_allclose(seam["ratio"][:2], seam["ratio_truth"][:2], rtol=1e-5)
    assert report["summary"]["max_seam_ratio"] == pytest.approx(seam["ratio"][2])


def test_library_rejects_mismatched_fields():
    truth = lognormal(0)
    with pytest.raises(InputError, match="differs"):
        validation.validate_fields(truth, [truth[:16, :16, :16]], BOX)
    with pytest.raises(InputError, match="at least one"):
        validation.validate_fields(truth, [], BOX)


def write_h5(path, box_size=BOX, **datasets):
    with h5io.atomic_h5(path) as f:
        for name, data in datasets.items():
            f[name] = data
        h5io.write_attrs(f, box_size=box_size)
    return str(path)


def test_read_inputs_takes_one_sample_files_with_and_without_the_sample_axis(tmp_path):
    """An outpainted file ('sr' (1, n, n, n)) and a bare (n, n, n) field read as one sample each."""
    truth, pred = lognormal(10), lognormal(11)
    pair = write_h5(tmp_path / "pair.h5", hr=truth)
    axis, bare = write_h5(tmp_path / "axis.h5", sr=pred[None]), write_h5(tmp_path / "bare.h5", sr=pred)
    _, preds, _ = validation.read_inputs(pair, [axis, bare])
    assert len(preds) == 2
    for sample in preds:
        np.testing.assert_array_equal(sample.data, pred)


def test_cli_writes_report_and_plots_with_stacked_samples(tmp_path, capsys):
    truth = lognormal(6)
    pair = write_h5(tmp_path / "pair.h5", hr=truth, lr=truth[::2, ::2, ::2])
    stacked = write_h5(tmp_path / "sr.h5", sr=np.stack([truth + 0.1 * lognormal(s) for s in (7, 8)]))
    single = write_h5(tmp_path / "one.h5", field=lognormal(9))
    out = tmp_path / "val"
    code = main(["validate", "--truth", pair, "--pred", stacked, "--pred", f"{single}:field",
                 "--lr", pair, "--mas", "cic", "--core", "8", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert ISSUE_KEYS <= set(report) and report["n_samples"] == 3 and report["mas"] == "cic"
    assert {"seam", "calibration", "pk_lr", "r_lr"} <= set(report)
    assert report["sources"]["pred"][2].endswith(":field")
    for name in ("power", "correlation", "pdf", "bispectrum", "slice"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.json", "power.png", "correlation.png", "pdf.png", "bispectrum.png", "slice.png"])
    assert "max_abs_pk_ratio_dev_half_nyq" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [
    ("shape", "differs from the truth's"),
    ("box", "box size"),
    ("nan", "NaN"),
    ("dataset", "has no dataset 'sr'"),
    ("file", "does not exist"),
])
def test_cli_bad_input_exits_2_and_writes_no_report(tmp_path, capsys, case, message):
    truth = lognormal(10, n=16)
    pair = write_h5(tmp_path / "pair.h5", hr=truth)
    bad = {"shape": lambda p: write_h5(p, sr=truth[:8, :8, :8]),
           "box": lambda p: write_h5(p, box_size=2 * BOX, sr=truth),
           "nan": lambda p: write_h5(p, sr=np.where(truth > 0, np.nan, truth)),
           "dataset": lambda p: write_h5(p, other=truth),
           "file": lambda p: str(p)}[case](tmp_path / "pred.h5")
    out = tmp_path / "val"
    assert main(["validate", "--truth", pair, "--pred", bad, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "pred.h5" in err
    assert not out.exists()


def test_write_report_is_atomic_and_rejects_nan(tmp_path):
    path = tmp_path / "report.json"
    with pytest.raises(ValueError):
        validation.write_report({"x": float("nan")}, path)
    assert list(tmp_path.iterdir()) == []
    validation.write_report({"x": 1.0}, path)
    assert json.loads(path.read_text()) == {"x": 1.0}
