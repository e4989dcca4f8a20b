"""The emulator command as a whole (each subcommand's behaviour is tested beside its library)."""
import os
import re
import subprocess
import sys

import pytest

from emulator.cli import main
from sims import h5io


def test_cli_records_its_command_line_as_provenance(tmp_path):
    out = tmp_path / "job.sbatch"
    job = ["--truth", "pair.h5:hr", "--pred", "sr.h5", "--out", "report"]
    assert main(["jobs", "render", "validate", "--out", str(out), "--", *job]) == 0
    assert "emulator jobs render validate" in h5io.provenance()


@pytest.mark.parametrize("command", [[], ["simulate"], ["ingest"], ["train"], ["upsample"], ["validate"],
                                     ["demo"], ["jobs", "render"]])
def test_help_loads_no_torch(command):
    """``emulator [COMMAND] --help`` answers without importing torch (the library is imported by
    a command when it runs), so help is instant on a cluster's login node."""
    code = ("import sys\nfrom emulator.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code, *command, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "usage: emulator" in proc.stdout


def test_library_errors_name_the_flag_the_user_typed(tmp_path, capsys):
    """A library error names the setting (``batch_size``); the command line prints the flag
    (``--batch``), looked up in the subcommand's parser."""
    assert main(["upsample", "--lr", "x.h5", "--out", str(tmp_path / "sr.h5"), "--batch", "0"]) == 2
    assert "error: --batch: must be an integer >= 1" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run"), "--data", ".", "--learning-rate", "-1"]) == 2
    assert "error: --learning-rate: must be a number" in capsys.readouterr().err


@pytest.mark.mpi
def test_ranks_sharing_cores_let_idle_openmp_threads_sleep():
    """Under mpiexec the command sets OMP_WAIT_POLICY=PASSIVE (unless the user chose) before any
    OpenMP runtime loads; a single process keeps the runtime's default."""
    from pathlib import Path
    code = "import os, emulator.cli; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    # the ranks' lines can reach mpiexec's stdout run together ("ACTIVEACTIVE"): count the words
    words = lambda out: re.findall(r"PASSIVE|ACTIVE|None", out)
    ranks = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert words(ranks.stdout) == ["PASSIVE", "PASSIVE"], ranks.stderr
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert alone.stdout.split() == ["None"]
    chosen = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert words(chosen.stdout) == ["ACTIVE", "ACTIVE"]
