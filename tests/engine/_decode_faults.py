"""Per-file decode functions that misbehave on purpose, importable by decode worker processes."""

import os
import signal
import time

from dfx.engine.decode_pool import decode_into


def faulty_load(path, spec, out, max_pixels):
    """Crashes its process on files whose name contains ``crash``, hangs on ``hang``, decodes everything else."""
    if "crash" in path.name:
        os.kill(os.getpid(), signal.SIGSEGV)  # what a codec bug in a C library does
    if "hang" in path.name:
        time.sleep(3600)  # a file on a dead network mount
    return decode_into(path, spec, out, max_pixels)
