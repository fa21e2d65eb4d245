"""The one face crop: a detected box → the square region the model sees (docs/ARCHITECTURE.md, "Faces").

Training (``dfx-train --faces``), the runtime's decode workers and the video reader all call :func:`crop_face`;
:func:`measure_framing` reads the framing of face crops a model is trained on, so deployment can cut the same.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from PIL import Image

from .face_detect import Face
from .spec import FaceCrop

__all__ = ["crop_box", "crop_face", "measure_framing", "Framing"]


def crop_box(face: Face, size: tuple[int, int], crop: FaceCrop) -> tuple[int, int, int, int]:
    """The crop for ``face`` in an image of ``size`` (width, height), as integer (x0, y0, x1, y1).

    A square of ``crop.scale`` × the box's longer side about the box's centre (moved down by ``crop.shift`` box
    sides), slid inside the image where it reaches past an edge; clipped to the image where it is larger than it.
    Sliding rather than padding: black borders are an artifact no training crop had.
    """
    w, h = size
    x0, y0, x1, y1 = face.box
    side = face.side * crop.scale
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + crop.shift * face.side
    out = []
    for centre, limit in ((cx, w), (cy, h)):
        lo = min(max(centre - side / 2, 0.0), max(limit - side, 0.0))
        out.append((int(round(lo)), int(round(min(lo + side, limit)))))
    (left, right), (top, bottom) = out
    return left, top, max(right, left + 1), max(bottom, top + 1)


def crop_face(image: Image.Image, face: Face, crop: FaceCrop) -> Image.Image:
    """The region of ``image`` the model sees for ``face`` (resizing is :func:`dfx.engine.spec.preprocess`'s)."""
    return image.crop(crop_box(face, image.size, crop))


@dataclass(frozen=True)
class Framing:
    """How face crops are framed around the detector's box, measured on crops (see :func:`measure_framing`).

    Attributes:
        scale: median crop side ÷ box side.
        shift: median offset of the crop's centre below the box's, in box sides.
        measured: crops in which exactly one face was found (the others are not evidence of framing).
        seen: crops looked at.
    """

    scale: float
    shift: float
    measured: int
    seen: int

    def __str__(self) -> str:
        return f"scale {self.scale:.3f}, shift {self.shift:+.3f} ({self.measured} of {self.seen} crops)"


def measure_framing(crops: Iterable[tuple[int, int, list[Face]]]) -> Framing | None:
    """Median framing of face crops, from (width, height, faces detected in it) per crop.

    A crop's side is its longer side; crops with no face or several are skipped. None when no crop qualifies.
    """
    scales, shifts, seen = [], [], 0
    for w, h, faces in crops:
        seen += 1
        if len(faces) != 1:
            continue
        f = faces[0]
        scales.append(max(w, h) / f.side)
        shifts.append((h / 2 - (f.box[1] + f.box[3]) / 2) / f.side)
    if not scales:
        return None
    return Framing(statistics.median(scales), statistics.median(shifts), len(scales), seen)
