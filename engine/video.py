"""Videos: sample frames, find and score their faces, one row per video (``pip install 'dfx[video]'``: PyAV).

Frames are decoded in order (seeking is slower than decoding for the short clips this is for) and sampled at
``fps`` per second of presentation time, at most ``max_frames`` per video: a longer video is sampled more
sparsely so that the samples still span all of it. Each sampled frame goes through the
face front-end exactly as an image does (:func:`dfx.engine.face_frontend.faces_into`), crops are scored in
batches, and the video's score is the **mean of its top-quartile face scores** (the highest ⌈n/4⌉ of the n face
scores): a fake face that shows in part of the video still counts, while one odd frame of a real video does
not decide alone. The video's row also says how many frames were scored and how many faces were found;
per-frame face rows are written on request. An unreadable video, or one without a face, gets an error row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from .backends.base import Backend
from .decode import DecodeError, Status
from .face_frontend import FacesFound, faces_into, no_face_error
from .pipeline import Row, face_rows, infer_rows, result_row
from .spec import PreprocessSpec

__all__ = ["score_videos", "aggregate", "upright", "DEFAULT_FPS", "MAX_FRAMES", "video_reader_available"]

DEFAULT_FPS = 1.0
MAX_FRAMES = 300  # per video: five minutes at the default rate bounds the work one file can cause


def video_reader_available() -> bool:
    """True when PyAV (the ``video`` extra) is installed."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def aggregate(scores: list[float]) -> float:
    """A video's score from its face scores: the mean of the highest ⌈n/4⌉."""
    top = sorted(scores, reverse=True)[:max(1, math.ceil(len(scores) / 4))]
    return float(np.mean(top))


def upright(frame) -> Image.Image:
    """A decoded frame as an RGB image the right way up: phone videos store portrait frames sideways with a
    display rotation (counter-clockwise degrees, as FFmpeg's display matrix gives it), which faces need applied."""
    img = frame.to_image()
    rotation = int(getattr(frame, "rotation", 0) or 0)
    return img.rotate(rotation, expand=True) if rotation % 360 else img


def _frames(path: Path, fps: float, max_frames: int) -> Iterator[tuple[int, object]]:
    """(frame index, PIL image) of the sampled frames, in order."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DecodeError(Status.NOT_IMAGE, "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # A video longer than max_frames / fps is sampled more sparsely, so the samples still span all of it.
        duration = container.duration / av.time_base if container.duration else None
        interval = max(1.0 / fps, duration / max_frames if duration else 0.0)
        next_t, taken = 0.0, 0
        for index, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else index / float(stream.average_rate or 25)
            if t + 1e-6 < next_t:
                continue
            yield index, upright(frame)
            taken += 1
            next_t = t + interval
            if taken >= max_frames:
                return


def score_videos(backend: Backend, spec: PreprocessSpec, paths: Iterable[Path], threshold: float,
                 fps: float = DEFAULT_FPS, per_frame: bool = False, max_frames: int = MAX_FRAMES) -> Iterator[Row]:
    """Scores each video's faces; yields (per-frame face rows, when asked, then) one row per video.

    Args:
        backend: an activated backend.
        spec: the run's spec; it must crop faces (``spec.faces``).
        paths: video files.
        threshold: P(fake) at or above which a row is labelled fake.
        fps: frames sampled per second of video.
        per_frame: also write a row per face per sampled frame.
        max_frames: sampled frames per video at most.
    """
    if spec.faces is None:
        raise ValueError("videos are scored by their faces: the spec must crop faces")
    return _score_all(backend, spec, paths, threshold, fps, per_frame, max_frames)


def _score_all(backend: Backend, spec: PreprocessSpec, paths: Iterable[Path], threshold: float, fps: float,
               per_frame: bool, max_frames: int) -> Iterator[Row]:
    if not video_reader_available():
        for p in paths:
            yield Row(str(p), None, None, Status.DECODE_ERROR, "video needs PyAV: pip install 'dfx[video]'")
        return
    for path in paths:
        yield from _score_video(backend, spec, path, threshold, fps, per_frame, max_frames)


def _score_video(backend: Backend, spec: PreprocessSpec, path: Path, threshold: float, fps: float, per_frame: bool,
                 max_frames: int) -> Iterator[Row]:
    temperature = backend.info.temperature
    span = spec.faces.max_faces
    buf = np.empty((span, 3, *spec.input_size), np.float32)
    frames_seen, found_faces, scores, detail = 0, 0, [], []
    try:
        for index, img in _frames(path, fps, max_frames):
            frames_seen += 1
            found: FacesFound = faces_into(img, spec, buf)
            if not found.faces:
                continue
            found_faces += found.total
            logits = infer_rows(backend, buf, list(range(len(found.faces))), span)
            rows = face_rows(str(path), found, list(logits), threshold, temperature, frame=index)
            scores += [r.score for r in rows if r.status == Status.OK]
            if per_frame:
                detail += rows
    except DecodeError as e:
        yield result_row(str(path), e, None, threshold, temperature, frames=frames_seen)
        return
    except Exception as e:  # noqa: BLE001 - a broken container or codec must become a row, never end the scan
        yield result_row(str(path), DecodeError(Status.DECODE_ERROR, f"{type(e).__name__}: {e}".strip()), None,
                         threshold, temperature, frames=frames_seen)
        return
    yield from detail
    if frames_seen == 0:
        yield Row(str(path), None, None, Status.DECODE_ERROR, "no frame could be decoded", frames=0)
    elif not found_faces:
        yield result_row(str(path), no_face_error(spec.faces.min_face, f"in {frames_seen} sampled frames"), None,
                         threshold, temperature, faces=0, frames=frames_seen)
    elif not scores:  # faces, but every logit was NaN or infinite
        yield result_row(str(path), None, float("nan"), threshold, temperature, faces=found_faces,
                         frames=frames_seen)
    else:
        s = aggregate(scores)
        yield Row(str(path), s, "fake" if s >= threshold else "real", Status.OK, faces=found_faces,
                  frames=frames_seen)
