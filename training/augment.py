"""Training augmentations that matter for face forensics, each switchable.

They run on the decoded Pillow image *before* the runtime's :func:`~dfx.engine.spec.preprocess`, never
instead of it. All randomness comes from torch's RNG, which :class:`~dfx.training.data.FaceDataset` seeds per
sample from (seed, epoch, index): a resumed run sees the same augmentations as an uninterrupted one, and the
number of DataLoader workers changes nothing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable

import torch
from PIL import Image, ImageFilter
from torchvision import transforms as T

from dfx.engine.errors import DfxError

from .options import AUGMENTATIONS, CROP_MIN_AREA, DEFAULT_AUGMENTATIONS, RESCALE_SIDES

__all__ = ["Augment", "AUGMENTATIONS", "CONTEXT_NEEDS_BATCH", "uniform", "rescale"]

CONTEXT_NEEDS_BATCH = ("the context augmentation frames each image with another image of its batch, so it runs on "
                       "the device only: --augment-on device or auto, with the images cached (not --cache none)")
# rescale's kernels: cameras, editors and web pipelines resize faces with all of these
_KERNELS = (Image.Resampling.BOX, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def uniform(lo: float = 0.0, hi: float = 1.0) -> float:
    """A draw from U(lo, hi) on torch's RNG: the one source of augmentation randomness (seeded per sample)."""
    return lo + (hi - lo) * float(torch.rand(()))


def rescale(img: Image.Image, back: bool = False) -> Image.Image:
    """``img`` resampled so its longer side is a log-uniform draw from :data:`RESCALE_SIDES`, with a random kernel.

    A face in a photo reaches the model at whatever resolution it was captured and through whatever resizing came
    after; models trained only on crops of one size learn that size's resampling traces (a pasted face then scores
    differently from its own crop). ``back`` resizes to the original size again, with another random kernel (the
    device path needs every cached image at one size).
    """
    lo, hi = (math.log(v) for v in RESCALE_SIDES)
    side = math.exp(uniform(lo, hi))
    w, h = img.size
    k = side / max(w, h)
    out = img.resize((max(1, round(w * k)), max(1, round(h * k))), _KERNELS[int(uniform() * len(_KERNELS))])
    return out.resize((w, h), _KERNELS[int(uniform() * len(_KERNELS))]) if back else out


class Augment:
    """Random flips, mild scale/crop jitter, rescaling, colour jitter, JPEG re-compression and blur at random strengths.

    Args:
        enabled: names from :data:`AUGMENTATIONS` to apply.
    """

    def __init__(self, enabled: Iterable[str] = DEFAULT_AUGMENTATIONS):
        self.enabled = tuple(enabled)
        unknown = set(self.enabled) - set(AUGMENTATIONS)
        if unknown:
            raise DfxError(f"unknown augmentation(s) {sorted(unknown)}; valid: {', '.join(AUGMENTATIONS)}")
        if "context" in self.enabled:
            raise DfxError(CONTEXT_NEEDS_BATCH)
        self._color = T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)

    def __call__(self, img: Image.Image) -> Image.Image:
        on = self.enabled
        if "flip" in on and uniform() < AUGMENTATIONS["flip"]:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if "crop" in on and uniform() < AUGMENTATIONS["crop"]:
            top, left, h, w = T.RandomResizedCrop.get_params(img, scale=(CROP_MIN_AREA, 1.0), ratio=(0.9, 1.1))
            img = img.crop((left, top, left + w, top + h))  # preprocess() resizes it back to the input size
        if "rescale" in on and uniform() < AUGMENTATIONS["rescale"]:
            img = rescale(img)
        if "color" in on and uniform() < AUGMENTATIONS["color"]:
            img = self._color(img)
        if "jpeg" in on and uniform() < AUGMENTATIONS["jpeg"]:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=int(30 + 65 * uniform()))
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        if "blur" in on and uniform() < AUGMENTATIONS["blur"]:
            img = img.filter(ImageFilter.GaussianBlur(radius=0.1 + 1.4 * uniform()))
        return img

    def __repr__(self) -> str:
        return f"Augment({', '.join(self.enabled) or 'none'})"
