"""``emulator validate``: compare predicted fields with the truth and write report.json + plots."""
import argparse


def add_parser(subparsers):
    p = subparsers.add_parser(
        "validate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="Compare emulated fields with the true high-resolution field.",
        description="Compare one or more predicted overdensity fields with the truth: power spectra "
                    "(mean and scatter over samples), cross-correlation r(k), transfer function, "
                    "one-point PDF, reduced bispectrum Q(theta), seam statistic and calibration; "
                    "with --lr, the same P(k) ratio and r(k) for two trivial predictors of the truth: "
                    "the LR field as it is and, given --model or --transfer-from, the LR times a "
                    "transfer function T(k) fitted on training pairs. Writes OUT/report.json and "
                    "PNG plots and prints a summary.")
    p.add_argument("--truth", required=True, metavar="FILE[:DATASET]",
                   help="HDF5 file and dataset of the true high-resolution overdensity; the file or "
                        "dataset must carry a box_size attribute in Mpc/h. The dataset defaults to 'hr'.")
    p.add_argument("--pred", required=True, action="append", metavar="FILE[:DATASET]",
                   help="HDF5 file and dataset of a predicted field; repeat the flag for several samples. "
                        "A dataset of shape (K, n, n, n) counts as K samples. The dataset defaults to 'sr'.")
    p.add_argument("--lr", default=None, metavar="FILE[:DATASET]",
                   help="Optional low-resolution input field of the same box (any cubic grid; it is "
                        "Fourier-resampled to the truth's grid), shown for reference and judged as "
                        "a predictor of the truth itself (the 'LR as is' baseline). The dataset "
                        "defaults to 'lr'.")
    p.add_argument("--mas", default="none", choices=("none", "ngp", "cic", "tsc"),
                   help="Mass-assignment window to divide out of every field before taking spectra; "
                        "use the scheme the fields were painted with to get absolute P(k). Ratios and "
                        "r(k) between fields painted alike do not depend on it.")
    p.add_argument("--core", type=int, default=None, metavar="N",
                   help="Core size in cells of the tiles the prediction was assembled from; when given, "
                        "the seam statistic across tile boundaries is reported per axis.")
    transfer = p.add_mutually_exclusive_group()
    transfer.add_argument("--model", default=None, metavar="PATH",
                          help="Checkpoint file, or directory holding model.pt, whose stored "
                               "T(k) = sqrt(P_HR / P_LR) of its training pairs gives the 'LR x T(k)' "
                               "baseline (needs --lr; the network itself is not run).")
    transfer.add_argument("--transfer-from", default=None, metavar="DIR",
                          help="Training data directory of paired files (*.h5, LR on the HR grid): "
                               "T(k) = sqrt(P_HR / P_LR) fitted on its pairs gives the 'LR x T(k)' "
                               "baseline (needs --lr). Use the pairs the model was trained on, "
                               "never the truth being validated.")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="Output directory for report.json and the PNG plots (created if missing).")
    p.set_defaults(run=run)


def run(args):
    from emulator.validate import validate

    validate(args.truth, args.pred, args.out, lr=args.lr, mas=args.mas, core=args.core,
             model=args.model, transfer_from=args.transfer_from)
