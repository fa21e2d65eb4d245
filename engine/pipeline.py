"""The scoring pipeline: decode workers fill reusable batch buffers, the backend infers, rows stream out.

Files → decode pool (:mod:`dfx.engine.decode_pool`: threads, or processes over shared memory) load_image +
preprocess straight into a slot of a batch buffer → backend.infer on full batches → rows in input order. At most
``depth`` batches are in flight, so memory is bounded whatever the folder size, and decoding of the next batches
overlaps inference of the current one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from .backends.base import Backend
from .decode import DEFAULT_MAX_PIXELS, DecodeError, Status
from .decode_pool import LoadFn, decode_into, default_workers, open_decode_pool

__all__ = ["Row", "score_files", "DEPTH"]

DEPTH = 3  # batches decoded ahead of inference by default


@dataclass(frozen=True)
class Row:
    """One output row: ``score`` is P(fake) (None when the file could not be scored)."""

    path: str
    score: float | None
    label: str | None
    status: str
    error: str = ""


def _task_size(batch_size: int, workers: int) -> int:
    """Images per decode task: up to 8, yet few enough that each batch still feeds every worker.

    A future per image cost about 10 % of decode-only throughput on 2 cores (README, "Pipeline throughput").
    """
    return max(1, min(8, batch_size // workers))


def _sigmoid(z: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * float(z)))  # stable for large |z|


def score_files(
    backend: Backend,
    files: Iterable[Path],
    batch_size: int = 32,
    workers: int | None = None,
    threshold: float | None = None,
    depth: int = DEPTH,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode: str = "auto",
    load: LoadFn = decode_into,
) -> Iterator[Row]:
    """Scores files with an activated backend, yielding one :class:`Row` per file in input order.

    Args:
        backend: an activated backend; its artifact's spec drives preprocessing.
        files: paths to score (a lazy iterator is fine).
        batch_size: images per inference call; clamped to the backend's profile.
        workers: decode threads or processes (default: :func:`default_workers`).
        threshold: P(fake) at or above which a row is labelled fake (default: the artifact's).
        depth: batches decoded ahead of inference.
        max_pixels: larger images get status ``too_large``.
        decode: ``auto``, ``threads`` or ``processes`` (see :mod:`dfx.engine.decode_pool`).
        load: the per-file decode function (tests inject failures through it).
    """
    spec = backend.info.spec
    thr = backend.info.threshold if threshold is None else threshold
    temperature = backend.info.temperature
    batch_size = backend.prepare(max(1, min(batch_size, backend.max_batch or batch_size)))
    workers = workers or default_workers()
    step = _task_size(batch_size, workers)
    pending: deque[tuple[list[Path], int, list[Future]]] = deque()
    it = iter(files)
    # On the way out the backend unpins the buffers (no copy is in flight: infer is synchronous), then the pool stops
    # its workers and frees them; a worker still writing into unpinned memory is harmless.
    with open_decode_pool(decode, spec, depth + 1, batch_size, workers, max_pixels, load) as pool, \
            backend.input_buffer(pool.buffers):
        free = deque(range(depth + 1))  # depth + 1 buffers and at most depth + 1 pending batches

        def finish(chunk: list[Path], buf: int, futures: list[Future]) -> list[Row]:
            errors = [e for f in futures for e in f.result()]
            ok = [i for i, e in enumerate(errors) if e is None]
            logits = _run(backend, pool.buffers[buf], ok, len(chunk)) if ok else np.zeros(0)
            free.append(buf)
            return _rows(chunk, errors, dict(zip(ok, logits)), thr, temperature)

        while True:
            chunk = list(islice(it, batch_size))
            if chunk:
                buf = free.popleft()
                futures = [pool.submit(chunk[i:i + step], buf, i) for i in range(0, len(chunk), step)]
                pending.append((chunk, buf, futures))
            if pending and (len(pending) > depth or not chunk):
                yield from finish(*pending.popleft())
            elif not chunk:
                return


def _rows(chunk: list[Path], errors: list[DecodeError | None], logits: dict[int, float], thr: float,
          temperature: float) -> list[Row]:
    rows = []
    for i, (path, err) in enumerate(zip(chunk, errors)):
        if err is not None:
            rows.append(Row(str(path), None, None, err.status, err.message))
        elif not math.isfinite(logits[i]):  # NaN or an FP16 overflow: an error row, never a silent "real"
            rows.append(Row(str(path), None, None, Status.MODEL_ERROR,
                            f"the model returned a non-finite logit ({logits[i]}) for this image"))
        else:
            s = _sigmoid(logits[i] / temperature)
            rows.append(Row(str(path), s, "fake" if s >= thr else "real", Status.OK))
    return rows


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

