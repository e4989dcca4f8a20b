"""``emulator ingest``: paint a pair of existing LR/HR snapshots into a paired box file."""
import argparse


def add_parser(subparsers):
    p = subparsers.add_parser(
        "ingest", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Paint real LR/HR snapshots into a paired box file.",
        description="Paint a low-resolution dark-matter snapshot and a high-resolution snapshot "
                    "of the same volume (Gadget, AREPO, IllustrisTNG or Gadget-4 HDF5, or "
                    "Gadget-2 binary in SnapFormat 1 or 2; single file, chunk file, base name of "
                    "the chunks or snapdir directory) into one paired box file with "
                    "float32 overdensity datasets 'lr' and 'hr', the format 'emulator simulate' "
                    "writes and 'emulator train' reads.")
    p.add_argument("--lr", required=True, metavar="SNAPSHOT",
                   help="The low-resolution dark-matter snapshot (its PartType1 is painted).")
    p.add_argument("--hr", required=True, metavar="SNAPSHOT",
                   help="The high-resolution snapshot of the same box and redshift.")
    p.add_argument("--hr-type", choices=("dm", "gas"), default="dm",
                   help="Which HR particles to paint: dark matter (PartType1) or gas "
                        "(PartType0, mass-weighted).")
    p.add_argument("--grid", type=int, required=True, metavar="G",
                   help="Cells per side of the HR grid.")
    p.add_argument("--lr-grid", type=int, default=None, metavar="GL",
                   help="Cells per side of the LR grid; by default the HR grid, as in the "
                        "reference work.")
    p.add_argument("--mas", choices=("ngp", "cic", "tsc"), default="cic",
                   help="Mass-assignment scheme used for painting both snapshots.")
    p.add_argument("--length-unit", choices=("kpc/h", "Mpc/h"), default=None,
                   help="Length unit of the snapshots' coordinates; by default read from "
                        "UnitLength_in_cm in the header, else (as for every Gadget-2 binary) "
                        "guessed from BoxSize (above 4000 means kpc/h).")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="Paired box HDF5 file to write (written atomically).")
    p.add_argument("--force", action="store_true", help="Overwrite an existing --out.")
    p.set_defaults(run=run)


def run(args):
    from sims.ingest import ingest_pair

    attrs = ingest_pair(args.lr, args.hr, args.out, args.grid, hr_type=args.hr_type, mas=args.mas,
                        lr_grid=args.lr_grid, length_unit=args.length_unit, force=args.force)
    print(f"wrote {args.out}: lr {attrs['lr_grid']}^3 from {attrs['lr_particles']:g}^3 particles, "
          f"hr {attrs['grid']}^3 from {attrs['hr_particles']:g}^3 {args.hr_type} particles")
