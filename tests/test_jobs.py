"""Slurm job templates: rendering, shell syntax, and real submissions to a local cluster."""
import subprocess

import pytest

from emulator.cli import main
from jobs import KINDS, JobOptions, render

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
