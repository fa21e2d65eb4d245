"""The scoring pipeline: decode + preprocess on a thread pool into reusable batch buffers, infer, stream rows.

Files → (thread pool) load_image + preprocess straight into a slot of a batch buffer → backend.infer on full
batches → rows in input order. At most ``depth`` batches are in flight, so memory is bounded whatever the
folder size, and decoding of the next batches overlaps inference of the current one.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from .backends.base import Backend
from .decode import DEFAULT_MAX_PIXELS, DecodeError, Status, load_image
from .spec import PreprocessSpec, preprocess

__all__ = ["Row", "score_files", "default_threads"]


@dataclass(frozen=True)
class Row:
    """One output row: ``score`` is P(fake) (None when the file could not be scored)."""

    path: str
    score: float | None
    label: str | None
    status: str
    error: str = ""


def default_threads() -> int:
    """Decode threads: Pillow releases the GIL while decoding, so one per core (capped) keeps up."""
    return max(2, min(16, os.cpu_count() or 2))


def _load_into(path: Path, spec: PreprocessSpec, buf: np.ndarray, slot: int, max_pixels: int) -> DecodeError | None:
    try:
        preprocess(load_image(path, target_size=spec.input_size, max_pixels=max_pixels), spec, out=buf[slot])
        return None
    except DecodeError as e:
        return e
    except Exception as e:  # noqa: BLE001 - one odd file must become a row, never end a million-image run
        return DecodeError(Status.DECODE_ERROR, f"{type(e).__name__}: {e}")


def _load_run(paths: list[Path], spec: PreprocessSpec, buf: np.ndarray, first: int,
              max_pixels: int) -> list[DecodeError | None]:
    """Decodes consecutive files into consecutive slots: one pool task per run, not per image."""
    return [_load_into(p, spec, buf, first + i, max_pixels) for i, p in enumerate(paths)]


def _task_size(batch_size: int, threads: int) -> int:
    """Images per decode task: up to 8, yet few enough that each batch still feeds every thread.

    A future per image cost about 10 % of decode-only throughput on 2 cores (README, "Pipeline throughput").
    """
    return max(1, min(8, batch_size // threads))


def _yield_to_inference() -> None:
    """Runs in each decode thread: a lower scheduling priority (Linux threads have their own nice value).

    On a CPU backend, inference and decoding share the cores; inference runs its operators on several threads
    that wait for each other, so a decode thread that pre-empts one of them stalls all. Niced, decoding fills the
    gaps inference leaves instead of breaking its parallel sections.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z.astype(np.float64)))  # stable for large |z|


def score_files(
    backend: Backend,
    files: Iterable[Path],
    batch_size: int = 32,
    threads: int | None = None,
    threshold: float | None = None,
    depth: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[Row]:
    """Scores files with an activated backend, yielding one :class:`Row` per file in input order.

    Args:
        backend: an activated backend; its artifact's spec drives preprocessing.
        files: paths to score (a lazy iterator is fine).
        batch_size: images per inference call; clamped to the backend's profile.
        threads: decode threads (default: :func:`default_threads`).
        threshold: P(fake) at or above which a row is labelled fake (default: the artifact's).
        depth: batches decoded ahead of inference.
        max_pixels: larger images get status ``too_large``.
    """
    spec = backend.info.spec
    thr = backend.info.threshold if threshold is None else threshold
    batch_size = max(1, min(batch_size, backend.max_batch or batch_size))
    h, w = spec.input_size
    buffers = np.empty((depth + 1, batch_size, 3, h, w), np.float32)  # one block: one page-locking call
    free = deque(buffers)
    pending: deque[tuple[list[Path], np.ndarray, list[Future]]] = deque()
    it = iter(files)

    def finish(chunk: list[Path], buf: np.ndarray, futures: list[Future]) -> list[Row]:
        errors = [e for f in futures for e in f.result()]
        ok = [i for i, e in enumerate(errors) if e is None]
        logits = _run(backend, buf, ok, len(chunk)) if ok else np.zeros(0)
        free.append(buf)
        scores = dict(zip(ok, _sigmoid(logits)))
        rows = []
        for i, (path, err) in enumerate(zip(chunk, errors)):
            if err is None:
                s = float(scores[i])
                rows.append(Row(str(path), s, "fake" if s >= thr else "real", Status.OK))
            else:
                rows.append(Row(str(path), None, None, err.status, err.message))
        return rows

    threads = threads or default_threads()
    step = _task_size(batch_size, threads)
    # The pool shuts down (no decode thread writes any more) before the backend lets go of the buffers.
    with backend.input_buffer(buffers), ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dfx-decode",
                                                           initializer=_yield_to_inference) as pool:
        while True:
            chunk = list(islice(it, batch_size))
            if chunk:  # depth + 1 buffers and at most depth + 1 pending batches: a free buffer always exists
                buf = free.popleft()
                futures = [pool.submit(_load_run, chunk[i:i + step], spec, buf, i, max_pixels)
                           for i in range(0, len(chunk), step)]
                pending.append((chunk, buf, futures))
            if pending and (len(pending) > depth or not chunk):
                yield from finish(*pending.popleft())
            elif not chunk:
                return


def _run(backend: Backend, buf: np.ndarray, ok: list[int], n: int) -> np.ndarray:
    """Infers the decodable rows of a batch, respecting the backend's fixed profile limits."""
    x = buf[:n] if len(ok) == n else buf[ok]  # compaction copies only when a batch had failures
    lo, hi = backend.min_batch, backend.max_batch or len(x)
    out = []
    for start in range(0, len(x), hi):
        part = x[start:start + hi]
        m = len(part)
        if m < lo:  # a short last batch on an engine whose profile starts above it: pad, then drop the pad
            pad = np.zeros((lo - m, *part.shape[1:]), np.float32)
            part = np.concatenate([part, pad])
        out.append(backend.infer(part)[:m])
    return np.concatenate(out) if out else np.zeros(0, np.float32)

