"""Self-blended images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

A pseudo-fake is made from one *real* face: a copy of it is altered in colour and geometry (the "source"), then
blended back onto the original (the "target") under a soft face mask. What remains is exactly what face swaps
leave behind — a blending boundary, colour and frequency mismatches, slight misalignment — without any
generator's fingerprint, so a detector trained on them learns traces that unseen face-swap methods share.

The mask covers the inner face — eyebrows to chin, cheek to cheek — placed by the five landmarks the runtime's face
detector gives (:func:`face_marks`, found once per run on each real image): an ellipse centred between the eyes
and the mouth, turned with the eye line and sized by the eye distance and the eye-to-mouth distance (all
jittered). The paper uses the hull of 68 or 81 landmarks; MTCNN's five give the face's position, size and roll,
which is what the mask must follow. Where no face is found, an ellipse around where faces lie in a crop stands in.
The mask is softened by a Gaussian blur of random width and scaled by a random blend ratio. All randomness comes
from torch's RNG, seeded per sample by :class:`~dfx.training.data.FaceDataset`, so a run stays reproducible
whatever the number of workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from dfx.engine.face_detect import get_detector
from dfx.engine.spec import FaceCrop

from .augment import uniform

__all__ = ["self_blend", "face_marks", "BLEND_RATIOS"]

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the paper's: a full blend half of the time


def _source(img: Image.Image) -> Image.Image:
    """The altered copy: colour (per-channel shift, brightness, contrast, saturation) and a small rescale/shift."""
    arr = np.asarray(img, np.float32) + np.array([uniform(-20, 20) for _ in range(3)], np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    out = ImageEnhance.Brightness(out).enhance(uniform(0.9, 1.1))
    out = ImageEnhance.Contrast(out).enhance(uniform(0.9, 1.1))
    out = ImageEnhance.Color(out).enhance(uniform(0.85, 1.15))
    if uniform() < 0.5:  # sharpen or soften: the frequency mismatch of a re-rendered face
        out = out.filter(ImageFilter.SHARPEN if uniform() < 0.5 else ImageFilter.GaussianBlur(uniform(0.5, 1.2)))
    w, h = img.size
    s = uniform(0.95, 1.05)
    dx, dy = uniform(-0.03, 0.03) * w, uniform(-0.03, 0.03) * h
    # affine inverse map: output (x, y) samples input ((x - cx) / s + cx - dx, ...)
    cx, cy = w / 2, h / 2
    return out.transform((w, h), Image.Transform.AFFINE,
                         (1 / s, 0, cx - cx / s - dx, 0, 1 / s, cy - cy / s - dy), Image.Resampling.BILINEAR)


def face_marks(images: Iterable[Image.Image]) -> list[np.ndarray | None]:
    """The five landmarks (eyes, nose, mouth corners) of each image's most confident face, as (5, 2) fractions of
    the image's width and height; None where the runtime's detector finds no face."""
    crop = FaceCrop()
    detector = get_detector(crop.detector, min_face=crop.min_face)
    marks = []
    for img in images:
        faces = detector.detect(img)
        found = faces[0].landmarks if faces else None
        marks.append(None if found is None else np.asarray(found, np.float32) / np.float32(img.size))
    return marks


def _face_ellipse(w: int, h: int, marks: np.ndarray | None) -> list[tuple[float, float]]:
    """The mask's ellipse before blurring, as a polygon: placed by the landmarks, or where faces lie in a crop."""
    if marks is not None:
        p = marks.astype(np.float64) * (w, h)
        eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
        across, down = p[1] - p[0], mouth - eyes
        if min(np.hypot(*across), np.hypot(*down)) >= 2:  # a degenerate face (a few pixels) gets the stand-in
            # Centre a little below the eyes, half-width about the eye distance, half-height a little more than
            # the eye-to-mouth distance: from the eyebrows to the chin on frontal faces (ArcFace's template).
            centre = eyes + down * uniform(0.3, 0.5)
            ax, ay = across * uniform(1.0, 1.3), down * uniform(1.0, 1.3)
            return _polygon(centre, ax, ay)
    centre = np.array([w * uniform(0.45, 0.55), h * uniform(0.48, 0.58)])
    return _polygon(centre, np.array([w * uniform(0.26, 0.38), 0.0]), np.array([0.0, h * uniform(0.32, 0.46)]))


def _polygon(centre: np.ndarray, ax: np.ndarray, ay: np.ndarray) -> list[tuple[float, float]]:
    """48 points of the ellipse centre + cos(t)·ax + sin(t)·ay (its semi-axes as vectors)."""
    t = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)[:, None]
    return [tuple(q) for q in centre + np.cos(t) * ax + np.sin(t) * ay]


def _mask(w: int, h: int, marks: np.ndarray | None = None) -> np.ndarray:
    """A soft face mask in [0, 1] (placed by ``marks`` when given), scaled by a random blend ratio."""
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).polygon(_face_ellipse(w, h, marks), fill=255)
    m = m.filter(ImageFilter.GaussianBlur(max(1.0, uniform(0.02, 0.08) * min(w, h))))
    ratio = BLEND_RATIOS[int(uniform() * len(BLEND_RATIOS)) % len(BLEND_RATIOS)]
    return np.asarray(m, np.float32)[..., None] / 255.0 * ratio


def self_blend(img: Image.Image, marks: np.ndarray | None = None) -> Image.Image:
    """A self-blended pseudo-fake of the real face crop ``img`` (same size, RGB), its mask placed by the face's
    landmarks ``marks`` (:func:`face_marks`) when given."""
    target = np.asarray(img, np.float32)
    source = np.asarray(_source(img), np.float32)
    mask = _mask(*img.size, marks)
    return Image.fromarray(np.clip(source * mask + target * (1 - mask) + 0.5, 0, 255).astype(np.uint8))
