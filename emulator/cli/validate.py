"""``emulator validate``: compare predicted fields with the truth and write report.json + plots."""
import argparse

from sims.errors import InputError


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


def transfer_from_model(path):
    """The ``lr_transfer`` dict ({"k": [h/Mpc], "t": [...], "source"}) stored in a checkpoint
    (file or directory); InputError naming ``--model`` or the file when it is missing."""
    from emulator.checkpoint import load_model
    from emulator.cli.upsample import model_path

    path = model_path(path)
    transfer = load_model(path).lr_transfer
    if transfer is None:
        raise InputError(path, "checkpoint stores no lr_transfer T(k) (it predates them); fit one "
                               "on its training pairs with --transfer-from DIR")
    return {"k": list(transfer["k"]), "t": list(transfer["t"]), "source": f"checkpoint {path}"}


def transfer_from_pairs(data_dir):
    """The ``lr_transfer`` dict ({"k": [h/Mpc], "t": [...], "source"}) fitted by
    :func:`sims.stats.fit_lr_transfer` on every paired file of ``data_dir``, read one at a time;
    InputError naming the file whose LR is not on its HR grid or whose box size differs."""
    from emulator.data import find_pair_files
    from sims.pairfile import read_pair
    from sims.stats import fit_lr_transfer

    paths = find_pair_files(data_dir)
    box_size = float(read_pair(paths[0])[2]["box_size"])

    def pairs():
        for path in paths:
            lr, hr, attrs = read_pair(path)
            if lr.shape != hr.shape:
                raise InputError(path, f"LR grid {lr.shape} differs from the HR grid {hr.shape}; "
                                       "fitting T(k) needs the LR painted on the HR grid")
            if abs(float(attrs["box_size"]) / box_size - 1) > 1e-6:
                raise InputError(path, f"box size {attrs['box_size']} Mpc/h differs from the "
                                       f"{box_size} Mpc/h of {paths[0]}")
            yield lr, hr

    k, t = fit_lr_transfer(pairs(), box_size)
    return {"k": k.tolist(), "t": t.tolist(),
            "source": f"fitted on {len(paths)} training pairs in {data_dir}"}


def run(args):
    from sims.validation import summary_table, validate_files

    lr_transfer = None
    if args.model is not None or args.transfer_from is not None:
        if args.lr is None:
            flag = "--model" if args.model is not None else "--transfer-from"
            raise InputError(flag, "the LR x T(k) baseline multiplies the LR field: give --lr too")
        lr_transfer = (transfer_from_model(args.model) if args.model is not None
                       else transfer_from_pairs(args.transfer_from))
    report = validate_files(args.truth, args.pred, args.out, lr_spec=args.lr, mas=args.mas,
                            core=args.core, lr_transfer=lr_transfer)
    print(summary_table(report))
    print(f"wrote {args.out}/report.json and plots")
    return 0
