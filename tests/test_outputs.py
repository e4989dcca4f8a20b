import os
import subprocess
import sys

import pytest

from sims.errors import InputError
from sims.outputs import acquire, atomic_path, check_writable, lock_output, lock_path, release, write_text


def test_atomic_path_replaces_the_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["out.txt"]
    with atomic_path(target) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_a_failing_first_write_leaves_neither_the_target_nor_a_temporary_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "fresh.h5") as tmp:
            open(tmp, "w").close()
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_check_writable_refuses_unusable_paths(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a directory"):
        check_writable(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        check_writable(tmp_path / "missing" / "out.h5")
    with pytest.raises(InputError, match="is not a directory"):
        check_writable(tmp_path / "file" / "out.h5")
    with pytest.raises(InputError, match="exists and is not a directory"):
        check_writable(tmp_path / "file", directory=True)
    check_writable(tmp_path / "new" / "deeper", directory=True)      # created later, with parents
    check_writable(tmp_path / "out.h5")
    assert sorted(os.listdir(tmp_path)) == ["file"]                  # the probes leave nothing


def test_check_writable_takes_a_new_relative_folder():
    """``emulator demo --out demo_out`` from the repository root: a relative folder that does not
    exist yet (this once looped for ever on dirname(''); run in a subprocess so that a regression
    fails instead of hanging the suite)."""
    code = "from sims.outputs import check_writable; check_writable('not_yet/demo_out', directory=True)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(__file__)),
                          timeout=60, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_lock_output_is_exclusive_and_removed_afterwards(tmp_path):
    out = tmp_path / "sr.h5"
    with lock_output(out):
        assert os.path.exists(lock_path(out))
        with pytest.raises(InputError, match="another run is writing it"):
            acquire(out)
    assert not os.path.exists(lock_path(out))
    fd = acquire(out, shared=True)
    release(out, acquire(out, shared=True))          # shared holders coexist
    release(out, fd)
    assert not os.path.exists(lock_path(out))


def test_the_lock_stays_while_any_holder_lives(tmp_path):
    """A rank that fails first (rank 0 of an aborted run) must not free the output for a new run
    while another rank of its run still holds the lock and writes."""
    out = tmp_path / "sr.h5"
    first, other = acquire(out, then_shared=True), acquire(out, shared=True)
    release(out, first)
    assert os.path.exists(lock_path(out))
    with pytest.raises(InputError, match="another run is writing it"):
        acquire(out)
    release(out, other)
    assert not os.path.exists(lock_path(out))
    release(out, acquire(out))
