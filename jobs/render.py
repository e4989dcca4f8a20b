"""Fill the Slurm templates of ``jobs/templates`` with a validated set of options."""
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template

KINDS = ("simulate", "train", "upsample", "validate")
LAUNCHERS = ("srun", "mpiexec")
_TIME = re.compile(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")
"""A Slurm name (job, account, partition) safe unquoted in an ``#SBATCH`` line."""
PREAMBLE = ('echo "slurm job ${SLURM_JOB_ID} on ${SLURM_JOB_NODELIST}, $(date -u +%FT%TZ)"',
            'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK}"')
"""Shell lines every job runs before its ``setup`` lines: a log line naming the Slurm job, and
one OpenMP thread per allocated CPU (a setup line may override it)."""


@dataclass(frozen=True)
class JobOptions:
    """Resources and command of one Slurm job.

    ``args`` are the arguments of the ``emulator KIND`` command, passed through unchanged
    (for ``simulate``, ``--boxes N`` becomes an array of N tasks with one box each).
    ``log_dir`` must exist when the job is submitted (Slurm opens the log before the script runs).
    ``bin_dir`` holds the ``emulator``, ``torchrun`` and ``mpiexec`` executables to call
    (default: those of the running Python environment).
    """

    kind: str
    args: tuple = ()
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    time: str = "01:00:00"
    account: str | None = None
    partition: str | None = None
    job_name: str | None = None
    log_dir: str = "."
    setup: tuple = ()
    launcher: str = "srun"
    rdzv_port: int = 29500
    bin_dir: str = field(default_factory=lambda: str(Path(sys.executable).parent))

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got '{self.kind}'")
        for name in ("nodes", "tasks_per_node", "cpus_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise ValueError(f"gpus_per_node must be >= 0, got {self.gpus_per_node}")
        if not _TIME.match(self.time):
            raise ValueError(f"time must be HH:MM:SS or D-HH:MM:SS, got '{self.time}'")
        for name in ("job_name", "account", "partition"):
            value = getattr(self, name)
            if value is not None and not _NAME.match(value):
                raise ValueError(f"{name} must be letters, digits and _.+- only, got {value!r}")
        if not 1 <= self.rdzv_port <= 65535:
            raise ValueError(f"rdzv_port must be a TCP port in 1-65535, got {self.rdzv_port}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher must be one of {', '.join(LAUNCHERS)}, got '{self.launcher}'")
        if self.kind == "simulate" and "--boxes" not in self.args:
            raise ValueError("a simulate job needs '--boxes N' among its arguments")


def _split_boxes(args):
    """Remove ``--boxes N`` from simulate arguments; return (N, remaining args)."""
    args = list(args)
    i = args.index("--boxes")
    boxes = int(args[i + 1])
    if boxes < 1:
        raise ValueError(f"--boxes must be >= 1, got {boxes}")
    return boxes, args[:i] + args[i + 2:]


def _header(opts, array):
    """The ``#SBATCH`` lines; the log name carries the array index for array jobs."""
    log = "%x-%A_%a.out" if array else "%x-%j.out"
    lines = [
        f"--job-name={opts.job_name or 'emulator-' + opts.kind}",
        f"--nodes={opts.nodes}",
        f"--ntasks-per-node={opts.tasks_per_node}",
        f"--cpus-per-task={opts.cpus_per_task}",
        f"--time={opts.time}",
        f"--output={os.path.join(opts.log_dir, log)}",
    ]
    lines += [f"--gpus-per-node={opts.gpus_per_node}"] * (opts.gpus_per_node > 0)
    lines += [f"--account={opts.account}"] * (opts.account is not None)
    lines += [f"--partition={opts.partition}"] * (opts.partition is not None)
    return "\n".join("#SBATCH " + line for line in lines)


def render(opts):
    """The sbatch script for ``opts`` as a string."""
    args = list(opts.args)
    values = {"last_box": 0}
    if opts.kind == "simulate":
        boxes, args = _split_boxes(args)
        values["last_box"] = boxes - 1
    bin_dir = Path(opts.bin_dir)
    launcher = ("srun" if opts.launcher == "srun"
                else f'"{bin_dir / "mpiexec"}" -n "${{SLURM_NTASKS}}"')
    values.update(
        header=_header(opts, array=opts.kind == "simulate"),
        setup="\n".join(PREAMBLE + tuple(opts.setup)),
        emulator=bin_dir / "emulator",
        torchrun=bin_dir / "torchrun",
        procs_per_node=max(opts.gpus_per_node, 1),
        rdzv_port=opts.rdzv_port,
        launcher=launcher,
        args=shlex.join(args),
    )
    text = resources.files("jobs").joinpath("templates", f"{opts.kind}.sbatch").read_text()
    return Template(text).substitute(values)
