"""Writing outputs safely, for every command.

- :func:`atomic_path`: a kill never leaves a truncated file at an output's name (a temporary file
  next to it, flushed to disk, then renamed onto the name, atomic on POSIX file systems).
- :func:`check_writable`: an unusable output path (a missing or non-folder parent, a folder in
  place of a file, no permission, a pseudo file system) is an InputError before any work.
- :func:`lock_output`: one run at a time per output. An ``flock`` on ``OUT.lock``, which the
  kernel drops when its process dies, so a killed run never leaves a lock that blocks ``--resume``.
"""
import contextlib
import errno
import fcntl
import os
import tempfile

from sims.errors import InputError

TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
"""errno of a file system without flock (e.g. Lustre mounted without -o flock): run unlocked."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield ``path + '.tmp'`` for the block to write; when the block succeeds, fsync it and
    rename it onto ``path``; when it fails (or is interrupted), remove it and re-raise (an
    OSError that names no file, as h5py's do, as one naming ``path``)."""
    path = os.fspath(path)
    tmp = path + TMP_SUFFIX
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno and not err.filename:     # h5py's: name the output
            raise OSError(err.errno, os.strerror(err.errno), path) from err
        raise


def write_text(path, text, mode=None):
    """Write ``text`` to ``path`` atomically; ``mode``: permission bits to set (e.g. 0o755)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)


def check_writable(path, directory=False):
    """InputError naming ``path`` unless a file (``directory``: a folder, created if missing) can
    be written there: the folder that would hold it takes a new file, tried with an anonymous
    temporary file that leaves nothing behind."""
    path = os.fspath(path)
    if not directory and os.path.isdir(path):
        raise InputError(path, "is a directory; give a file name")
    if directory and os.path.exists(path) and not os.path.isdir(path):
        raise InputError(path, "exists and is not a directory")
    folder = os.path.abspath(path) if directory else os.path.dirname(os.path.abspath(path))
    while directory and not os.path.exists(folder):          # created with its parents later
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        problem = "does not exist" if not os.path.exists(folder) else "is not a directory"
        raise InputError(path, f"cannot be written: {folder} {problem}")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise InputError(path, f"cannot be written in {folder} ({err.strerror or err})") from None


def lock_path(out_path):
    """The lock file of an output: ``OUT.lock``."""
    return os.fspath(out_path) + LOCK_SUFFIX


def acquire(out_path, shared=False, then_shared=False):
    """Lock output ``out_path`` without waiting: an exclusive (or ``shared``) flock on
    ``OUT.lock`` (created); ``then_shared``: taken exclusively, so that no other process holds it,
    then turned shared. Returns the lock's file descriptor (the lock lasts while it is open, at
    most as long as this process), or None on a file system without flock. InputError naming the
    output while another live process holds the lock."""
    path = lock_path(out_path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, out_path):
                return None
            # the holder may have removed the file between our open and flock: lock the one at `path`
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.stat(path), os.fstat(fd)):
                    if then_shared:
                        _flock(fd, fcntl.LOCK_SH, out_path)
                    return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _flock(fd, operation, out_path):
    """flock without waiting: True when taken, False without flock support, InputError when held."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in _NO_FLOCK:
            return False
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise InputError(out_path, f"another run is writing it (lock {lock_path(out_path)} is "
                             "held by a live process); wait for that run to end") from None
        raise
    return True


def release(out_path, fd):
    """Give up a lock from :func:`acquire` (``fd`` None: nothing to do), removing ``OUT.lock``
    when no other process holds it: a holder that leaves first (a rank that failed while the
    others of its run still write) leaves the file locked, so no new run can start until the last
    holder is gone."""
    if fd is None:
        return
    try:
        with contextlib.suppress(InputError, FileNotFoundError):     # InputError: another holder
            if _flock(fd, fcntl.LOCK_EX, out_path) and os.path.samestat(os.stat(lock_path(out_path)),
                                                                        os.fstat(fd)):
                os.remove(lock_path(out_path))
    finally:
        os.close(fd)


@contextlib.contextmanager
def lock_output(out_path):
    """Hold the exclusive lock of output ``out_path`` for the block (see :func:`acquire`); the
    lock file is removed when the block ends, however it ends (but a kill)."""
    fd = acquire(out_path)
    try:
        yield
    finally:
        release(out_path, fd)
