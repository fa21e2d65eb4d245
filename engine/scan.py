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
from .decode import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Status
from .decode_pool import check_buffers_fit, resolve_decode_mode
from .default_model import default_model_path
from .errors import DfxError
from .inputs import iter_inputs, path_key
from .output_record import OutputRecord, check_output_path, claim_output, output_lock
from .pipeline import DEPTH, score_files
from .progress import progress_bar
from .select import open_backend
from .writers import already_scored, appends, format_for, open_writer

__all__ = ["scan", "ScanSummary", "explain_no_images"]

log = logging.getLogger("dfx.engine")


@dataclass
class ScanSummary:
    """Counts of a finished scan."""

    scored: int = 0
    fake: int = 0
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
        err = f", {self.failed} errors ({', '.join(f'{n} {s}' for s, n in self.errors.most_common())})" \
            if self.failed else ""
        skip = f", {self.skipped_resume} already in the output" if self.skipped_resume else ""
        return (f"scored {self.scored} images: {self.fake} fake, {self.scored - self.fake} real{err}{skip} "
                f"in {self.seconds:.1f} s ({rate:.1f} img/s, {self.model} on {self.backend})")


def _unseen(files: Iterator[Path], done: set[str], summary: ScanSummary, bar) -> Iterator[Path]:
    """``files`` without those already in the output being resumed."""
    for f in files:
        if path_key(f) in done:
            summary.skipped_resume += 1
            bar.update(1)
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
    videos = [f for d in folders for f in (d.rglob("*") if recursive else d.iterdir())
              if f.suffix.lower() in VIDEO_EXTENSIONS]
    if videos:
        return (f"no images to score in {', '.join(map(str, inputs))}: found {len(videos)} video file(s) "
                f"(e.g. {videos[0]}); videos are not supported yet — extract frames as images first")
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
) -> ScanSummary:
    """Scores every image under ``inputs`` and writes one row per file.

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
    files = iter_inputs(inputs, recursive)
    first = next(files, None)
    if first is None:  # stop before anything is written, and say why
        raise DfxError(explain_no_images(inputs, recursive))
    files = itertools.chain([first], files)
    artifact = engine or default_model_path()
    be = open_backend(artifact, backend, fp16=fp16)
    decode = resolve_decode_mode(decode)
    check_buffers_fit(DEPTH + 1, min(batch_size, be.max_batch or batch_size), be.info.spec)  # before any output
    summary = ScanSummary(backend=f"{be.name} ({be.device}), {decode} decoding",
                          model=f"{be.info.arch} from {be.path.name}")
    with contextlib.ExitStack() as stack:
        if output is not None:
            stack.enter_context(output_lock(output))
        bar = stack.enter_context(progress_bar(unit="img", desc="scoring", enabled=progress))
        if not bar.disable:  # a total gives an ETA: cheap without --recursive (a listing); else counted alongside
            if recursive:
                threading.Thread(target=_count_into, args=(bar, inputs, recursive), daemon=True).start()
            else:
                _count_into(bar, inputs, recursive)
        done = already_scored(Path(output), fmt) if resume and output else set()
        if done:
            files = _unseen(files, done, summary, bar)
        append = appends(output, resume)
        if output is not None:
            record = OutputRecord.for_run(be.info, be.info.threshold if threshold is None else threshold, artifact)
            claim_output(output, record, appending=append)
        writer = open_writer(output, fmt, append=append, stdout=stdout)
        t0 = time.perf_counter()
        try:
            with be:
                for i, row in enumerate(score_files(be, files, batch_size, threads, threshold, decode=decode)):
                    writer.write(row)
                    if row.status == Status.OK:
                        summary.scored += 1
                        summary.fake += row.label == "fake"
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

