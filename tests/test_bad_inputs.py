"""The corpus of bad inputs and faults, grouped per command.

A refused case must exit non-zero with exactly one line ``error: ...`` on stderr naming the file
or setting, no traceback, and leave its work folder as it was: no output, no partial output, no
lock file, an existing output untouched. A fault that a resumed run repairs must give the
uninterrupted result. Commands run in this process through ``emulator.cli.main`` (an uncaught
exception fails the test as a traceback would), on a tiny untrained model and 16^3 tiles.
"""
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import write_tiny_checkpoint
from emulator.cli import main
from emulator.config import DEFAULT_MODEL, STUDENT_FILE
from outpaint.run import upsample_box
from outpaint.writer import state_path
from outpaint_job import Crash, instrumented, stand_in
from sims.outputs import acquire, lock_path, release

SPACING, TILE, CORE = 2.0, 16, 8          # the tiny model: HR grid spacing [Mpc/h], tile, core


def write_lr(path, field, box_size, dataset="lr", **attrs):
    with h5py.File(path, "w") as f:
        f[dataset] = field
        f.attrs.update(box_size=box_size, **attrs)
    return path


def lognormal(n, seed=0):
    """A float32 overdensity field (>= -1) of n^3 voxels."""
    rho = np.exp(0.5 * np.random.default_rng(seed).standard_normal((n,) * 3))
    return (rho / rho.mean() - 1).astype(np.float32)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Read-only inputs: the tiny model, a one-tile LR box (16^3) and a 2x2x2-block one (32^3)."""
    folder = tmp_path_factory.mktemp("inputs")
    return {"folder": folder,
            "model": write_tiny_checkpoint(folder / "tiny.pt", tile=TILE, core=CORE, spacing=SPACING),
            "tile": write_lr(folder / "tile.h5", lognormal(16), 16 * SPACING),
            "box": write_lr(folder / "box.h5", lognormal(32), 32 * SPACING)}


def listing(folder):
    """Every path under ``folder`` with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*")}


def check_refused(capsys, argv, words, folder):
    """Run ``emulator argv``; check the refusal contract of the module docstring, with ``words``
    in the error line. Returns the line."""
    before = listing(folder)
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status not in (0, None), err
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "Traceback" not in err
    assert listing(folder) == before
    return lines[0]


# ---- emulator upsample ----------------------------------------------------------------------

def upsample(inputs, lr, out, *flags):
    return ["upsample", "--model", inputs["model"], "--lr", inputs[lr], "--out", out, "--steps", 1,
            *flags]


UPSAMPLE = {
    # item 2: every setting is checked before any output is touched, on both paths
    "sampler typo, --force over a good output": ("box", "good.h5", ["--force", "--sampler", "dpmpp2m"], "--sampler"),
    "sampler typo, fresh box": ("box", "sr.h5", ["--sampler", "dpmpp2m"], "--sampler"),
    "sampler typo, one tile": ("tile", "good.h5", ["--force", "--sampler", "dpmpp2m"], "--sampler"),
    "unknown sigma schedule": ("box", "good.h5", ["--force", "--sigma-schedule", "linear"], "--sigma-schedule"),
    "LR consistency out of range": ("box", "good.h5", ["--force", "--lr-consistency", "2"], "--lr-consistency"),
    "ddpm steps beyond the trained levels": ("box", "sr.h5", ["--sampler", "ddpm", "--steps", "5000"], "--steps"),
    "consistency sampler for a diffusion model": ("box", "good.h5", ["--force", "--sampler", "consistency"],
                                                  "--sampler: 'consistency' samples distilled students only"),
    "existing output without --force": ("box", "good.h5", [], "already exists"),
    # item 6: unusable output paths, found before any work
    "output inside a file": ("tile", "/etc/passwd/x.h5", [], "/etc/passwd is not a directory"),
    "output in /proc": ("box", "/proc/x.h5", [], "/proc/x.h5"),
    "output is a directory, --force": ("tile", ".", ["--force"], "is a directory"),
    "output folder missing": ("tile", "no/such/sr.h5", [], "does not exist"),
}


