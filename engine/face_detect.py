"""Face detection for the runtime: one interface, detectors looked up by name in :data:`FACE_DETECTORS`.

A detector takes a decoded RGB image (a Pillow image, or an HWC uint8 array) and returns :class:`Face` boxes in
its pixel coordinates.
Detectors run inside the decode workers (:mod:`dfx.engine.face_frontend`), one instance per worker, so each
one runs single-threaded: the parallelism is the workers'.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .errors import DfxError

__all__ = ["Face", "FaceDetector", "FACE_DETECTORS", "get_detector"]

# name → "module:Class"; the keys are the values a face-crop spec's ``detector`` may name.
FACE_DETECTORS = {
    "mtcnn": "dfx.engine.face_mtcnn:MtcnnDetector",
}


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: (x0, y0, x1, y1) in the image's pixels (x1, y1 exclusive; may reach past the image edge).
        confidence: the detector's probability that this is a face.
        landmarks: five (x, y) points (eyes, nose, mouth corners) when the detector gives them.
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def side(self) -> float:
        """The longer side of the box, in pixels."""
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])


class FaceDetector(ABC):
    """Finds faces in an RGB image.

    Args:
        min_face: smallest face side, in pixels of the image, the detector looks for.
    """

    def __init__(self, min_face: int = 48):
        self.min_face = min_face

    @abstractmethod
    def detect(self, image: np.ndarray | Image.Image) -> list[Face]:
        """Faces in ``image`` (an RGB Pillow image or HWC uint8 array), most confident first."""


_cache: dict[tuple, FaceDetector] = {}
_lock = threading.Lock()


def get_detector(name: str, **params: Any) -> FaceDetector:
    """The detector ``name`` with ``params``, made once per process (its sessions are reused across files)."""
    if name not in FACE_DETECTORS:
        raise DfxError(f"unknown face detector {name!r}; valid: {', '.join(FACE_DETECTORS)}")
    key = (name, *sorted(params.items()))
    with _lock:
        if key not in _cache:
            module, cls = FACE_DETECTORS[name].split(":")
            _cache[key] = getattr(importlib.import_module(module), cls)(**params)
        return _cache[key]
