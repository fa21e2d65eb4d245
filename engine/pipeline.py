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
from .face_frontend import FacesFound, resolve_faces

__all__ = ["Row", "score_files", "result_row", "face_rows", "infer_rows", "DEPTH"]

DEPTH = 3  # batches decoded ahead of inference by default


@dataclass(frozen=True)
class Row:
    """One output row: ``score`` is P(fake) (None when the file could not be scored).

    With face detection a file gets one row per scored face (``face`` set), then its own row (``face`` None) whose
    score is its most suspicious face's; a video's own row carries ``frames`` too (:mod:`dfx.engine.video`).
    """

    path: str
    score: float | None
    label: str | None
    status: str
    error: str = ""
    face: int | None = None  # the face's index in its image or frame, most confident first
    box: tuple[int, int, int, int] | None = None  # the detector's box (x0, y0, x1, y1) in the image's pixels
    face_confidence: float | None = None  # the detector's probability that it is a face
    faces: int | None = None  # on a file's own row: faces detected (more than max_faces are counted, not scored)
    frame: int | None = None  # video frame index, on per-frame face rows
    frames: int | None = None  # on a video's own row: frames scored


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
    faces: str = "auto",
) -> Iterator[Row]:
    """Scores files with an activated backend, yielding one :class:`Row` per file in input order (preceded by a
    row per face when faces are cropped).

    Args:
        backend: an activated backend; its artifact's spec drives preprocessing.
        files: paths to score (a lazy iterator is fine).
        batch_size: images (or face crops) per inference call; clamped to the backend's profile. With faces, each
            file reserves ``max_faces`` slots, so a batch holds ``batch_size // max_faces`` files.
        workers: decode threads or processes (default: :func:`default_workers`).
        threshold: P(fake) at or above which a row is labelled fake (default: the artifact's).
        depth: batches decoded ahead of inference.
        max_pixels: larger images get status ``too_large``.
        decode: ``auto``, ``threads`` or ``processes`` (see :mod:`dfx.engine.decode_pool`).
        load: the per-file decode function (tests inject failures through it).
        faces: ``auto`` (the artifact's setting), ``on`` or ``off``
            (see :func:`dfx.engine.face_frontend.resolve_faces`).
    """
    spec = resolve_faces(faces, backend.info.spec)
    thr = backend.info.threshold if threshold is None else threshold
    temperature = backend.info.temperature
    span = spec.faces.max_faces if spec.faces is not None else 1
    batch_size = backend.prepare(max(1, min(batch_size, backend.max_batch or batch_size)))
    per_batch = max(1, batch_size // span)  # files per buffer: each owns ``span`` slots (one per face it may have)
    slots = per_batch * span
    workers = workers or default_workers()
    step = _task_size(per_batch, workers)
    pending: deque[tuple[list[Path], int, list[Future]]] = deque()
    it = iter(files)
    # On the way out the backend unpins the buffers (no copy is in flight: infer is synchronous), then the pool stops
    # its workers and frees them; a worker still writing into unpinned memory is harmless.
    with open_decode_pool(decode, spec, depth + 1, slots, workers, max_pixels, load) as pool, \
            backend.input_buffer(pool.buffers):
        free = deque(range(depth + 1))  # depth + 1 buffers and at most depth + 1 pending batches

        def finish(chunk: list[Path], buf: int, futures: list[Future]) -> list[Row]:
            results = [r for f in futures for r in f.result()]
            filled = [i * span + j for i, r in enumerate(results) if not isinstance(r, DecodeError)
                      for j in range(len(r.faces) if isinstance(r, FacesFound) else 1)]
            logits = infer_rows(backend, pool.buffers[buf], filled, len(chunk) * span) if filled else np.zeros(0)
            free.append(buf)
            scores = dict(zip(filled, logits))
            rows = []
            for i, (path, result) in enumerate(zip(chunk, results)):
                if isinstance(result, FacesFound):
                    rows += face_rows(str(path), result, [scores[i * span + j] for j in range(len(result.faces))],
                                      thr, temperature)
                else:
                    rows.append(result_row(str(path), result, scores.get(i), thr, temperature))
            return rows

        while True:
            chunk = list(islice(it, per_batch))
            if chunk:
                buf = free.popleft()
                futures = [pool.submit(chunk[i:i + step], buf, i * span) for i in range(0, len(chunk), step)]
                pending.append((chunk, buf, futures))
            if pending and (len(pending) > depth or not chunk):
                yield from finish(*pending.popleft())
            elif not chunk:
                return


def result_row(path: str, result: DecodeError | None, logit: float | None, thr: float, temperature: float,
               **extra) -> Row:
    """The row of one scored input: its error, a ``model_error`` for a non-finite logit, or its score."""
    if isinstance(result, DecodeError):
        return Row(path, None, None, result.status, result.message, **extra)
    if not math.isfinite(logit):  # NaN or an FP16 overflow: an error row, never a silent "real"
        return Row(path, None, None, Status.MODEL_ERROR,
                   f"the model returned a non-finite logit ({logit}) for this image", **extra)
    s = _sigmoid(logit / temperature)
    return Row(path, s, "fake" if s >= thr else "real", Status.OK, **extra)


def face_rows(path: str, found: FacesFound, logits: list[float], thr: float, temperature: float,
              frame: int | None = None) -> list[Row]:
    """One row per cropped face, then (when ``frame`` is None) the image's own row: its most suspicious face."""
    rows = [result_row(path, None, z, thr, temperature, face=j, frame=frame, face_confidence=round(f.confidence, 4),
                       box=tuple(int(round(v)) for v in f.box)) for j, (f, z) in enumerate(zip(found.faces, logits))]
    if frame is not None:
        return rows
    scored = [r for r in rows if r.status == Status.OK]
    if not scored:  # every face's logit was non-finite: the image is a model error too
        return [*rows, Row(path, None, None, Status.MODEL_ERROR, rows[0].error, faces=found.total)]
    worst = max(scored, key=lambda r: r.score)
    return [*rows, Row(path, worst.score, worst.label, Status.OK, faces=found.total)]


def infer_rows(backend: Backend, buf: np.ndarray, ok: list[int], n: int) -> np.ndarray:
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

