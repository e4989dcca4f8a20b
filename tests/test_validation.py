"""The validation report (library and ``emulator validate``): keys, consistency on known
inputs, LR / baselines (LR, LR x T(k)) / seam / calibration sections, plots, and clear errors
with no report on bad input."""
import json

import types

import numpy as np
import pytest

from conftest import gaussian_smoothing
from emulator.cli import main
from sims import h5io, mesh, stats, validation
from sims.cosmology import PLANCK18
from sims.errors import InputError
from sims.pairfile import write_pair

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


SMOOTHING = 1.0  # Mpc/h: the LR of these tests is the truth smoothed by exp(-k^2 R^2 / 2)


def smoothed_pair(seed):
    """(lr, hr): a lognormal HR field and its Gaussian-smoothed LR on the same grid (float32)."""
    hr = lognormal(seed)
    return gaussian_smoothing(hr, BOX, SMOOTHING).astype(np.float32), hr


def fitted_transfer(seeds):
    """The ``lr_transfer`` dict fitted on the smoothed pairs of ``seeds`` (training pairs)."""
    k, t = stats.fit_transfer([smoothed_pair(s) for s in seeds], BOX)
    return {"k": k.tolist(), "t": t.tolist()}


def test_baselines_of_the_lr_and_of_the_lr_times_a_transfer_fitted_on_other_pairs():
    """LR = truth smoothed: its P ratio is the kernel squared and r = 1; T(k) fitted on two other
    seeds undoes the smoothing, so LR x T has P ratio ~ 1; the figures follow their definitions."""
    lr, truth = smoothed_pair(30)
    report = validation.validate_fields(truth, [1.1 * truth], BOX, lr=lr,
                                        lr_transfer={**fitted_transfer([31, 32]), "source": "seeds 31-32"})
    k = np.array(report["k"])
    below = k < report["k_nyquist"]
    base = report["baselines"]
    assert set(base) == {"lr", "lr_transfer"}
    assert base["lr_transfer"]["transfer"]["source"] == "seeds 31-32"
    # the kernel W and P vary over a shell: the ratio is W^2 at its mean k to 2%, r just below 1
    np.testing.assert_allclose(np.array(base["lr"]["pk_ratio"])[below],
                               np.exp(-k[below] ** 2 * SMOOTHING ** 2), rtol=0.02)
    np.testing.assert_allclose(np.array(base["lr"]["r"])[below], 1.0, atol=2e-3)
    np.testing.assert_allclose(np.array(base["lr_transfer"]["pk_ratio"])[below], 1.0, atol=0.02)
    assert np.min(np.array(base["lr_transfer"]["r"])[below]) > 0.999
    np.testing.assert_allclose(np.array(report["r_lr"], dtype=float)[below], np.array(base["lr"]["r"])[below])
    half = k < report["k_nyquist"] / 2
    for part in base.values():
        dev, r, figures = np.abs(np.array(part["pk_ratio"]) - 1), np.array(part["r"]), part["summary"]
        assert figures["max_abs_pk_ratio_dev_half_nyq"] == pytest.approx(np.max(dev[half]))
        assert figures["max_abs_pk_ratio_dev_nyq"] == pytest.approx(np.max(dev[below]))
        assert figures["min_r_nyq"] == pytest.approx(np.min(r[below]))
    assert base["lr"]["summary"]["max_abs_pk_ratio_dev_nyq"] > 0.5
    assert base["lr_transfer"]["summary"]["max_abs_pk_ratio_dev_nyq"] < 0.02
    json.dumps(report, allow_nan=False)


def test_summary_table_shows_sr_and_baselines_side_by_side():
    lr, truth = smoothed_pair(33)
    report = validation.validate_fields(truth, [1.1 * truth], BOX, lr=lr, lr_transfer=fitted_transfer([34]))
    lines = validation.summary_table(report, rows=4).splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[1].split() == ["SR", "LR", "as", "is", "LR", "x", "T(k)"]
    first = lines[3].split()
    k0 = float(first[0])
    i = int(np.argmin(np.abs(np.array(report["k"]) - k0)))
    expected = [report["pk_ratio"][i], report["r"][i]]
    for name in ("lr", "lr_transfer"):
        expected += [report["baselines"][name]["pk_ratio"][i], report["baselines"][name]["r"][i]]
    np.testing.assert_allclose([float(v) for v in first[3:]], expected, atol=6e-4)
    figures = {line[:10].strip(): line for line in lines if line.startswith(("SR ", "LR as is", "LR x T"))}
    assert set(figures) == {"SR", "LR as is", "LR x T(k)"}
    lr_dev = report["baselines"]["lr"]["summary"]["max_abs_pk_ratio_dev_nyq"]
    assert figures["LR as is"].split()[4] == f"{lr_dev:.3f}"
    without = validation.summary_table(validation.validate_fields(truth, [truth], BOX)).splitlines()
    assert without[1].split() == ["SR"] and without[2].split()[-3:] == ["P", "ratio", "r"]


