"""Validation of emulated fields against the truth, beside the two trivial predictors: the LR
as it is and the LR times the transfer function T(k) of the training pairs."""
from emulator.checkpoint import find_model, load_model
from emulator.data import find_pair_files
from sims.errors import InputError
from sims.pairfile import read_pair
from sims.stats import fit_transfer
from sims.validation import summary_table, validate_files


def transfer_from_model(path):
    """The ``lr_transfer`` dict ({"k": [h/Mpc], "t": [...], "source"}) stored in a checkpoint
    (file or directory); InputError naming the ``model`` setting or the file when it is missing."""
    path = find_model(path)
    transfer = load_model(path).lr_transfer
    if transfer is None:
        raise InputError(path, "checkpoint stores no lr_transfer T(k) (it predates them); fit one "
                               "on its training pairs with --transfer-from DIR")
    return {"k": list(transfer["k"]), "t": list(transfer["t"]), "source": f"checkpoint {path}"}


def transfer_from_pairs(data_dir):
    """The ``lr_transfer`` dict ({"k": [h/Mpc], "t": [...], "source"}) fitted by
    :func:`sims.stats.fit_transfer` on every paired file of ``data_dir``, read one at a time;
    InputError naming the file whose LR is not on its HR grid or whose box size differs."""
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

    k, t = fit_transfer(pairs(), box_size)
    return {"k": k.tolist(), "t": t.tolist(),
            "source": f"fitted on {len(paths)} training pairs in {data_dir}"}


def validate(truth, preds, out_dir, lr=None, mas="none", core=None, model=None, transfer_from=None):
    """Write ``out_dir``/report.json and plots comparing the predicted fields ``preds``
    (FILE[:DATASET] each) with ``truth`` (sims.validation.validate_files), print the summary
    table and return the report. With ``lr``, the LR as it is and, given ``model`` (a checkpoint
    storing T(k)) or ``transfer_from`` (training pairs to fit T(k) on), the LR x T(k) baseline."""
    lr_transfer = None
    if model is not None or transfer_from is not None:
        if lr is None:
            setting = "model" if model is not None else "transfer_from"
            raise InputError(setting, "the LR x T(k) baseline multiplies the LR field: give the LR too")
        lr_transfer = transfer_from_model(model) if model is not None else transfer_from_pairs(transfer_from)
    report = validate_files(truth, preds, out_dir, lr_spec=lr, mas=mas, core=core, lr_transfer=lr_transfer)
    print(summary_table(report))
    print(f"wrote {out_dir}/report.json and plots")
    return report
