"""Process-wide settings of the C runtime for CPU work.

glibc's malloc serves blocks above a threshold (128 KiB, adapting up to 32 MiB) with a fresh
``mmap`` and gives them back with ``munmap`` when freed (mallopt(3)). A U-Net pass allocates and
frees dozens of activations of tens of MiB, so every pass faults its working set back in page by
page, zero-filled by the kernel: system time that grows with the tile batch. Serving every block
from the heap and keeping freed memory there (no mmap, a trim threshold above any working set)
makes the second pass reuse the first one's pages. The peak memory is unchanged: it is the
working set either way. ``benchmarks/bench_unet.py --allocator`` measures both ways side by side.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
"""mallopt(3) parameter numbers (glibc malloc.h)."""
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the top of the heap kept by the process rather than returned to the OS."""


def hold_freed_memory():
    """Make glibc's malloc keep freed memory for reuse (module docstring). Returns whether it
    applied: False where the C library is not glibc (no ``mallopt``) or refused a setting."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
