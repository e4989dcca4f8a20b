"""``emulator jobs render``: write a Slurm script for simulate, train, upsample or validate."""
import argparse
import os

from emulator.cli import StrictParser, build_parser
from jobs.render import JobOptions, render
from sims.errors import InputError
from sims.outputs import write_text


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "jobs", help="Render Slurm job scripts.",
        description="Render Slurm batch scripts that run the emulator's commands on a cluster.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    render = actions.add_parser(
        "render", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Fill in the template of one kind of job.",
        description="Fill in the Slurm template of one kind of job. Arguments after '--' are "
                    "passed unchanged to the emulator command the job runs (and checked now by "
                    "that command's parser), e.g. "
                    "'emulator jobs render simulate --out sim.sbatch -- --out data --boxes 8 ...'. "
                    "A simulate job becomes an array job with one task per box.")
    render.add_argument("kind", choices=("simulate", "train", "upsample", "validate"),
                        help="Which command the job runs.")
    render.add_argument("--out", required=True, help="Path of the sbatch script to write.")
    render.add_argument("--nodes", type=int, default=1, help="Number of nodes.")
    render.add_argument("--gpus-per-node", type=int, default=0,
                        help="GPUs per node; 0 runs on CPUs. Training starts one process per GPU.")
    render.add_argument("--tasks-per-node", type=int, default=None,
                        help="Tasks per node; defaults to the GPUs per node for upsample "
                             "(one MPI rank per GPU), else 1.")
    render.add_argument("--cpus-per-task", type=int, default=1, help="CPU cores per task.")
    render.add_argument("--time", default="01:00:00", help="Wall-time limit, HH:MM:SS or D-HH:MM:SS.")
    render.add_argument("--account", default=None, help="Slurm account to charge.")
    render.add_argument("--partition", default=None, help="Slurm partition.")
    render.add_argument("--job-name", default=None,
                        help="Job name (letters, digits, _.+-); default emulator-KIND.")
    render.add_argument("--log-dir", default=".", help="Folder for the job logs (created now).")
    render.add_argument("--setup", action="append", default=[],
                        help="A shell line run before the command, e.g. 'module load cuda' "
                             "(repeatable).")
    render.add_argument("--launcher", choices=("srun", "mpiexec"), default="srun",
                        help="How upsample starts its MPI ranks.")
    render.add_argument("--rdzv-port", type=int, default=29500,
                        help="torchrun rendezvous TCP port (1-65535) on the first node (train).")
    render.set_defaults(run=run)


def run(args):
    tasks = args.tasks_per_node or (max(args.gpus_per_node, 1) if args.kind == "upsample" else 1)
    try:
        opts = JobOptions(
            kind=args.kind, args=tuple(args.passthrough), nodes=args.nodes,
            gpus_per_node=args.gpus_per_node, tasks_per_node=tasks,
            cpus_per_task=args.cpus_per_task, time=args.time, account=args.account,
            partition=args.partition, job_name=args.job_name, log_dir=args.log_dir,
            setup=tuple(args.setup), launcher=args.launcher, rdzv_port=args.rdzv_port)
        script = render(opts)
    except ValueError as err:
        raise InputError(f"jobs render {args.kind}", err) from err
    try:        # the job's arguments, by the command's own parser: now, not on the cluster
        build_parser(StrictParser).parse_args([args.kind, *args.passthrough])
    except InputError as err:
        raise InputError(f"jobs render {args.kind}", f"the job's arguments after '--': "
                         f"{err.problem}") from None
    os.makedirs(args.log_dir, exist_ok=True)
    write_text(args.out, script, mode=0o755)
    print(f"wrote {args.out}")
    return 0
