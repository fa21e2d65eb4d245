"""Decode workers: files → model input, written straight into slots of reusable batch buffers.

A pool owns the batch buffers (``buffers``: n_buffers × batch × 3 × H × W, float32) and decodes a run of files
into consecutive slots of one of them with ``submit``, which returns a future of per-file errors. Two kinds,
looked up by name in :data:`DECODE_POOLS`:

- ``threads``: a thread pool in this process. Pillow releases the GIL while it decodes and resizes, but the rest
  of each image's work holds it, so threads stop scaling at a few cores (measured on a 16-core GPU machine:
  1,040 img/s with 2 threads, 1,660–1,800 with 8, *less* with 16).
- ``processes``: worker processes writing into shared memory (:mod:`dfx.engine.decode_processes`), which scale
  with cores and survive a file that crashes or hangs a decoder.

``auto`` (:func:`resolve_decode_mode`) picks processes where at least :data:`PROCESS_MIN_CPUS` CPUs are usable or
faces are detected, threads otherwise; the measurements behind the rule are in the README ("Decode workers").
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, DecodeError, Status, load_image
from .errors import DfxError
from .face_frontend import FacesFound, image_into
from .spec import PreprocessSpec

__all__ = ["DecodePool", "ThreadDecodePool", "DECODE_POOLS", "DECODE_MODES", "PROCESS_MIN_CPUS", "MAX_WORKERS",
           "decode_into", "default_workers", "usable_cpus", "resolve_decode_mode", "open_decode_pool", "LoadFn",
           "check_buffers_fit", "file_slots", "FACE_DECODE_SIDE"]

log = logging.getLogger("dfx.engine")

# name → "module:Class"; keys (plus "auto") are the values of dfx-infer --decode.
DECODE_POOLS = {
    "threads": "dfx.engine.decode_pool:ThreadDecodePool",
    "processes": "dfx.engine.decode_processes:ProcessDecodePool",
}
DECODE_MODES = ("auto", *DECODE_POOLS)
# At 2 CPUs threads and processes decode equally fast (README, "Decode workers") and threads start instantly;
# from 4 CPUs on the GIL caps threads while processes keep scaling.
PROCESS_MIN_CPUS = 4
MAX_WORKERS = 256  # more decode workers than this only contend (and thousands of processes would swamp a machine)
FACE_DECODE_SIDE = 2048  # with faces, JPEGs decode at the largest 1/2^k scale that keeps both sides at least this

# The per-file work: decode ``path`` and preprocess it into ``out``; an error instead of raising. ``out`` is one slot
# (3, H, W), or the file's ``span`` slots (span, 3, H, W) when the spec crops faces. On success a load returns None,
# or a small picklable value (the faces it cropped) that comes back with the file's result.
LoadFn = Callable[[Path, PreprocessSpec, np.ndarray, int], Any]


def decode_into(path: Path, spec: PreprocessSpec, out: np.ndarray, max_pixels: int) -> DecodeError | FacesFound | None:
    """Decodes ``path`` and preprocesses it (or its faces) into ``out``; returns the error instead of raising it.

    Whole images decode at a reduced JPEG scale when the file is large. For face crops a photo keeps at least
    :data:`FACE_DECODE_SIDE` pixels a side (a face is a small part of a photo and its crop needs the pixels), so
    only very large JPEGs are reduced, which bounds a worker's memory.
    """
    try:
        target = spec.input_size if spec.faces is None else (FACE_DECODE_SIDE, FACE_DECODE_SIDE)
        return image_into(load_image(path, target_size=target, max_pixels=max_pixels), spec, out)
    except DecodeError as e:
        return e
    except Exception as e:  # noqa: BLE001 - one odd file must become a row, never end a million-image run
        return DecodeError(Status.DECODE_ERROR, f"{type(e).__name__}: {e}")


def usable_cpus() -> int:
    """CPUs this process may run on (affinity and container limits included where the OS reports them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decode workers: one per usable CPU, at least 2, at most 32."""
    return max(2, min(32, usable_cpus()))


def resolve_decode_mode(mode: str = "auto", faces: bool = False) -> str:
    """``threads`` or ``processes`` for ``mode``: ``auto`` picks processes from :data:`PROCESS_MIN_CPUS` usable
    CPUs on, or whenever ``faces`` are detected (the detector's Python stages hold the GIL; at 2 CPUs processes
    gave 7 % more images/s than threads with faces on, README "Faces")."""
    if mode not in DECODE_MODES:
        raise DfxError(f"unknown decode mode {mode!r}; valid: {', '.join(DECODE_MODES)}")
    if mode == "auto":
        return "processes" if faces or usable_cpus() >= PROCESS_MIN_CPUS else "threads"
    return mode


def lower_priority(native_id: int = 0) -> None:
    """Lowers a decode thread's or process's scheduling priority (Linux threads have their own nice value).

    On a CPU backend, inference and decoding share the cores; inference runs its operators on several threads
    that wait for each other, so a decoder that pre-empts one of them stalls all. Niced, decoding fills the gaps
    inference leaves instead of breaking its parallel sections.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, native_id, 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


def check_buffers_fit(n_buffers: int, batch_size: int, spec: PreprocessSpec) -> None:
    """Refuses batch buffers that cannot fit in this machine's memory (a typo'd --batch-size), with a clear line."""
    nbytes = n_buffers * batch_size * 3 * spec.input_size[0] * spec.input_size[1] * 4
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return
    if nbytes > total // 2:
        raise DfxError(f"the batch buffers would need {nbytes / 2**30:.1f} GiB, more than half of this machine's "
                       f"{total / 2**30:.0f} GiB; use a smaller --batch-size")


class DecodePool(ABC):
    """Decodes runs of files into slots of the pool's batch buffers.

    Args:
        spec: the preprocessing spec (input size, normalisation).
        n_buffers: batch buffers to allocate (the pipeline keeps ``depth + 1`` in rotation).
        batch_size: slots per buffer.
        workers: decode threads or processes (default: :func:`default_workers`).
        max_pixels: larger images get status ``too_large``.
        load: the per-file work (default :func:`decode_into`); a process pool needs a module-level function.

    Each file gets ``span`` consecutive slots: 1, or ``spec.faces.max_faces`` when the spec crops faces (file ``i``
    of a run starting at slot ``first`` owns slots ``first + i * span …``).
    """

    mode: str = ""

    def __init__(self, spec: PreprocessSpec, n_buffers: int, batch_size: int, workers: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, load: LoadFn = decode_into):
        self.spec, self.max_pixels, self.load = spec, max_pixels, load
        self.workers = workers or default_workers()
        self.span = spec.faces.max_faces if spec.faces is not None else 1
        if not 1 <= self.workers <= MAX_WORKERS:
            raise DfxError(f"decode workers must be between 1 and {MAX_WORKERS}, got {self.workers}")
        self.shape = (n_buffers, batch_size, 3, *spec.input_size)
        check_buffers_fit(n_buffers, batch_size, spec)
        self.buffers: np.ndarray

    @abstractmethod
    def submit(self, paths: Sequence[Path], buffer: int, first: int) -> Future:
        """Decodes ``paths`` into slots ``first…`` of ``buffers[buffer]``.

        Returns:
            A future of one result per path: a ``DecodeError``, or what ``load`` returned (None: decoded).
        """

    @abstractmethod
    def close(self) -> None:
        """Stops the workers and releases the buffers; pending work is cancelled."""

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_slots(buffer: np.ndarray, slot: int, span: int) -> np.ndarray:
    """A file's part of a batch buffer: the slot itself, or ``span`` slots from it."""
    return buffer[slot] if span == 1 else buffer[slot:slot + span]


def _decode_run(pool: DecodePool, paths: Sequence[Path], buffer: int, first: int) -> list[Any]:
    out = pool.buffers[buffer]
    return [pool.load(p, pool.spec, file_slots(out, first + i * pool.span, pool.span), pool.max_pixels)
            for i, p in enumerate(paths)]


def _lower_this_thread() -> None:
    lower_priority(threading.get_native_id())


class ThreadDecodePool(DecodePool):
    """Decode threads in this process (no start-up cost; the GIL caps them at a few cores)."""

    mode = "threads"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffers = np.empty(self.shape, np.float32)  # one block: one page-locking call for a GPU backend
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="dfx-decode",
                                        initializer=_lower_this_thread)

    def submit(self, paths: Sequence[Path], buffer: int, first: int) -> Future:
        return self._pool.submit(_decode_run, self, list(paths), buffer, first)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def open_decode_pool(mode: str, spec: PreprocessSpec, n_buffers: int, batch_size: int, workers: int | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, load: LoadFn = decode_into) -> DecodePool:
    """Starts the decode pool for ``mode`` (``auto``, ``threads`` or ``processes``).

    ``auto`` falls back to threads, with a warning, where worker processes cannot get their shared memory.
    """
    chosen = resolve_decode_mode(mode, spec.faces is not None)
    module, cls = DECODE_POOLS[chosen].split(":")
    pool_cls = getattr(importlib.import_module(module), cls)
    try:
        return pool_cls(spec, n_buffers, batch_size, workers, max_pixels, load)
    except DfxError as e:
        if mode != "auto" or chosen == "threads":
            raise
        log.warning("%s; decoding on threads instead", e)
        return ThreadDecodePool(spec, n_buffers, batch_size, workers, max_pixels, load)
