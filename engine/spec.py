"""The one preprocessing spec and its one implementation (docs/ARCHITECTURE.md, "One preprocessing spec").

Training's evaluation transform, export verification, the runtime and the benchmarks all call
:func:`preprocess`; nothing else turns a decoded image into model input.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["PreprocessSpec", "preprocess", "RESIZE_MODES", "INTERPOLATIONS"]

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_MODES = ("squash", "center_crop")
CHANNEL_ORDERS = ("RGB", "BGR")
MAX_INPUT_SIDE = 4096  # far above any detector's input; a larger "size" in an artifact is damage, not a model


@dataclass(frozen=True)
class PreprocessSpec:
    """How a decoded RGB image becomes a float32 CHW model input.

    Attributes:
        input_size: (height, width) the model sees.
        resize: ``squash`` resizes the whole image to ``input_size`` (face crops are already framed);
            ``center_crop`` resizes the shorter side to ``size / crop_pct`` and crops the centre.
        interpolation: Pillow resampling filter name.
        mean: per-channel mean subtracted after scaling, in ``channel_order``.
        std: per-channel std divided after subtracting the mean.
        scale: multiplier applied to uint8 pixel values first (1/255 maps to [0, 1]).
        channel_order: ``RGB`` or ``BGR``.
        crop_pct: fraction of the resized image kept by ``center_crop``.
    """

    input_size: tuple[int, int] = (256, 256)
    resize: str = "squash"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channel_order!r}")
        if len(self.input_size) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                  for v in self.input_size):
            raise ValueError(f"input_size must be two integers, got {self.input_size!r}")
        h, w = self.input_size
        if not (8 <= h <= MAX_INPUT_SIDE and 8 <= w <= MAX_INPUT_SIDE):
            raise ValueError(f"input_size must be between 8 and {MAX_INPUT_SIDE} pixels a side, got {self.input_size}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ValueError(f"{name} must be three finite numbers, got {values!r}")
        if not all(v > 0 for v in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")
        if not isinstance(self.scale, (int, float)) or not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        # Normalise JSON lists back to tuples so specs compare equal after a round trip.
        object.__setattr__(self, "input_size", (int(h), int(w)))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        # x = (u8 * scale - mean) / std  ==  u8 * gain - offset: folded once here, not per image.
        std = np.asarray(self.std, np.float32)
        object.__setattr__(self, "_gain", (np.float32(self.scale) / std).astype(np.float32))
        object.__setattr__(self, "_offset", (np.asarray(self.mean, np.float32) / std).astype(np.float32))

    def with_size(self, size: int | tuple[int, int] | None) -> PreprocessSpec:
        """Returns a copy with another input size (``None`` keeps this one)."""
        if size is None:
            return self
        hw = (size, size) if isinstance(size, int) else tuple(size)
        return dataclasses.replace(self, input_size=hw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the form stored in every artifact)."""
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error so a newer artifact is not misread."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown PreprocessSpec fields {sorted(unknown)}; this dfx knows {sorted(known)}")
        if "input_size" in d and isinstance(d["input_size"], list):
            d = {**d, "input_size": [int(v) if isinstance(v, float) and v.is_integer() else v for v in d["input_size"]]}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _resize(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    h, w = spec.input_size
    resample = INTERPOLATIONS[spec.interpolation]
    if spec.resize == "squash":
        return img if img.size == (w, h) else img.resize((w, h), resample)
    # center_crop: scale the shorter side so the crop keeps crop_pct of it, then cut the centre.
    sw, sh = img.size
    scale = max(h / spec.crop_pct / sh, w / spec.crop_pct / sw)
    rw, rh = max(w, round(sw * scale)), max(h, round(sh * scale))
    img = img.resize((rw, rh), resample)
    left, top = (rw - w) // 2, (rh - h) // 2
    return img.crop((left, top, left + w, top + h))


def preprocess(img: Image.Image, spec: PreprocessSpec, out: np.ndarray | None = None) -> np.ndarray:
    """Turns a decoded RGB image into the model input.

    Args:
        img: an RGB Pillow image (see :func:`dfx.engine.decode.load_image`).
        spec: the model's preprocessing spec.
        out: optional float32 array of shape (3, H, W) to write into (a slot of a reusable batch buffer).

    Returns:
        float32 array (3, H, W), ``out`` when given.
    """
    if img.mode != "RGB":
        raise ValueError(f"preprocess expects an RGB image, got mode {img.mode!r}; decode with load_image()")
    arr = np.asarray(_resize(img, spec))  # (H, W, 3) uint8
    if spec.channel_order == "BGR":
        arr = arr[..., ::-1]
    offset, gain = spec._offset, spec._gain
    h, w = spec.input_size
    if out is None:
        out = np.empty((3, h, w), np.float32)
    elif out.shape != (3, h, w) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape (3, {h}, {w}), got {out.dtype} {out.shape}")
    # One fused pass per channel, written straight into the (possibly shared) buffer.
    for c in range(3):
        np.multiply(arr[..., c], gain[c], out=out[c], dtype=np.float32)
        out[c] -= offset[c]
    return out
