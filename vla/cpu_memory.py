"""Keep the memory a CPU training step frees for the next step, instead of handing it back to the OS.

glibc serves each allocation above its mmap threshold with a fresh mmap and unmaps it when freed, and trims the
heap top back to the OS; its threshold adapts upward only to the largest block freed so far. A CPU training step
allocates and frees the same activations every step (the tabletop policy's FiLM CNNs: 32 x 32 x 48 x 48 values a
layer), so the next step page-faults them back in, zero-filled by the kernel. Pinning the threshold at glibc's
maximum (32 MiB) and never trimming keeps them in the heap: a 100-step run of the tabletop policy page-faulted 1.15
million times instead of 1.66, and trained ~1.1x faster (README, Benchmarks: "The tabletop training step"). A user's
own MALLOC_* environment settings win.

Training that ends in a process that goes on (the benchmarks evaluate where they trained; a notebook) hands what it
freed back at the end (`release_freed_memory`). Without it, a 10,000-step tabletop benchmark run held 11.6 GB
through its whole evaluation, though nothing referenced the training data any more; with it, 6.3 GB, of which 4.6
GB is heap that the trim could not return (session 38; why is not yet measured).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
TRIM_NEVER = 2**31 - 1  # an int: mallopt takes one


def glibc() -> ctypes.CDLL | None:
    return ctypes.CDLL(ctypes.util.find_library("c")) if platform.libc_ver()[0] == "glibc" else None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above; True if it did (False elsewhere: another libc, or MALLOC_* already set)."""
    libc = glibc()
    if libc is None or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_NEVER))


def release_freed_memory() -> bool:
    """Return to the OS what the process has freed (after a collection, for what only reference cycles held);
    True if glibc's malloc_trim released any (False elsewhere: another libc)."""
    gc.collect()
    libc = glibc()
    return libc is not None and bool(libc.malloc_trim(0))
