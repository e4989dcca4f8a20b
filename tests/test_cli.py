"""The emulator command as a whole (each subcommand's behaviour is tested beside its library)."""
from emulator.cli import main
from sims import h5io


def test_cli_records_its_command_line_as_provenance(tmp_path):
    out = tmp_path / "job.sbatch"
    job = ["--truth", "pair.h5:hr", "--pred", "sr.h5", "--out", "report"]
    assert main(["jobs", "render", "validate", "--out", str(out), "--", *job]) == 0
    assert "emulator jobs render validate" in h5io.provenance()