def test_lr_transfer_needs_the_lr_and_a_k_t_dict():
    truth = lognormal(35)
    with pytest.raises(InputError, match="needs the LR"):
        validation.validate_fields(truth, [truth], BOX, lr_transfer={"k": [1.0], "t": [1.0]})
    with pytest.raises(InputError, match="lr_transfer"):
        validation.validate_fields(truth, [truth], BOX, lr=truth, lr_transfer={"t": [1.0]})


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


def test_cli_lr_transfer_from_training_pairs_and_from_a_checkpoint(tmp_path, monkeypatch, capsys):
    """--transfer-from fits T on the pairs of a directory (not on the truth); --model takes the
    checkpoint's lr_transfer (load_model stubbed: the network is not needed)."""
    train = tmp_path / "train"
    train.mkdir()
    for seed in (41, 42):
        lr, hr = smoothed_pair(seed)
        write_pair(train / f"pair_{seed}.h5", lr, hr, box_size=BOX, redshift=0.0, cosmology=PLANCK18)
    lr, truth = smoothed_pair(40)
    pair = write_h5(tmp_path / "pair.h5", hr=truth, lr=lr)
    sr = write_h5(tmp_path / "sr.h5", sr=truth)
    out = tmp_path / "val"
    assert main(["validate", "--truth", pair, "--pred", sr, "--lr", pair, "--transfer-from", str(train),
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    transfer = report["baselines"]["lr_transfer"]["transfer"]
    expected = fitted_transfer([41, 42])
    np.testing.assert_allclose(transfer["t"], expected["t"], rtol=1e-6)
    assert str(train) in transfer["source"] and "LR x T(k)" in capsys.readouterr().out

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    stored = {"k": [0.1, 1.0], "t": [1.0, 2.0]}
    monkeypatch.setattr("emulator.validate.load_model",
                        lambda path: types.SimpleNamespace(lr_transfer=stored))
    assert main(["validate", "--truth", pair, "--pred", sr, "--lr", pair, "--model", str(tmp_path),
                 "--out", str(out)]) == 0
    transfer = json.loads((out / "report.json").read_text())["baselines"]["lr_transfer"]["transfer"]
    assert (transfer["k"], transfer["t"]) == (stored["k"], stored["t"])
    assert str(checkpoint) in transfer["source"]


@pytest.mark.parametrize("case, message", [
    ("no lr", "--model: the LR x T(k) baseline multiplies the LR field"),
    ("old checkpoint", "model.pt: checkpoint stores no lr_transfer"),
    ("no pairs", "empty: contains no paired box files"),
    ("lr grid", "pair_0.h5: LR grid (8, 8, 8) differs from the HR grid"),
])
def test_cli_transfer_errors_name_the_flag_or_file(tmp_path, monkeypatch, capsys, case, message):
    truth = lognormal(43, n=16)
    pair = write_h5(tmp_path / "pair.h5", hr=truth, lr=truth)
    (tmp_path / "model.pt").write_bytes(b"")
    monkeypatch.setattr("emulator.validate.load_model",
                        lambda path: types.SimpleNamespace(lr_transfer=None))
    (tmp_path / "empty").mkdir()
    (tmp_path / "coarse").mkdir()
    write_pair(tmp_path / "coarse" / "pair_0.h5", truth[::2, ::2, ::2], truth, box_size=BOX, redshift=0.0,
               cosmology=PLANCK18)
    flags = {"no lr": ["--model", str(tmp_path)], "old checkpoint": ["--lr", pair, "--model", str(tmp_path)],
             "no pairs": ["--lr", pair, "--transfer-from", str(tmp_path / "empty")],
             "lr grid": ["--lr", pair, "--transfer-from", str(tmp_path / "coarse")]}[case]
    out = tmp_path / "val"
    assert main(["validate", "--truth", pair, "--pred", f"{pair}:hr", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not out.exists()


def test_write_report_is_atomic_and_rejects_nan(tmp_path):
    path = tmp_path / "report.json"
    with pytest.raises(ValueError):
        validation.write_report({"x": float("nan")}, path)
    assert list(tmp_path.iterdir()) == []
    validation.write_report({"x": 1.0}, path)
    assert json.loads(path.read_text()) == {"x": 1.0}
