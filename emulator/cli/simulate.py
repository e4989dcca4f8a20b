"""``emulator simulate``: paired low/high-resolution PM boxes, one HDF5 file per seed."""
import argparse

COSMOLOGY_FLAGS = (("h", "Dimensionless Hubble constant h = H0 / (100 km/s/Mpc)"),
                   ("Omega_m", "Matter density parameter today"),
                   ("Omega_b", "Baryon density parameter today (enters the EH98 transfer function)"),
                   ("n_s", "Scalar spectral index"),
                   ("sigma8", "rms linear overdensity in 8 Mpc/h top-hat spheres at z = 0"))


def add_parser(subparsers):
    p = subparsers.add_parser(
        "simulate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Simulate paired LR/HR boxes with a particle-mesh N-body code.",
        description="Run, for each box, a low-resolution and a high-resolution FastPM "
                    "particle-mesh simulation from the same initial conditions (resolution-"
                    "invariant white noise, 2LPT start) and write DIR/box_0000.h5, ... with "
                    "float32 CIC overdensity datasets 'lr' and 'hr'. Box i uses seed SEED + i. "
                    "Boxes already complete are skipped, so an interrupted run can be resumed "
                    "by repeating the command.")
    p.add_argument("--out", required=True, metavar="DIR", help="Output directory (created).")
    p.add_argument("--boxes", type=int, default=1, metavar="N", help="Number of boxes (seeds).")
    p.add_argument("--first-box", type=int, default=0, metavar="I",
                   help="Index of the first box: the run writes boxes I to I + N - 1 (one Slurm "
                        "array task per box uses '--first-box TASK_ID --boxes 1').")
    p.add_argument("--box-size", type=float, required=True, metavar="L",
                   help="Box side in Mpc/h.")
    p.add_argument("--lr-particles", type=int, required=True, metavar="NL",
                   help="Particles per side of the low-resolution run (even).")
    p.add_argument("--hr-particles", type=int, required=True, metavar="NH",
                   help="Particles per side of the high-resolution run (even, at least NL).")
    p.add_argument("--grid", type=int, required=True, metavar="G",
                   help="Cells per side of the HR grid; G and NH must divide one another.")
    p.add_argument("--lr-grid", type=int, default=None, metavar="GL",
                   help="Cells per side of the LR grid (GL and NL must divide one another); by "
                        "default the HR grid, as in the reference work.")
    p.add_argument("--redshift", type=float, required=True, metavar="Z",
                   help="Redshift of the output fields.")
    p.add_argument("--steps", type=int, required=True, metavar="S",
                   help="Kick-drift-kick steps, linear in the scale factor, from --z-init to Z.")
    p.add_argument("--seed", type=int, required=True, metavar="SEED",
                   help="Seed of the first box's white noise; box i uses SEED + i.")
    p.add_argument("--z-init", type=float, default=49.0,
                   help="Starting redshift of the 2LPT initial conditions.")
    p.add_argument("--force-mesh-factor", type=int, default=2, metavar="B",
                   help="Force mesh cells per particle per side (FastPM's B).")
    for name, text in COSMOLOGY_FLAGS:
        p.add_argument(f"--{name.lower().replace('_', '-')}", dest=name, type=float, default=None,
                       help=f"{text}; default: the Planck 2018 value.")
    p.add_argument("--keep-snapshots", action="store_true",
                   help="Also write the final LR and HR particles of box i as Gadget-style "
                        "snapshots DIR/snapshots/box_i/snap_lr.hdf5 and snap_hr.hdf5.")
    p.add_argument("--force", action="store_true",
                   help="Recompute and overwrite boxes that already exist.")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="Do not show progress bars.")
    p.set_defaults(run=run)


def run(args):
    from sims.cosmology import Cosmology
    from sims.pairs import PairConfig, simulate_boxes

    given = {name: getattr(args, name) for name, _ in COSMOLOGY_FLAGS if getattr(args, name) is not None}
    config = PairConfig(seed=args.seed, box_size=args.box_size, lr_particles=args.lr_particles,
                        hr_particles=args.hr_particles, grid=args.grid, lr_grid=args.lr_grid,
                        redshift=args.redshift, steps=args.steps, z_init=args.z_init,
                        force_mesh_factor=args.force_mesh_factor)
    skipped = simulate_boxes(args.out, config, Cosmology(**given), boxes=args.boxes,
                             first_box=args.first_box, force=args.force,
                             keep_snapshots=args.keep_snapshots, progress=args.progress)
    print(f"{args.out}: {args.boxes} boxes ({skipped} already complete, skipped)")
