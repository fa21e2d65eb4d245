"""Self-blended images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

A pseudo-fake is made from one *real* face: a copy of it is altered in colour and geometry (the "source"), then
blended back onto the original (the "target") under a soft face mask. What remains is exactly what face swaps
leave behind — a blending boundary, colour and frequency mismatches, slight misalignment — without any
generator's fingerprint, so a detector trained on them learns traces that unseen face-swap methods share.

The mask is an ellipse around where the face lies in a crop (centre and axes jittered), softened by a Gaussian
blur of random width, and scaled by a random blend ratio; the paper uses landmark hulls, which dfx's face crops
do not carry. All randomness comes from torch's RNG, seeded per sample by
:class:`~dfx.training.data.FaceDataset`, so a run stays reproducible whatever the number of workers.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from .augment import uniform

__all__ = ["self_blend", "BLEND_RATIOS"]

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


def _mask(w: int, h: int) -> np.ndarray:
    """A soft elliptical face mask in [0, 1], scaled by a random blend ratio."""
    cx, cy = w * uniform(0.45, 0.55), h * uniform(0.48, 0.58)
    ax, ay = w * uniform(0.26, 0.38), h * uniform(0.32, 0.46)
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).ellipse((cx - ax, cy - ay, cx + ax, cy + ay), fill=255)
    m = m.filter(ImageFilter.GaussianBlur(max(1.0, uniform(0.02, 0.08) * min(w, h))))
    ratio = BLEND_RATIOS[int(uniform() * len(BLEND_RATIOS)) % len(BLEND_RATIOS)]
    return np.asarray(m, np.float32)[..., None] / 255.0 * ratio


def self_blend(img: Image.Image) -> Image.Image:
    """A self-blended pseudo-fake of the real face crop ``img`` (same size, RGB)."""
    target = np.asarray(img, np.float32)
    source = np.asarray(_source(img), np.float32)
    mask = _mask(*img.size)
    return Image.fromarray(np.clip(source * mask + target * (1 - mask) + 0.5, 0, 255).astype(np.uint8))
