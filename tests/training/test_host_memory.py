"""Freed memory stays in the process on glibc: a large block comes from the heap, not a fresh mapping."""

import os
import platform
import subprocess
import sys

import pytest

from dfx.training.host_memory import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Bytes glibc has mapped for single large blocks (mallinfo2's hblkhd) while a 100 MB array is alive, before and
# after keep_freed_memory — in a fresh interpreter, since the setting is for the whole process.
_PROBE = """
import ctypes, numpy as np
from dfx.training.host_memory import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def mapped_while_alive():
    a = np.ones(100_000_000, np.uint8)
    return libc.mallinfo2().hblkhd
before = mapped_while_alive()
print(before, keep_freed_memory(), mapped_while_alive())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_large_blocks_come_from_the_heap_once_asked():
    before, took, after = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True,
                                         text=True).stdout.split()
    assert int(before) >= 100_000_000 and took == "True" and int(after) < 100_000_000


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_the_environment_can_leave_malloc_alone():
    before, took, after = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True,
                                         env={**os.environ, "DFX_KEEP_FREED_MEMORY": "0"}).stdout.split()
    assert took == "False" and int(after) >= 100_000_000


def test_it_says_whether_it_changed_anything():
    assert keep_freed_memory() is GLIBC and keep_freed_memory() is GLIBC  # once per process; the same answer
