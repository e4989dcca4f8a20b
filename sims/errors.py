"""The one error type for bad user input, and the one-line form of every error that is not a bug,
so every command (and every MPI rank) reports them the same way."""


class InputError(ValueError):
    """Bad input from the user: names the offending file (or option) and what is wrong with it.

    The CLI prints ``error: <source>: <problem>`` and exits with status 2.
    """

    def __init__(self, source, problem):
        self.source = str(source)
        self.problem = str(problem)
        super().__init__(f"{self.source}: {self.problem}")


def one_line(err):
    """(exit status, message) of an error the user should see as one line: bad input (2), an
    operating-system failure such as a full disk or a missing permission (1), an interrupt
    (130); None for anything else (a bug, shown with its traceback)."""
    if isinstance(err, InputError):
        return 2, str(err)
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted; the progress recorded so far is kept (rerun with --resume)"
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        return 1, f"{where}{err.strerror or err}"
    return None
