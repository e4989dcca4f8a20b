"""A real one-node Slurm cluster on localhost for the job-template tests.

Starts munged, slurmctld and slurmd as root with all state under a temporary folder and free
ports, and stops them afterwards (jobs cancelled, daemons terminated and waited for). Needs
Debian's slurmctld, slurmd and munge (``.ci/run`` installs them); where they are missing or do
not start, the caller skips with the reason.
"""
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = DAEMONS + ("sbatch", "sinfo", "squeue", "scontrol", "scancel")
ACTIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                           "REQUEUED", "RESIZING", "SIGNALING", "STAGE_OUT"})
"""Job states of a job that has not finished yet (``scontrol show job``)."""


def missing_reason():
    """Why a cluster cannot start here, or None."""
    missing = [d for d in COMMANDS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)} missing; .ci/run installs them)"
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root (SlurmUser=root)"
    return None


def free_port():
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(root, host, cpus):
    return f"""ClusterName=emutest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
ReturnToService=2
SlurmdParameters=config_overrides
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _binary(name):
    return shutil.which(name) or str(Path("/usr/sbin", name))


@contextlib.contextmanager
def local_cluster(root, timeout=30.0):
    """Run a one-node cluster under ``root``; yields the environment for sbatch/scontrol.

    Each daemon writes its process id to ``root/DAEMON.pid``.
    A daemon that does not start, or a node that is not idle within ``timeout`` seconds, raises
    RuntimeError with the end of the daemons' logs. On exit every job is cancelled and the
    daemons are terminated and waited for (killed if they outlive 10 s).
    """
    root = Path(root)
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    # at least 2 CPUs (config_overrides: slurmd trusts slurm.conf) so that 2-task jobs run anywhere
    (root / "slurm.conf").write_text(_conf(root, host, max(os.cpu_count(), 2)))
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    pids = []
    try:
        commands = {"munged": [_binary("munged"), f"--socket={root}/munge.socket",
                               f"--pid-file={root}/munged.pid", f"--seed-file={root}/munge.seed",
                               f"--log-file={root}/munged.log", "--force"],
                    "slurmctld": [_binary("slurmctld"), "-f", str(root / "slurm.conf")],
                    "slurmd": [_binary("slurmd"), "-f", str(root / "slurm.conf")]}
        for daemon, command in commands.items():
            started = subprocess.run(command, env=env, capture_output=True, text=True)
            if started.returncode:
                raise RuntimeError(f"{daemon} exited with {started.returncode}: "
                                   f"{started.stderr.strip()}{_log_tails(root)}")
            pids.append(_read_pid(root / f"{daemon}.pid"))
        _wait_idle(env, timeout, root)
        yield env
    finally:
        if len(pids) == len(commands):
            subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
            _wait_no_jobs(env, 10.0)
        _stop(pids)


def _read_pid(pid_file, timeout=5.0):
    """The pid a daemon wrote (it may write it just after its launcher returns)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            return int(pid_file.read_text())
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pid_file} not written")
        time.sleep(0.05)


def alive(pid):
    """True while ``pid`` runs (a zombie waiting for its parent counts as stopped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _stop(pids, timeout=10.0):
    """SIGTERM the daemons (last started first), wait for them, SIGKILL what remains."""
    for pid in reversed(pids):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in filter(alive, pids):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _log_tails(root, lines=5):
    tails = []
    for log in ("munged.log", "slurmctld.log", "slurmd.log"):
        path = Path(root, log)
        if path.exists():
            tails.append(f"\n--- {log}\n" + "\n".join(path.read_text().splitlines()[-lines:]))
    return "".join(tails)


def _wait_idle(env, timeout, root):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        if state.returncode == 0 and state.stdout.strip().startswith("idle"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"local Slurm node not idle after {timeout} s{_log_tails(root)}")


def _wait_no_jobs(env, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True)
        if queue.returncode or not queue.stdout.strip():
            return
        time.sleep(0.2)


@dataclass(frozen=True)
class JobResult:
    """A finished job: ``tasks`` maps each Slurm job id (one per array task) to its final
    (JobState, ExitCode) as ``scontrol show job`` reports them, e.g. ("COMPLETED", "0:0")."""

    job_id: int
    tasks: dict

    @property
    def ok(self):
        return bool(self.tasks) and all(t == ("COMPLETED", "0:0") for t in self.tasks.values())


def job_tasks(job_id, env):
    """{task job id: (JobState, ExitCode)} of job ``job_id`` (all tasks of an array job)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], env=env,
                           capture_output=True, text=True, check=True)
    tasks = {}
    for line in shown.stdout.splitlines():
        fields = dict(re.findall(r"\b(JobId|JobState|ExitCode)=(\S+)", line))
        tasks[int(fields["JobId"])] = (fields["JobState"], fields["ExitCode"])
    return tasks


def submit_and_wait(script, env, cwd, timeout=300.0, poll=0.2):
    """Submit ``script`` with ``sbatch`` and wait until all its tasks have finished.

    Polls ``scontrol show job`` every ``poll`` seconds (``sbatch --wait`` polls at 2 s, then
    8 s, which would dominate these seconds-long jobs). Returns a :class:`JobResult`; a job
    still active after ``timeout`` seconds is cancelled and raises TimeoutError.
    """
    submitted = subprocess.run(["sbatch", "--parsable", str(script)], env=env, cwd=cwd,
                               capture_output=True, text=True, check=True)
    job_id = int(submitted.stdout.strip().split(";")[0])
    deadline = time.monotonic() + timeout
    while True:
        tasks = job_tasks(job_id, env)
        if not any(state in ACTIVE_STATES for state, _ in tasks.values()):
            return JobResult(job_id, tasks)
        if time.monotonic() > deadline:
            subprocess.run(["scancel", str(job_id)], env=env)
            raise TimeoutError(f"Slurm job {job_id} still active after {timeout} s: {tasks}")
        time.sleep(poll)
