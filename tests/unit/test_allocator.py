"""The glibc mmap threshold the edge sets at start (shared/allocator.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from shared.allocator import set_mmap_threshold

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")

# In a child, because the setting is process-wide. malloc 8 MiB, free it, malloc 8 MiB again, then
# ask glibc (mallinfo2) how many bytes sit in mmapped blocks: with its dynamic threshold the free
# raised the threshold past 8 MiB, so the second block comes from the heap and is kept on free.
_CHILD = """
import ctypes, sys
from shared.allocator import set_mmap_threshold
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
took = set_mmap_threshold(int(sys.argv[1]))
libc.free(libc.malloc(8 << 20))
block = libc.malloc(8 << 20)
print(took, libc.mallinfo2().hblkhd >= 8 << 20)
libc.free(block)
"""


def _child(threshold: int) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(threshold)], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_zero_leaves_glibc_alone() -> None:
    assert set_mmap_threshold(0) is False


@glibc
def test_fixed_threshold_keeps_big_blocks_mmapped_after_a_free() -> None:
    assert _child(0) == ["False", "False"]  # glibc's dynamic threshold: the second block is heap
    assert _child(4 << 20) == ["True", "True"]  # fixed at 4 MiB: mmapped, returned to the kernel on free
