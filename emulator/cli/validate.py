"""``emulator validate``: compare predicted fields with the truth and write report.json + plots."""
import argparse


def add_parser(subparsers):
    p = subparsers.add_parser(
        "validate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Compare emulated fields with the true high-resolution field.",
        description="Compare one or more predicted overdensity fields with the truth: power spectra "
                    "(mean and scatter over samples), cross-correlation r(k), transfer function, "
                    "one-point PDF, reduced bispectrum Q(theta), seam statistic and calibration. "
                    "Writes OUT/report.json and PNG plots and prints a summary.")
    p.add_argument("--truth", required=True, metavar="FILE[:DATASET]",
                   help="HDF5 file and dataset of the true high-resolution overdensity; the file or "
                        "dataset must carry a box_size attribute in Mpc/h. The dataset defaults to 'hr'.")
    p.add_argument("--pred", required=True, action="append", metavar="FILE[:DATASET]",
                   help="HDF5 file and dataset of a predicted field; repeat the flag for several samples. "
                        "A dataset of shape (K, n, n, n) counts as K samples. The dataset defaults to 'sr'.")
    p.add_argument("--lr", default=None, metavar="FILE[:DATASET]",
                   help="Optional low-resolution input field of the same box (any cubic grid; it is "
                        "Fourier-resampled to the truth's grid), shown for reference. The dataset "
                        "defaults to 'lr'.")
    p.add_argument("--mas", default="none", choices=("none", "ngp", "cic", "tsc"),
                   help="Mass-assignment window to divide out of every field before taking spectra; "
                        "use the scheme the fields were painted with to get absolute P(k). Ratios and "
                        "r(k) between fields painted alike do not depend on it.")
    p.add_argument("--core", type=int, default=None, metavar="N",
                   help="Core size in cells of the tiles the prediction was assembled from; when given, "
                        "the seam statistic across tile boundaries is reported per axis.")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="Output directory for report.json and the PNG plots (created if missing).")
    p.set_defaults(run=run)


def run(args):
    from sims.validation import summary_table, validate_files

    report = validate_files(args.truth, args.pred, args.out, lr_spec=args.lr, mas=args.mas, core=args.core)
    print(summary_table(report))
    print(f"wrote {args.out}/report.json and plots")
    return 0
