"""``scan()``: the main job as one library call — score files and folders, stream rows to a writer."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .artifact import check_threshold
from .decode import IMAGE_EXTENSIONS, Status, is_video_path
from .decode_pool import check_buffers_fit, resolve_decode_mode
from .default_model import default_model_path
from .errors import DfxError
from .face_frontend import resolve_faces
from .inputs import iter_inputs, path_key
from .output_record import OutputRecord, check_output_path, claim_output, output_lock
from .pipeline import DEPTH, Row, score_files
from .progress import progress_bar
from .select import open_backend
from .video import DEFAULT_FPS, score_videos
from .writers import FACE_FIELDS, FIELDS, already_scored, appends, format_for, open_writer

__all__ = ["scan", "ScanSummary", "explain_no_images"]

log = logging.getLogger("dfx.engine")


@dataclass
class ScanSummary:
    """Counts of a finished scan."""

    scored: int = 0
    fake: int = 0
    videos: int = 0  # of ``scored``: videos, each one row however many frames it gave
    passed: Counter = field(default_factory=Counter)  # files in the folders not looked at, by extension
    skipped_resume: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    backend: str = ""
    model: str = ""

    @property
    def failed(self) -> int:
        """Files that got an error row."""
        return sum(self.errors.values())

    def line(self) -> str:
        """One human-readable summary line."""
        rate = self.scored / self.seconds if self.seconds > 0 else 0.0
        statuses = ", ".join(f"{n} {s}" for s, n in self.errors.most_common())
        err = f", {_count(self.failed, 'error')} ({statuses})" if self.failed else ""
        skip = f", {self.skipped_resume} already in the output" if self.skipped_resume else ""
        what = _count(self.scored - self.videos, "image") + (f" and {_count(self.videos, 'video')}"
                                                              if self.videos else "")
        line = (f"scored {what}: {self.fake} fake, {self.scored - self.fake} real{err}{skip} "
                f"in {self.seconds:.1f} s ({rate:.1f} {'files' if self.videos else 'img'}/s, {self.model} on "
                f"{self.backend})")
        if self.passed:  # an extensionless crawl or unlisted format must not look like a complete scan
            top = self.passed.most_common(4)
            exts = ", ".join(f"{k} {v}" for k, v in top) + (", …" if len(self.passed) > len(top) else "")
            line += (f"; {_count(sum(self.passed.values()), 'other file')} in the folders not looked at ({exts}); "
                     f"a file named on the command line is read whatever its extension")
        return line


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 ("1 error", "3 errors")."""
    return f"{n} {noun}{'s' * (n != 1)}"


def _unseen(files: Iterator[Path], done: set[str], summary: ScanSummary, bar) -> Iterator[Path]:
    """``files`` without those already in the output being resumed."""
    for f in files:
        if path_key(f) in done:
            summary.skipped_resume += 1
            bar.update(1)
        else:
            yield f


_VIDEO_WITHOUT_FACES = "a video: videos are scored by their faces, and this run does not look for faces (--faces on)"


def _images_only(files: Iterator[Path], videos: list[Path]) -> Iterator[Path]:
    """``files`` without the videos, which are set aside in ``videos`` (scored after the images)."""
    for f in files:
        if is_video_path(f):
            videos.append(f)
        else:
            yield f


def _count_into(bar, inputs: Sequence[str | Path], recursive: bool) -> None:
    try:
        bar.total = sum(1 for _ in iter_inputs(inputs, recursive))
        bar.refresh()
    except Exception:  # noqa: BLE001 - a count is a nicety; the scan reports the real problems
        pass


def explain_no_images(inputs: Sequence[str | Path], recursive: bool) -> str:
    """Why ``inputs`` hold no image to score, and what to do about it."""
    folders = [Path(p) for p in inputs if Path(p).is_dir()]
    videos = [f for d in folders for f in (d.rglob("*") if recursive else d.iterdir()) if is_video_path(f)]
    if videos:
        return (f"no images to score in {', '.join(map(str, inputs))}: found {len(videos)} video file(s) "
                f"(e.g. {videos[0]}); videos are scored by their faces, which this run does not look for: use "
                f"--faces on (or auto with a model that crops faces)")
    if not recursive and any(any(iter_inputs([d], recursive=True)) for d in folders):
        return (f"no images directly in {', '.join(map(str, folders))}, but its subfolders have some; add "
                f"--recursive to search them")
    return (f"no images to score in {', '.join(map(str, inputs))} (looked for "
            f"{' '.join(IMAGE_EXTENSIONS)}{'' if recursive else ', not in subfolders'})")


