"""Keep freed CPU memory in the process between training steps (glibc malloc settings).

Every eager training step allocates and frees the same large activation and gradient buffers (a
small-cnn step at batch 128 makes several 16 MB ones). glibc's defaults hand such memory back to the
kernel once more than about twice the largest recent chunk sits free at the top of the heap, so the
next step takes a page fault on every 4 KB page of it again: on 2 CPU cores that was ~150,000 minor
faults per epoch of the throughput benchmark and ~10% of the CPU time. Raising the trim threshold
and pinning the mmap threshold at its largest value keeps those buffers in the heap for reuse. This
is what torch's own CPU launcher (``torch.backends.xeon.run_cpu``) achieves by preloading jemalloc
or tcmalloc with decay disabled.

The cost: memory freed by a run stays mapped until the process exits (resident size stays at its
peak). Allocations above 32 MB (glibc's limit for the mmap threshold) are still mapped fresh each
time. Numbers do not change: where a buffer lives has no effect on the arithmetic.

Set ``ALBENCH_MALLOC=default`` to leave glibc's settings alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # bytes: the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30  # bytes of free memory at the top of the heap before it is handed back

_state = "default"


def tune_malloc() -> bool:
    """Apply the settings to this process (idempotent); True when they are in effect.

    False on a C library other than glibc, when ``mallopt`` refuses, or when ``ALBENCH_MALLOC`` is
    ``default``.
    """
    global _state
    if _state == "tuned":
        return True
    if os.environ.get("ALBENCH_MALLOC", "").strip().lower() == "default":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mmap threshold first: setting it also stops glibc adjusting both thresholds on its own
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return False
    _state = "tuned"
    return True


def malloc_state() -> str:
    """'tuned' once :func:`tune_malloc` has applied the settings in this process, else 'default'."""
    return _state