@pytest.mark.parametrize("case", UPSAMPLE)
def test_upsample_refuses(case, inputs, tmp_path, capsys, monkeypatch):
    lr, out, flags, words = UPSAMPLE[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.h5").write_bytes(b"a good output")
    check_refused(capsys, upsample(inputs, lr, out, *flags), words, tmp_path)
    assert (tmp_path / "good.h5").read_bytes() == b"a good output"


def malformed_lr(folder, case):
    """An LR file (box of 32^3 on the tiny model's grid) with one defect; its FILE[:DATASET]."""
    path = folder / f"{case.replace(' ', '_')}.h5"
    field, attrs, dataset = lognormal(32), {"box_size": 32 * SPACING}, "lr"
    if case == "dataset is a group":
        with h5py.File(path, "w") as f:
            f.create_group("lr").create_dataset("x", data=field)
            f.attrs.update(attrs)
        return f"{path}:lr"
    if case == "string box_size":
        attrs["box_size"] = "64"
    elif case == "box_size of two values":
        attrs["box_size"] = [64.0, 64.0]
    elif case == "negative box_size":
        attrs["box_size"] = -64.0
    elif case == "0x0x0 dataset":
        field = np.zeros((0, 0, 0), np.float32)
    elif case == "complex values":
        field = field.astype(np.complex64)
    elif case == "bool values":
        field = field > 0
    with h5py.File(path, "w") as f:
        f[dataset] = field
        f.attrs.update(attrs)
    return path


MALFORMED_LR = {"dataset is a group": "is a group", "string box_size": "'box_size' must be a number",
                "box_size of two values": "'box_size' must be a number",
                "negative box_size": "finite positive", "0x0x0 dataset": "is empty",
                "complex values": "complex64 values", "bool values": "bool values"}


@pytest.mark.parametrize("case", MALFORMED_LR)
def test_upsample_refuses_malformed_hdf5(case, inputs, tmp_path, capsys):
    """Item 7: malformed LR files are named in one line, never a traceback or a conversion."""
    lr = malformed_lr(tmp_path, case)
    argv = ["upsample", "--model", inputs["model"], "--lr", lr, "--out", tmp_path / "sr.h5"]
    assert str(lr).split(":")[0] in check_refused(capsys, argv, MALFORMED_LR[case], tmp_path)


@pytest.mark.parametrize("lr", ["tile", "box"])
def test_upsample_refuses_a_second_run_on_the_same_output(lr, inputs, tmp_path, capsys):
    """Item 1: while a run holds OUT.lock (here this test), another is refused, --force or not."""
    out = tmp_path / "sr.h5"
    fd = acquire(out)
    try:
        for flags in ([], ["--force"], ["--resume"]):
            check_refused(capsys, upsample(inputs, lr, out, *flags), "another run is writing it", tmp_path)
    finally:
        release(out, fd)


N = 32                                    # the stand-in box of the damaged-state cases


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """An uninterrupted in-process outpainting of the 32^3 box with the stand-in generator."""
    out = tmp_path_factory.mktemp("reference") / "sr.h5"
    upsample_box(None, inputs["box"], out, tile=TILE, core=CORE, tile_generator=stand_in, batch_size=3)
    with h5py.File(out, "r") as f:
        return f["sr"][0]


def damage_deleted_row(state):
    (state / "row_00000.npy").unlink()


def damage_emptied_record(state):
    (state / "row_00000.json").write_text("")


def damage_truncated_row(state):
    os.truncate(state / "row_00000.npy", (state / "row_00000.npy").stat().st_size // 2)


def damage_flipped_byte(state):
    """One float of the first tile's core in row 0 (block (0, 0, 0): the first voxel)."""
    path = state / "row_00000.npy"
    row = np.load(path, mmap_mode="r+")
    row[0, 0, 0] += 1.0
    row.flush()


@pytest.mark.parametrize("damage", [damage_deleted_row, damage_emptied_record,
                                    damage_truncated_row, damage_flipped_byte])
def test_upsample_resume_redoes_what_does_not_verify(damage, inputs, reference, tmp_path, capsys):
    """Item 4: a resumed run checks the row files it reuses (size, header, checksums) and
    generates again what does not verify, so the result is the uninterrupted one."""
    out, kw = tmp_path / "sr.h5", dict(tile=TILE, core=CORE, batch_size=3)
    with pytest.raises(Crash):
        upsample_box(None, inputs["box"], out, tile_generator=instrumented(stand_in, TILE, CORE, crash_phase=2), **kw)
    damage(Path(state_path(out)))
    upsample_box(None, inputs["box"], out, tile_generator=instrumented(stand_in, TILE, CORE), resume=True, **kw)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["sr"][0], reference)
    assert "generating" in capsys.readouterr().err
    assert not os.path.exists(state_path(out)) and not os.path.exists(lock_path(out))


# ---- emulator calibrate -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibration_data(tmp_path_factory):
    """Training pairs for calibrate: on the tiny model's grid, on a grid twice as fine, and on its
    LR spacing (an LR may lie there, an HR may not)."""
    from sims.pairfile import write_pair
    folder = tmp_path_factory.mktemp("calibration")
    for name, box_size in (("good", 32 * SPACING), ("fine", 16 * SPACING), ("coarse", 64 * SPACING)):
        (folder / name).mkdir()
        write_pair(folder / name / "pair.h5", lognormal(32, 1), lognormal(32, 2), box_size=box_size,
                   redshift=0.0, cosmology={})
    return folder


CALIBRATE = {
    "more boxes than pairs": ("good", ["--boxes", "2"], "--boxes: "),
    "no boxes": ("good", ["--boxes", "0"], "--boxes: must be an integer >= 1"),
    "pairs on another grid spacing": ("fine", [], "pair.h5:lr: grid spacing 1 Mpc/h"),
    "HR on the model's LR spacing": ("coarse", [], "pair.h5:hr: HR grid spacing 4 Mpc/h differs"),
    "no such data folder": ("none", [], "data directory does not exist"),
    "sampler typo": ("good", ["--sampler", "dpmpp2m"], "--sampler"),
    "existing output without --force": ("good", [], "already exists"),
    "output folder missing": ("good", ["--out", "no/such/model.pt"], "does not exist"),
}


@pytest.mark.parametrize("case", CALIBRATE)
def test_calibrate_refuses(case, inputs, calibration_data, tmp_path, capsys, monkeypatch):
    data, flags, words = CALIBRATE[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.pt").write_bytes(b"a good checkpoint")
    out = [] if "--out" in flags else ["--out", "good.pt"]
    argv = ["calibrate", "--model", inputs["model"], "--data", calibration_data / data, *out, "--steps", 1, *flags]
    check_refused(capsys, argv, words, tmp_path)
    assert (tmp_path / "good.pt").read_bytes() == b"a good checkpoint"


# ---- emulator ingest --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """An LR and an HR snapshot of one 20 Mpc/h box (random DM particles)."""
    from sims.cosmology import Cosmology
    from sims.snapshot import write_snapshot
    folder = tmp_path_factory.mktemp("snapshots")
    pos = np.random.default_rng(5).uniform(0, 20.0, (512, 3))
    for name in ("lr.hdf5", "hr.hdf5"):
        write_snapshot(folder / name, pos, np.zeros_like(pos), None, 20.0, 0.0, Cosmology(), 1.0)
    return folder


def ingest(snapshots, out, *flags):
    return ["ingest", "--lr", snapshots / "lr.hdf5", "--hr", snapshots / "hr.hdf5", "--grid", 8,
            "--out", out, *flags]


INGEST = {
    "existing output without --force": ("good.h5", "already exists; use --force"),   # item 3
    "output inside a file": ("/etc/passwd/x.h5", "/etc/passwd is not a directory"),
    "output is a directory": (".", "is a directory"),
    "output folder missing": ("no/such/pair.h5", "does not exist"),
}


@pytest.mark.parametrize("case", INGEST)
def test_ingest_refuses(case, snapshots, tmp_path, capsys, monkeypatch):
    out, words = INGEST[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.h5").write_bytes(b"a good output")
    check_refused(capsys, ingest(snapshots, out), words, tmp_path)
    assert (tmp_path / "good.h5").read_bytes() == b"a good output"


def malformed_snapshot(folder, snapshots, case):
    """A copy of the HR snapshot with one defect."""
    import shutil
    path = folder / "hr.hdf5"
    shutil.copy(snapshots / "hr.hdf5", path)
    with h5py.File(path, "r+") as f:
        coordinates = f["PartType1/Coordinates"][...]
        if case == "Coordinates of shape (N, 2)":
            del f["PartType1/Coordinates"]
            f["PartType1/Coordinates"] = coordinates[:, :2]
        elif case == "Coordinates is a group":
            del f["PartType1/Coordinates"]
            f["PartType1"].create_group("Coordinates")
        elif case == "complex Coordinates":
            del f["PartType1/Coordinates"]
            f["PartType1/Coordinates"] = coordinates.astype(np.complex64)
        elif case == "string BoxSize":
            f["Header"].attrs["BoxSize"] = "20000"
        elif case == "string Redshift":
            f["Header"].attrs["Redshift"] = "zero"
    return path


MALFORMED_SNAPSHOT = {"Coordinates of shape (N, 2)": "expected real numbers of shape (512, 3)",
                      "Coordinates is a group": "no Coordinates dataset",
                      "complex Coordinates": "complex64 values",
                      "string BoxSize": "'BoxSize' must be a number",
                      "string Redshift": "'Redshift' must be a number"}


@pytest.mark.parametrize("case", MALFORMED_SNAPSHOT)
def test_ingest_refuses_malformed_snapshots(case, snapshots, tmp_path, capsys):
    hr = malformed_snapshot(tmp_path, snapshots, case)
    argv = ["ingest", "--lr", snapshots / "lr.hdf5", "--hr", hr, "--grid", 8, "--out", tmp_path / "pair.h5"]
    assert str(hr) in check_refused(capsys, argv, MALFORMED_SNAPSHOT[case], tmp_path)


def test_ingest_overwrites_with_force(snapshots, tmp_path, capsys):
    out = tmp_path / "pair.h5"
    out.write_bytes(b"old")
    assert main([str(a) for a in ingest(snapshots, out, "--force")]) == 0
    with h5py.File(out, "r") as f:
        assert f["hr"].shape == (8, 8, 8)
    assert not os.path.exists(lock_path(out))


# ---- every command: unusable output paths (item 6) ----------------------------------------------

def command(name, inputs, out):
    """``emulator name`` with its required inputs and ``out`` as the path it writes."""
    lr = f"{inputs['tile']}:lr"
    return {"simulate": ["simulate", "--out", out, "--box-size", 32, "--lr-particles", 8,
                         "--hr-particles", 16, "--grid", 16, "--redshift", 0, "--steps", 2, "--seed", 1],
            "train": ["train", "--data", inputs["folder"], "--out", out, "--preset", "tiny"],
            "validate": ["validate", "--truth", lr, "--pred", lr, "--out", out],
            "demo": ["demo", "--model", inputs["model"], "--out", out],
            "jobs --out": ["jobs", "render", "validate", "--out", out, "--", "--truth", lr],
            "jobs --log-dir": ["jobs", "render", "validate", "--out", "v.sbatch", "--log-dir", out,
                               "--", "--truth", lr]}[name]


FOLDER_OUTPUTS = {"inside a file": ("/etc/passwd/x", "/etc/passwd is not a directory"),
                  "in /proc": ("/proc/x", "/proc/x"),
                  "an existing file": ("good.h5", "exists and is not a directory")}
FILE_OUTPUTS = {"inside a file": ("/etc/passwd/x.sbatch", "/etc/passwd is not a directory"),
                "a directory": (".", "is a directory"),
                "folder missing": ("no/such/x.sbatch", "does not exist")}
OUTPUT_CASES = [(name, case) for name in ("simulate", "train", "validate", "demo", "jobs --log-dir")
                for case in FOLDER_OUTPUTS] + [("jobs --out", case) for case in FILE_OUTPUTS]


@pytest.mark.parametrize("name, case", OUTPUT_CASES)
def test_unusable_output_paths_are_refused_up_front(name, case, inputs, tmp_path, capsys, monkeypatch):
    out, words = (FILE_OUTPUTS if name == "jobs --out" else FOLDER_OUTPUTS)[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.h5").write_bytes(b"a good output")
    check_refused(capsys, command(name, inputs, out), words, tmp_path)


# ---- faults during a run: one line, progress kept (item 6) ----------------------------------------

def stand_in_model(monkeypatch, interrupt_phase=None, calls=None):
    """Make ``emulator upsample`` outpaint with the stand-in generator (its tiles do not depend on
    the model), raising KeyboardInterrupt at the first call of ``interrupt_phase``; ``calls``
    (a list) receives the seeds of every generated tile."""
    def generate(model, settings, lr, known, mask, seeds, batch_size=None):
        if mask[0].any() and mask[0].mean() >= interrupt_fraction():
            raise KeyboardInterrupt
        if calls is not None:
            calls.extend(seeds)
        return stand_in(lr, known, mask, seeds)

    def interrupt_fraction():        # phase p's known fraction grows with p: phase 2 is 1/2 known
        return 2.0 if interrupt_phase is None else 0.5
    monkeypatch.setattr("outpaint.run.generate_tiles", generate)


def test_upsample_interrupted_keeps_its_progress_and_resumes(inputs, reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sr.h5"
    stand_in_model(monkeypatch, interrupt_phase=2)
    line = check_refused_run(capsys, upsample(inputs, "box", out), "interrupted", status=130)
    assert "--resume" in line and not out.exists() and not os.path.exists(lock_path(out))
    assert os.path.isdir(state_path(out))
    calls = []
    stand_in_model(monkeypatch, calls=calls)
    assert main([str(a) for a in upsample(inputs, "box", out, "--resume")]) == 0
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["sr"][0], reference)
    assert 0 < len(calls) < 64                                   # the recorded tiles were kept


def check_refused_run(capsys, argv, words, status):
    """Run ``emulator argv`` that fails mid-run: its status, one error line, no traceback."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in re.split("[\r\n]", err) if line.startswith("error: ")]  # after bars
    assert code == status and len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("lr", ["tile", "box"])
def test_upsample_on_a_full_disk_says_so_in_one_line(lr, inputs, tmp_path, capsys, monkeypatch):
    """The output's temporary file on /dev/full: ENOSPC when the output is written (after every
    tile of a box is recorded, so a resume writes it without generating any tile)."""
    out = tmp_path / "sr.h5"
    os.symlink("/dev/full", f"{out}.tmp")
    calls = []
    stand_in_model(monkeypatch, calls=calls)
    check_refused_run(capsys, upsample(inputs, lr, out), f"{out}: No space left on device", status=1)
    assert not out.exists() and not os.path.lexists(f"{out}.tmp") and not os.path.exists(lock_path(out))
    if lr == "box":
        generated = len(calls)
        assert main([str(a) for a in upsample(inputs, lr, out, "--resume")]) == 0
        assert generated == 64 and len(calls) == generated and out.exists()


def test_upsample_without_room_for_its_row_files_says_so_in_one_line(inputs, tmp_path, capsys, monkeypatch):
    """The row files are allocated when created: a full disk is ENOSPC there, never a SIGBUS in a
    memory-mapped write later."""
    def full(fd, offset, length):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full)
    out = tmp_path / "sr.h5"
    check_refused_run(capsys, upsample(inputs, "box", out), "row_00000.npy: No space left on device", status=1)
    assert not out.exists() and not os.path.exists(lock_path(out))


def test_train_interrupted_keeps_its_checkpoint_and_resumes(tmp_path, capsys, monkeypatch):
    import torch

    import emulator.train
    from sims.pairfile import write_pair
    data = tmp_path / "data"
    data.mkdir()
    write_pair(data / "pair.h5", lognormal(8, 1), lognormal(16, 2), box_size=32.0, redshift=0.0, cosmology={})
    run = tmp_path / "run"
    argv = ["train", "--data", data, "--out", run, "--preset", "tiny", "--tile", 16, "--core", 8,
            "--batch", 1, "--steps", 2, "--save-every", 1, "--val-every", 0]
    update_ema, calls = emulator.train.update_ema, []

    def interrupted_at_step_2(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        update_ema(*args)
    monkeypatch.setattr(emulator.train, "update_ema", interrupted_at_step_2)
    check_refused_run(capsys, argv, "interrupted", status=130)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1
    assert not (run / "model.pt").exists()
    assert main([str(a) for a in argv + ["--resume"]]) == 0
    assert len(calls) == 3 and (run / "model.pt").exists()          # step 2 once more


# ---- emulator validate: malformed HDF5 (item 7) --------------------------------------------------

@pytest.mark.parametrize("case", MALFORMED_LR)
def test_validate_refuses_a_malformed_truth(case, inputs, tmp_path, capsys):
    truth = malformed_lr(tmp_path, case)
    truth = truth if ":" in str(truth) else f"{truth}:lr"
    argv = ["validate", "--truth", truth, "--pred", f"{inputs['box']}:lr", "--out", tmp_path / "report"]
    check_refused(capsys, argv, MALFORMED_LR[case], tmp_path)


def test_validate_refuses_a_group_as_prediction(inputs, tmp_path, capsys):
    pred = malformed_lr(tmp_path, "dataset is a group")
    argv = ["validate", "--truth", f"{inputs['box']}:lr", "--pred", pred, "--out", tmp_path / "report"]
    check_refused(capsys, argv, "is a group", tmp_path)


# ---- emulator jobs render (item 8) ---------------------------------------------------------------

JOBS = {
    "train without its --out": (["train"], ["--data", "d"], "the following arguments are required: --out"),
    "upsample without --lr": (["upsample"], ["--out", "sr.h5"], "required: --lr"),
    "upsample with an unknown option": (["upsample"], ["--lr", "b.h5", "--out", "sr.h5", "--bogus"],
                                        "unrecognized arguments: --bogus"),
    "train with a bad step count": (["train"], ["--out", "r", "--steps", "many"], "--steps: invalid int value"),
    "simulate without its sizes": (["simulate"], ["--out", "d", "--boxes", "2"], "required: --box-size"),
    "job name with a space": (["validate", "--job-name", "my job"], ["--truth", "t.h5", "--pred", "p.h5",
                                                                      "--out", "r"], "job_name must be"),
    "job name with a semicolon": (["validate", "--job-name", "a;rm"], ["--truth", "t.h5", "--pred", "p.h5",
                                                                       "--out", "r"], "job_name must be"),
    "rendezvous port too high": (["train", "--rdzv-port", "70000"], ["--out", "r"], "rdzv_port must be"),
    "rendezvous port 0": (["train", "--rdzv-port", "0"], ["--out", "r"], "rdzv_port must be"),
}


@pytest.mark.parametrize("case", JOBS)
def test_jobs_render_refuses(case, tmp_path, capsys):
    """Item 8: a script that would fail only on the cluster is not written."""
    render, job, words = JOBS[case]
    argv = ["jobs", "render", render[0], "--out", tmp_path / "job.sbatch", "--log-dir", tmp_path,
            *render[1:], "--", *job]
    assert f"jobs render {render[0]}" in check_refused(capsys, argv, words, tmp_path)


# ---- emulator demo (item 9) ----------------------------------------------------------------------

DEMO = {"unknown sampler": (["--sampler", "bogus"], "--sampler: must be one of ["),
        "zero steps": (["--steps", "0"], "--steps: must be an integer >= 1"),
        "zero batch": (["--batch", "0"], "--batch: must be an integer >= 1"),
        "odd block count": (["--blocks", "3"], "--blocks: must be even"),
        "missing model": (["--model", "no/such/model.pt"], "error: --model: no/such/model.pt does not exist"),
        "student beyond its steps": (["--model", str(DEFAULT_MODEL / STUDENT_FILE), "--steps", "3"],
                                     "--steps: this student was distilled to sample in 1 to 2 steps, not 3"),
        "student with another sampler": (["--model", str(DEFAULT_MODEL / STUDENT_FILE), "--sampler", "ddim"],
                                         "--sampler: this model is a student distilled to 2 step(s)")}


@pytest.mark.parametrize("case", DEMO)
def test_demo_refuses_before_simulating(case, inputs, tmp_path, capsys, monkeypatch):
    flags, words = DEMO[case]
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--model", inputs["model"], "--out", tmp_path / "demo", *flags]
    check_refused(capsys, argv, words, tmp_path)
