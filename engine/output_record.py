"""The record beside a result file: which model and threshold wrote its rows, so ``--resume`` never mixes two.

``scores.csv`` gets ``scores.csv.dfx.json``. A checkpoint's ONNX, FP16 ONNX and TensorRT engine carry the same
dfx record, so a scan started on the CPU may be resumed on the GPU; another model, or another threshold (the
label column would change meaning half-way), is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .artifact import ModelInfo, atomic_write_text
from .errors import DfxError

__all__ = ["OutputRecord", "record_path", "claim_output"]

log = logging.getLogger("dfx.engine")


@dataclass(frozen=True)
class OutputRecord:
    """Who wrote a result file.

    Attributes:
        model: the model's arch name (for messages).
        model_id: sha256 of the artifact's dfx record (spec, threshold, metrics, training provenance).
        threshold: the P(fake) threshold the label column uses.
        artifact: the file that was run (for messages; not compared).
    """

    model: str
    model_id: str
    threshold: float
    artifact: str

    @classmethod
    def for_run(cls, info: ModelInfo, threshold: float, artifact: str | Path) -> OutputRecord:
        """The record of a scan of ``info``'s model labelling at ``threshold``."""
        model_id = hashlib.sha256(info.to_json().encode()).hexdigest()
        return cls(info.arch, model_id, float(threshold), str(artifact))


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
            return
    atomic_write_text(path, json.dumps(asdict(record), indent=1) + "\n")
