"""Slurm job templates: rendering, shell syntax, and real submissions to a local cluster."""
import contextlib
import json
import os
import subprocess
from dataclasses import dataclass

import h5py
import numpy as np
import pytest

from emulator.cli import main
from jobs import KINDS, JobOptions, render
from sims.pairfile import read_pair
from slurm_cluster import (DAEMONS, alive, free_port, local_cluster, missing_reason,
                           submit_and_wait)

ARGS = {
    "simulate": ("--out", "data", "--boxes", "3", "--seed", "7"),
    "train": ("--data", "data", "--out", "run"),
    "upsample": ("--lr", "big.h5", "--out", "sr.h5"),
    "validate": ("--truth", "box.h5:hr", "--pred", "sr.h5", "--out", "report"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_valid_bash(kind, tmp_path):
    script = tmp_path / f"{kind}.sbatch"
    script.write_text(render(JobOptions(kind, ARGS[kind], nodes=2, gpus_per_node=4,
                                        account="astro", partition="gpu")))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for line in ("--nodes=2", "--gpus-per-node=4", "--account=astro", "--partition=gpu"):
        assert f"#SBATCH {line}" in text
    assert f" {kind} " in text


def test_simulate_becomes_array_of_single_boxes():
    text = render(JobOptions("simulate", ARGS["simulate"]))
    assert "#SBATCH --array=0-2" in text
    assert '--first-box "${SLURM_ARRAY_TASK_ID}" --boxes 1' in text
    assert "--boxes 3" not in text


def test_train_starts_one_process_per_gpu():
    text = render(JobOptions("train", ARGS["train"], nodes=3, gpus_per_node=4))
    assert "--nproc-per-node=4" in text and "#SBATCH --ntasks-per-node=1" in text
    assert "-m emulator.cli train --data data --out run" in text


def test_setup_lines_run_after_the_log_line_and_may_override_the_thread_count():
    text = render(JobOptions("validate", ARGS["validate"], setup=("export OMP_NUM_THREADS=4",)))
    order = ['echo "slurm job ${SLURM_JOB_ID}', 'OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK}"',
             "OMP_NUM_THREADS=4", '" validate --truth']
    assert [text.index(line) for line in order] == sorted(text.index(line) for line in order)


@pytest.mark.parametrize("bad, words", [
    (dict(kind="postprocess"), "kind"), (dict(kind="train", nodes=0), "nodes"),
    (dict(kind="train", time="90 minutes"), "time"), (dict(kind="simulate"), "--boxes"),
    (dict(kind="upsample", launcher="aprun"), "launcher")])
def test_bad_options_are_rejected(bad, words):
    with pytest.raises(ValueError, match=words):
        JobOptions(**bad)


def test_cli_render_and_its_error(tmp_path, capsys):
    out = tmp_path / "v.sbatch"
    assert main(["jobs", "render", "validate", "--out", str(out), "--", *ARGS["validate"]]) == 0
    assert out.stat().st_mode & 0o111 and "emulator\" validate --truth" in out.read_text()
    assert main(["jobs", "render", "train", "--time", "1h", "--out", str(tmp_path / "t")]) == 2
    assert "time must be" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


# ---- real submissions to a one-node Slurm cluster on localhost (tests/slurm_cluster.py) ----

TRAIN_BOX = {"box_size": 32, "grid": 16}          # HR grid spacing 2 Mpc/h
BIG_BOX = {"box_size": 64, "grid": 32}            # the same spacing, 2x2x2 outpainting tiles of 16^3
SIMULATE = ("--lr-particles", "8", "--hr-particles", "16", "--redshift", "0", "--steps", "2",
            "--z-init", "20", "--no-progress")


def box_args(box):
    return ("--box-size", str(box["box_size"]), "--grid", str(box["grid"]), *SIMULATE)


@dataclass(frozen=True)
class Submitted:
    """A finished job: its JobResult and its log files' text (shown when a check fails)."""

    result: object
    logs: str

    def check(self):
        assert self.result.ok, f"job {self.result.job_id} failed: {self.result.tasks}\n{self.logs}"
        for task in self.result.tasks:
            assert f"slurm job {task} on " in self.logs, f"no log line of task {task}\n{self.logs}"


class Cluster:
    """A running local cluster and a work folder; ``submit`` renders a job with
    ``emulator jobs render``, submits it and waits for it."""

    def __init__(self, env, work):
        self.env, self.work = env, work

    def submit(self, kind, job_args, *render_flags):
        script, logs = self.work / f"{kind}.sbatch", self.work / f"logs-{kind}"
        assert main(["jobs", "render", kind, "--out", str(script), "--log-dir", str(logs),
                     *render_flags, "--", *map(str, job_args)]) == 0
        result = submit_and_wait(script, self.env, cwd=self.work, timeout=180)
        text = "".join(f"--- {log.name}\n{log.read_text()}" for log in sorted(logs.glob("*.out")))
        return Submitted(result, text)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    with contextlib.ExitStack() as stack:
        try:
            env = stack.enter_context(local_cluster(root / "cluster"))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            pytest.skip(f"the local Slurm cluster did not start: {err}")
        pids = [int((root / "cluster" / f"{daemon}.pid").read_text()) for daemon in DAEMONS]
        yield Cluster(env, root)
    assert not any(map(alive, pids)), "Slurm/munge daemons still running after the tests"


@pytest.fixture(scope="module")
def pairs_job(cluster):
    """Array job of 2 simulate tasks: DATA/box_0000.h5 (seed 3) and box_0001.h5 (seed 4)."""
    data = cluster.work / "data"
    return cluster.submit("simulate", ("--out", data, "--boxes", "2", "--seed", "3",
                                       *box_args(TRAIN_BOX))), data


@pytest.fixture(scope="module")
def train_job(cluster, pairs_job):
    """torchrun (c10d rendezvous on localhost, one CPU process) training the tiny U-Net."""
    run = cluster.work / "run"
    return cluster.submit("train", ("--data", pairs_job[1], "--out", run, "--preset", "tiny",
                                    "--tile", "16", "--core", "8", "--batch", "2", "--steps", "2",
                                    "--val-every", "0", "--save-every", "2"),
                          "--gpus-per-node", "0", "--rdzv-port", str(free_port())), run


def test_simulate_array_job_writes_one_box_per_task(pairs_job):
    job, data = pairs_job
    job.check()
    assert len(job.result.tasks) == 2
    assert sorted(os.listdir(data)) == ["box_0000.h5", "box_0001.h5"]
    for i in range(2):
        lr, hr, attrs = read_pair(data / f"box_{i:04d}.h5")
        assert lr.shape == hr.shape == (16, 16, 16) and np.all(np.isfinite(hr))
        assert attrs["seed"] == 3 + i and attrs["box_size"] == 32.0
        assert f"--first-box {i} --boxes 1" in attrs["created_by"]


def test_validate_job_writes_a_report(cluster, pairs_job):
    box = pairs_job[1] / "box_0000.h5"
    report = cluster.work / "report"
    job = cluster.submit("validate", ("--truth", f"{box}:hr", "--pred", f"{box}:lr", "--out", report))
    job.check()
    values = json.loads((report / "report.json").read_text())
    assert values["sources"]["truth"] == f"{box}:hr" and values["ngrid"] == 16
    assert values["r"][0] > 0.9          # LR and HR of one seed agree on the largest scales
    assert "wrote" in job.logs


def test_a_failing_command_fails_the_job_with_its_exit_code_and_message(cluster):
    missing = cluster.work / "missing.h5"
    job = cluster.submit("validate", ("--truth", missing, "--pred", missing, "--out",
                                      cluster.work / "never"))
    assert [state for state, _ in job.result.tasks.values()] == ["FAILED"], job.logs
    assert [code for _, code in job.result.tasks.values()] == ["2:0"], job.logs
    assert f"error: {missing}" in job.logs and not (cluster.work / "never").exists()


def test_train_job_runs_torchrun_under_slurm(train_job):
    job, run = train_job
    job.check()
    assert (run / "model.pt").stat().st_size > 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 2 and np.isfinite(metrics[-1]["loss"])
    assert "trained 2 steps" in job.logs


def test_upsample_job_outpaints_with_two_mpi_ranks(cluster, train_job):
    from emulator.checkpoint import load_model

    run = train_job[1]
    spacing = BIG_BOX["box_size"] / BIG_BOX["grid"]
    assert load_model(run / "model.pt").spacing == pytest.approx(spacing)
    big = cluster.work / "big"
    assert main(["simulate", "--out", str(big), "--seed", "11", *box_args(BIG_BOX)]) == 0
    sr = cluster.work / "sr.h5"
    job = cluster.submit("upsample", ("--model", run, "--lr", big / "box_0000.h5", "--out", sr,
                                      "--tile", "16", "--core", "8", "--steps", "2"),
                         "--launcher", "mpiexec", "--tasks-per-node", "2")
    job.check()
    with h5py.File(sr) as f:
        sr_field = f["sr"][...]
        assert sr_field.shape[-3:] == (32, 32, 32) and sr_field.size == 32 ** 3   # one sample
        assert np.all(np.isfinite(sr_field))
        assert f.attrs["ranks"] == 2 and f.attrs["tile"] == 16 and f.attrs["core"] == 8
