"""glibc malloc tuning for processes that run ONNX models on many threads.

glibc raises its mmap threshold every time a large block is freed (up to 32 MiB), after which
blocks of that size come from per-thread heaps and are kept when freed. onnxruntime and numpy
allocate tens of megabytes per Piper sentence on several TTS threads, so an edge node's resident
memory climbed in steps for most of an hour before it levelled off (docs/performance.md, "Soak").
A fixed threshold returns big blocks to the kernel on free; the dynamic behaviour is then off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["set_mmap_threshold"]

log = logging.getLogger("shared.allocator")

_M_MMAP_THRESHOLD = -3  # glibc malloc.h


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's mmap threshold at ``nbytes`` (0: leave glibc's dynamic threshold alone).

    Returns whether the setting took: False on a C library without ``mallopt`` (musl, macOS),
    where the process simply runs with that library's own behaviour.
    """
    if nbytes <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("no glibc mallopt here: the mmap threshold is left to the C library")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(nbytes)) == 1
    if not ok:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) was refused; glibc's dynamic threshold stays", nbytes)
    return ok
