"""The one error type for bad user input, and the one-line form of every error that is not a bug,
so every command (and every MPI rank) reports them the same way."""
import math
import os
import shlex
import subprocess

import numpy as np


class InputError(ValueError):
    """Bad input from the user: names the offending file (or option) and what is wrong with it.

    The CLI prints ``error: <source>: <problem>`` and exits with status 2.
    """

    def __init__(self, source, problem):
        self.source = str(source)
        self.problem = str(problem)
        super().__init__(f"{self.source}: {self.problem}")


def check_int(name, value, minimum=1):
    """InputError naming setting ``name`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(name, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name, value, low, high, open_low=False, open_high=False):
    """InputError naming setting ``name`` unless ``value`` is a finite number in the interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not ok:
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise InputError(name, f"must be a number in {interval}, got {value!r}")
    return value


def check_choice(name, value, choices):
    """InputError naming setting ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(name, f"must be one of {sorted(choices)}, got {value!r}")
    return value


def one_line(err):
    """(exit status, message on one line) of an error the user should see as one line: bad input
    (2), an operating-system failure such as a full disk or a missing permission (1), a failed
    step run as a subprocess (1), an interrupt (130); None for anything else (a bug, shown with
    its traceback)."""
    if isinstance(err, InputError):
        status, text = 2, str(err)
    elif isinstance(err, KeyboardInterrupt):
        status, text = 130, "interrupted; the progress recorded so far is kept (rerun with --resume)"
    elif isinstance(err, subprocess.CalledProcessError):      # its own error was shown above
        status, text = 1, f"'{shlex.join(map(str, err.cmd))}' failed with exit status {err.returncode}"
    elif isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        status, text = 1, where + (os.strerror(err.errno) if err.errno else str(err))
    else:
        return None
    return status, " ".join(text.split())
