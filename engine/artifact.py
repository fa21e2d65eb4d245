"""The metadata record that travels inside every artifact (checkpoint, ONNX, engine sidecar).

The runtime learns the spec, the labels and the threshold from here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DfxError
from .spec import PreprocessSpec

__all__ = ["ModelInfo", "check_threshold", "LABELS", "META_KEY", "FORMAT_VERSION", "sha256_file", "atomic_write_bytes",
           "atomic_write_text", "read_onnx_info"]

LABELS = {0: "real", 1: "fake"}
META_KEY = "dfx"  # key under which the JSON record is stored (ONNX metadata_props, safetensors header)
FORMAT_VERSION = 3  # 2 adds ``temperature``, 3 the spec's ``faces``; a record is written at the lowest version
# that holds it, so one without either stays readable by older dfx


@dataclass
class ModelInfo:
    """What a deployed model needs to be run correctly.

    Attributes:
        arch: registered model name (``meso4``, ``xception``…).
        spec: the preprocessing spec the model was trained with.
        threshold: P(fake) at or above which an image is labelled fake (validation EER point by default), on the
            calibrated scale when ``temperature`` is set.
        temperature: scores are sigmoid(logit / temperature) (1: uncalibrated); see :mod:`dfx.engine.calibration`.
        labels: class index → name; always {0: real, 1: fake}.
        model_kwargs: arguments that rebuild the architecture (e.g. input size for MesoNet's dense layer).
        metrics: validation metrics of the chosen weights.
        extra: anything else worth keeping (training config, versions, source checksums).
    """

    arch: str
    spec: PreprocessSpec
    threshold: float = 0.5
    labels: dict[int, str] = field(default_factory=lambda: dict(LABELS))
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the format version and the output convention spelled out."""
        calibrated = self.temperature != 1.0
        d = {
            # An older dfx must refuse a calibrated record rather than score it uncalibrated against its threshold,
            # and a face-cropping one rather than score whole images.
            "format_version": 3 if self.spec.faces is not None else 2 if calibrated else 1,
            "arch": self.arch,
            "output": "logit; sigmoid(logit / temperature) = P(fake)" if calibrated else
                      "logit; sigmoid(logit) = P(fake)",
            "labels": {str(k): v for k, v in self.labels.items()},
            "threshold": self.threshold,
            "spec": self.spec.to_dict(),
            "model_kwargs": self.model_kwargs,
            "metrics": self.metrics,
            "extra": self.extra,
        }
        if calibrated:
            d["temperature"] = self.temperature
        return d

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        """Parses a record; a newer format, a label convention other than 1 = fake, or a field of the wrong type or
        out of range (a threshold that is not a number in [0, 1]) is refused."""
        if not isinstance(d, dict):
            raise DfxError(f"artifact metadata must be a JSON object, got {type(d).__name__}")
        version = d.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise DfxError(f"artifact metadata format {version!r} is not one this dfx understands "
                           f"({FORMAT_VERSION} or older); upgrade dfx")
        try:
            labels = {int(k): v for k, v in d.get("labels", {"0": "real", "1": "fake"}).items()}
        except (AttributeError, TypeError, ValueError) as e:
            raise DfxError(f"artifact labels are malformed: {d.get('labels')!r}") from e
        if labels != LABELS:
            raise DfxError(f"artifact labels {labels} differ from dfx's convention {LABELS}")
        try:
            if not isinstance(d["spec"], dict) or not isinstance(d["arch"], str):
                raise TypeError("spec must be an object and arch a string")
            for key in ("model_kwargs", "metrics", "extra"):
                if not isinstance(d.get(key, {}), dict):
                    raise TypeError(f"{key} must be an object")
            spec = PreprocessSpec.from_dict(d["spec"])
            temperature = d.get("temperature", 1.0)
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                    or not (0 < temperature < float("inf")):
                raise ValueError(f"temperature must be a positive number, got {temperature!r}")
            info = cls(arch=d["arch"], spec=spec, threshold=check_threshold(d.get("threshold", 0.5)), labels=labels,
                       model_kwargs=dict(d.get("model_kwargs", {})), metrics=dict(d.get("metrics", {})),
                       extra=dict(d.get("extra", {})), temperature=float(temperature))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DfxError(f"artifact metadata is incomplete or invalid: {e}") from e
        return info

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """Inverse of :meth:`to_json`."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise DfxError(f"artifact metadata is not valid JSON: {e}") from e


def check_threshold(value: Any) -> float:
    """``value`` as a P(fake) threshold: a finite number in [0, 1] (NaN would label everything real)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"threshold must be a number in [0, 1], got {value!r}")
    t = float(value)
    if not (0.0 <= t <= 1.0):  # also false for NaN
        raise ValueError(f"threshold must be a number in [0, 1], got {value!r}")
    return t


def read_onnx_info(session_or_path: Any) -> ModelInfo:
    """Reads the dfx record from an ONNX file through onnxruntime (no ``onnx`` package needed).

    Args:
        session_or_path: an ``onnxruntime.InferenceSession`` or a path to an ``.onnx`` file.
    """
    if isinstance(session_or_path, (str, os.PathLike)):
        import onnxruntime as ort

        try:
            session_or_path = ort.InferenceSession(str(session_or_path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for files that are not ONNX
            raise DfxError(f"{session_or_path}: not an ONNX model onnxruntime can load ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from e
    meta = session_or_path.get_modelmeta().custom_metadata_map
    if META_KEY not in meta:
        raise DfxError("this ONNX file has no dfx metadata; export it with dfx-export so the runtime knows its "
                       "preprocessing, labels and threshold")
    return ModelInfo.from_json(meta[META_KEY])


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to a temp file beside ``path`` and renames it over, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make shared artifacts unreadable to other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))
