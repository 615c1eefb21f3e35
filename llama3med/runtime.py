"""Process-level settings that make CPU inference and training faster; applied by the `llama3med` command.

glibc's malloc serves every allocation above its mmap threshold (128 KiB, growing only as far as
chunks are freed) with a fresh `mmap` and returns it with `munmap` when freed, and trims the heap top above
128 KiB. PyTorch on CPU allocates and frees activations of tens of megabytes at every layer, so each layer
pays for page faults on new zeroed pages: on the project's 2-core machine, EfficientNet-Lite0 on 16 tiles spent
a third to a half of its CPU time in the kernel. Raising the mmap threshold to its ceiling and keeping freed memory
in the heap removes most of that (bench/cpu_settings.py; figures in docs/PERFORMANCE.md).

The cost: the process keeps its peak heap instead of returning it to the system between steps. Set either
`MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` yourself (glibc's own variables) to keep your choice; set
`LLAMA3MED_KEEP_MALLOC=1` to leave malloc untouched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)
MMAP_THRESHOLD_CEILING = 32 << 20  # glibc refuses larger values from mallopt on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed memory at the heap top instead of returning it


def tune_cpu_allocator() -> bool:
    """Raise glibc malloc's mmap and trim thresholds (Linux with glibc only). Returns whether they were set."""
    if os.environ.get("LLAMA3MED_KEEP_MALLOC") or {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_CEILING)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
