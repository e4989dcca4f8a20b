"""A real one-node Slurm cluster on localhost for the job-template tests.

Starts munged, slurmctld and slurmd as root with all state under a temporary folder and free
ports, and stops them afterwards. Needs Debian's slurmctld, slurmd and munge (``.ci/run``
installs them); where they are missing or do not start, the caller skips with the reason.
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo")


def missing_reason():
    """Why a cluster cannot start here, or None."""
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)} missing; .ci/run installs them)"
    if os.geteuid() != 0:
        return "a local Slurm cluster needs root (SlurmUser=root)"
    return None


def _free_port():
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
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


def _binary(name):
    return shutil.which(name) or str(Path("/usr/sbin", name))


@contextlib.contextmanager
def local_cluster(root, timeout=30.0):
    """Run a one-node cluster under ``root``; yields the environment for sbatch/squeue."""
    root = Path(root)
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    (root / "slurm.conf").write_text(_conf(root, host, os.cpu_count()))
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    pids = []
    try:
        subprocess.run([_binary("munged"), f"--socket={root}/munge.socket",
                        f"--pid-file={root}/munged.pid", f"--seed-file={root}/munge.seed",
                        f"--log-file={root}/munged.log", "--force"], check=True, env=env)
        pids.append(root / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([_binary(daemon), "-f", str(root / "slurm.conf")], check=True, env=env)
            pids.append(root / f"{daemon}.pid")
        _wait_idle(env, timeout)
        yield env
    finally:
        for pid_file in reversed(pids):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)


def _wait_idle(env, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        if state.returncode == 0 and state.stdout.strip().startswith("idle"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"local Slurm node not idle after {timeout} s")


def submit_and_wait(script, env, cwd, timeout=300):
    """``sbatch --wait`` a script; returns the CompletedProcess (check its returncode)."""
    return subprocess.run(["sbatch", "--wait", str(script)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
