"""Keeping freed memory in the process while training on a CPU.

glibc's malloc gives blocks above its mmap threshold (which adapts up to 32 MiB) straight back to the kernel when
they are freed, and trims the top of its heap once more than its trim threshold is free there. A training step on
the CPU allocates activations larger than that and frees them again (Meso-4's first convolution at batch 32:
67 MB in fp32), so every step mapped fresh pages and the kernel zeroed each on first touch. Raising both
thresholds keeps the memory for the next step: the same effect PyTorch's CPU performance guide gets by swapping in
jemalloc or tcmalloc, without a preloaded library. Peak memory is unchanged; it is just not handed back between
steps. ``DFX_KEEP_FREED_MEMORY=0`` in the environment leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory", "KEEP_BYTES"]

KEEP_BYTES = 1 << 30  # blocks up to this size come from (and return to) the heap; this much may stay free there
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Asks glibc's malloc to keep freed blocks of up to :data:`KEEP_BYTES` in this process (and the DataLoader
    workers it forks later). Once per process.

    Returns:
        True when the C library is glibc and took both settings; False elsewhere (musl, macOS, Windows) or when
        ``DFX_KEEP_FREED_MEMORY=0``, where nothing changes.
    """
    global _done
    if _done is None:
        _done = False
        if os.environ.get("DFX_KEEP_FREED_MEMORY", "1") == "0":
            return _done
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            # mallopt returns 1 on success; the mmap threshold first, so no block is trimmed before it holds.
            _done = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
    return _done