def scan(
    inputs: Sequence[str | Path],
    engine: str | Path | None = None,
    backend: str = "auto",
    output: str | None = None,
    fmt: str | None = None,
    recursive: bool = False,
    resume: bool = False,
    batch_size: int = 32,
    threads: int | None = None,
    threshold: float | None = None,
    progress: bool | None = None,
    stdout: IO[str] | None = None,
    decode: str = "auto",
    fp16: bool = True,
    overwrite: bool = False,
    faces: str = "auto",
    fps: float = DEFAULT_FPS,
    per_frame: bool = False,
) -> ScanSummary:
    """Scores every image (and, when faces are cropped, every video) under ``inputs`` and writes one row per file
    (after a row per face when faces are cropped).

    Args:
        inputs: files and folders.
        engine: a ``.plan`` or ``.onnx`` written by dfx-export (default: the bundled model).
        backend: ``auto`` or a backend name.
        output: result file (``None``: stdout).
        fmt: ``table``, ``csv``, ``jsonl`` or ``json`` (default: from the output suffix, else table).
        recursive: descend into subfolders.
        resume: skip paths already in ``output`` and append.
        batch_size: images per inference call.
        threads: decode workers (threads or processes, see ``decode``).
        threshold: overrides the model's P(fake) threshold for the label column.
        progress: show a progress bar (default: when stderr is a terminal).
        stdout: stream for stdout output (tests).
        decode: decode workers: ``auto``, ``threads`` or ``processes``.
        fp16: on a GPU, run ``NAME.fp16.onnx`` when it lies beside the ``NAME.onnx`` given.
        overwrite: replace an existing, non-empty ``output`` (otherwise refused unless ``resume``).
        faces: ``auto`` (the artifact's setting), ``on`` or ``off``: find faces, crop them as the model was
            trained, and score each (see :mod:`dfx.engine.face_frontend`).
        fps: video frames sampled per second (faces on).
        per_frame: also write a row per face per sampled video frame.
    """
    if threshold is not None:
        try:
            threshold = check_threshold(threshold)
        except ValueError as e:
            raise DfxError(str(e)) from e
    fmt = format_for(output, fmt)
    if output is not None:
        check_output_path(output, inputs)
        if not resume and not overwrite and os.path.isfile(output) and os.path.getsize(output) > 0:
            raise DfxError(f"{output} already holds results; continue it with --resume, or replace it with "
                           f"--overwrite")
    if not 0 < fps <= 60:
        raise DfxError(f"--fps must be above 0 and at most 60, got {fps}")
    artifact = engine or default_model_path()
    be = open_backend(artifact, backend, fp16=fp16)
    spec = resolve_faces(faces, be.info.spec)
    passed: Counter = Counter()
    files = iter_inputs(inputs, recursive, videos=spec.faces is not None, passed=passed)
    first = next(files, None)
    if first is None:  # stop before anything is written, and say why
        raise DfxError(explain_no_images(inputs, recursive))
    files = itertools.chain([first], files)
    # The mode is resolved here for the summary only: the pool gets ``decode`` itself, so that ``auto`` can still
    # fall back to threads when worker processes cannot start.
    mode = resolve_decode_mode(decode, spec.faces is not None)
    check_buffers_fit(DEPTH + 1, min(batch_size, be.max_batch or batch_size), be.info.spec)  # before any output
    summary = ScanSummary(backend=f"{be.name} ({be.device}), {mode} decoding"
                          + (f", faces by {spec.faces.detector}" if spec.faces else ""),
                          model=f"{be.info.arch} from {be.path.name}", passed=passed)
    fields = FACE_FIELDS if spec.faces is not None else FIELDS
    run_threshold = be.info.threshold if threshold is None else threshold
    with contextlib.ExitStack() as stack:
        if output is not None:
            stack.enter_context(output_lock(output))
        bar = stack.enter_context(progress_bar(unit="img", desc="scoring", enabled=progress))
        if not bar.disable:  # a total gives an ETA: cheap without --recursive (a listing); else counted alongside
            if recursive:
                threading.Thread(target=_count_into, args=(bar, inputs, recursive), daemon=True).start()
            else:
                _count_into(bar, inputs, recursive)
        if output is not None:  # another model's, threshold's or face crop's rows: refused before reading them
            record = OutputRecord.for_run(be.info, run_threshold, artifact, spec.faces)
            claim_output(output, record, appending=appends(output, resume))
        done = already_scored(Path(output), fmt, fields) if resume and output else set()
        if done:
            files = _unseen(files, done, summary, bar)
        append = appends(output, resume)
        writer = open_writer(output, fmt, append=append, stdout=stdout, fields=fields)
        videos: list[Path] = []
        t0 = time.perf_counter()
        try:
            with be:
                images = _images_only(files, videos)
                rows = score_files(be, images, batch_size, threads, threshold, decode=decode, faces=faces)
                # Videos after the images: their frames decode in order, not in the pool. Only a video named
                # explicitly reaches here with faces off; it gets a row saying why it was not scored.
                if spec.faces is not None:
                    rows = itertools.chain(rows, score_videos(be, spec, videos, run_threshold, fps, per_frame))
                else:
                    rows = itertools.chain(rows, (Row(str(v), None, None, Status.NOT_IMAGE, _VIDEO_WITHOUT_FACES)
                                                  for v in videos))
                for i, row in enumerate(rows):
                    writer.write(row)
                    if row.face is not None or row.frame is not None:
                        continue  # a face's row: the file's own row follows
                    if row.status == Status.OK:
                        summary.scored += 1
                        summary.fake += row.label == "fake"
                        summary.videos += is_video_path(Path(row.path))
                    else:
                        summary.errors[row.status] += 1
                    if i % batch_size == batch_size - 1:
                        writer.flush()  # rows reach the file batch by batch: a crash loses nothing already scored
                    bar.update(1)
                writer.close()
        except OSError as e:  # a full disk, a removed output folder: the rows flushed so far stay, resumable
            raise DfxError(f"cannot write {output or 'the output'}: {e.strerror or e}; the rows written so far "
                           f"are kept (--resume continues)") from e
        finally:
            with contextlib.suppress(OSError):
                writer.close()
            summary.seconds = time.perf_counter() - t0
    return summary

