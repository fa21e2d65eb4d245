"""Page-locking host memory for a scan, so batches go to the GPU by DMA without a staging copy."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["page_locked", "cudart_or_none"]

log = logging.getLogger("dfx.engine")


def cudart_or_none() -> Any:
    """``cuda.bindings.runtime`` when cuda-python (the ``gpu`` extra) is installed, else None."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return None
    return cudart


@contextmanager
def page_locked(buf: np.ndarray, cudart: Any) -> Iterator[bool]:
    """Registers ``buf`` with CUDA (``cudaHostRegister``) for the scope; yields whether it worked.

    Not being able to is never fatal: copies from pageable memory are slower, not wrong.
    """
    if cudart is None:
        log.debug("cuda-python is not installed; batch buffers stay pageable")
        yield False
        return
    ptr = buf.ctypes.data
    err = cudart.cudaHostRegister(ptr, buf.nbytes, cudart.cudaHostRegisterDefault)[0]
    if int(err) != 0:
        log.debug("cudaHostRegister failed (%s); batch buffers stay pageable", err)
        yield False
        return
    try:
        yield True
    finally:
        cudart.cudaHostUnregister(ptr)
