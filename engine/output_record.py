"""The record beside a result file: which model and threshold wrote its rows, so ``--resume`` never mixes two.

``scores.csv`` gets ``scores.csv.dfx.json``. A checkpoint's ONNX, FP16 ONNX and TensorRT engine carry the same
dfx record, so a scan started on the CPU may be resumed on the GPU; another model, or another threshold (the
label column would change meaning half-way), is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from .artifact import ModelInfo, atomic_write_text
from .decode import VIDEO_EXTENSIONS, is_image_path
from .errors import DfxError
from .spec import FaceCrop

__all__ = ["OutputRecord", "record_path", "claim_output", "check_output_path", "output_lock"]

log = logging.getLogger("dfx.engine")


@dataclass(frozen=True)
class OutputRecord:
    """Who wrote a result file.

    Attributes:
        model: the model's arch name (for messages).
        model_id: sha256 of the artifact's dfx record (spec, threshold, metrics, training provenance).
        threshold: the P(fake) threshold the label column uses.
        artifact: the file that was run (for messages; not compared).
        faces: the run's face crop (``off``: whole images); records written before faces existed have none.
    """

    model: str
    model_id: str
    threshold: float
    artifact: str
    faces: str = "off"

    @classmethod
    def for_run(cls, info: ModelInfo, threshold: float, artifact: str | Path,
                faces: FaceCrop | None = None) -> OutputRecord:
        """The record of a scan of ``info``'s model labelling at ``threshold``, cropping ``faces``."""
        model_id = hashlib.sha256(info.to_json().encode()).hexdigest()
        return cls(info.arch, model_id, float(threshold), str(artifact), "off" if faces is None else repr(faces))


def record_path(output: str | Path) -> Path:
    """Where the record of ``output`` lives."""
    output = Path(output)
    return output.with_name(output.name + ".dfx.json")


def claim_output(output: str | Path, record: OutputRecord, appending: bool) -> None:
    """Writes ``record`` beside ``output``; when appending, first refuses a file another model or threshold wrote.

    Raises:
        DfxError: appending would mix rows of two models or two thresholds.
    """
    path = record_path(output)
    if appending:
        try:
            old = OutputRecord(**json.loads(path.read_text()))
        except FileNotFoundError:
            log.warning("%s has no record of the model that wrote it (%s); resuming as if it were %s",
                        output, path.name, record.model)
        except (ValueError, TypeError) as e:
            raise DfxError(f"{path}: unreadable record ({e}); delete it to resume anyway") from e
        else:
            if old.model_id != record.model_id:
                raise DfxError(f"{output} was written by another model ({old.model}, {old.artifact}); resuming it "
                               f"with {record.model} ({record.artifact}) would mix two models' scores in one file. "
                               f"Resume with that model, or write to a new --output")
            if old.threshold != record.threshold:
                raise DfxError(f"{output} was labelled at threshold {old.threshold}, this run uses "
                               f"{record.threshold}; resume with --threshold {old.threshold}, or write to a new "
                               f"--output")
            if old.faces != record.faces:
                raise DfxError(f"{output} was written with faces {old.faces}, this run uses {record.faces}; resume "
                               f"with the same --faces, or write to a new --output")
            return
    atomic_write_text(path, json.dumps(asdict(record), indent=1) + "\n")


def check_output_path(output: str | Path, inputs: Sequence[str | Path]) -> None:
    """Refuses an output that would destroy an input or hang the run, before anything is opened.

    Raises:
        DfxError: the output is not a regular file (a folder, FIFO, device), is named like an image or video, or
            is one of the input files.
    """
    path = Path(output)
    if is_image_path(path) or path.suffix.lower() in VIDEO_EXTENSIONS:
        raise DfxError(f"--output {output} is named like an image or video: writing scores there would replace "
                       f"it. Name the output .csv, .jsonl or .json")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise DfxError(f"--output {output}: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise DfxError(f"--output {output} is not a regular file (a folder, pipe or device); give a file path")
    for item in inputs:
        try:
            if os.path.samefile(path, item):
                raise DfxError(f"--output {output} is one of the inputs; it would be overwritten")
        except OSError:
            continue


@contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Holds an exclusive lock on ``output`` for a run, so two dfx-infer runs never write one file at once.

    Raises:
        DfxError: another process holds the lock, or the file cannot be opened.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks to take
        yield
        return
    created = not os.path.exists(output)
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(output, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise DfxError(f"cannot write {output}: {e.strerror or e}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise DfxError(f"another dfx-infer is writing {output} right now; wait for it to finish, or write "
                           f"to another --output") from e
        try:
            yield
        finally:
            if created and os.fstat(fd).st_size == 0:  # a run that stopped before writing leaves no empty file
                Path(output).unlink(missing_ok=True)
    finally:
        os.close(fd)
