"""The commands keep freed memory for reuse instead of handing it back to the kernel.

glibc serves every block above its mmap threshold (128 KiB, raised dynamically up to 32 MiB)
with fresh pages from the kernel and returns them on ``free``. A restoration model allocates
and frees tensors far larger than that in every layer of every tile and every training step,
so each of those pages is faulted in and zeroed again, every time: on a 2-core CPU a third of
a tiled 4000x3000 restore and of a training run was system time (docs/performance.md).
Telling glibc never to use mmap and never to trim the heap keeps the freed pages mapped and
reused; the price is a higher resident peak (the heap keeps its high-water mark).

Every command (train.py, evaluate.py, restore.predict, restore.app, restore.export) calls
:func:`keep_freed_memory` when it starts; ``RESTORE_MALLOC=default`` leaves glibc as it is.
Processes forked from the command (data-loading workers) inherit the setting; DDP ranks are
new runs of the same command and set it themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
LARGEST_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: trim only a top chunk above 2 GiB

ENV = "RESTORE_MALLOC"


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse; returns whether it now does.

    False when ``RESTORE_MALLOC=default`` asks for glibc as it is, or when the C library is
    not glibc (musl, macOS), which has no such switch.
    """
    mode = os.environ.get(ENV, "retain")
    if mode not in ("retain", "default"):
        raise SystemExit(f"error: {ENV}={mode!r}: give retain (the default) or default (glibc as it is)")
    if mode == "default":
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD))


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
    except (OSError, AttributeError):
        return None
    return libc
