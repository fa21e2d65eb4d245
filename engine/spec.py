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

__all__ = ["PreprocessSpec", "FaceCrop", "preprocess", "resize_to_input", "RESIZE_MODES", "INTERPOLATIONS",
           "FACE_SOURCES"]

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_MODES = ("squash", "center_crop")
CHANNEL_ORDERS = ("RGB", "BGR")
MAX_INPUT_SIDE = 4096  # far above any detector's input; a larger "size" in an artifact is damage, not a model
FACE_SOURCES = ("precropped", "detected")


@dataclass(frozen=True)
class FaceCrop:
    """How a detected face becomes the image the model sees: part of the spec, so training and deployment crop alike.

    The crop is a square of ``scale`` × the detected box's longer side, centred ``shift`` box sides below the box's
    centre, moved inside the image where it reaches past an edge; :func:`dfx.engine.face_crop.crop_face` cuts it,
    then :func:`preprocess` resizes it as usual.

    Attributes:
        detector: registered face detector (:data:`dfx.engine.face_detect.FACE_DETECTORS`).
        scale: crop side ÷ detected box side (1.0 is the box itself).
        shift: vertical offset of the crop's centre from the box's, in box sides (positive: down).
        min_face: smallest face side looked for, in pixels of the image.
        max_faces: the most faces scored per image (the most confident); more are counted, not scored.
        source: ``precropped`` (trained on crops, framing measured from them) or ``detected`` (trained on crops
            this detector cut).
    """

    detector: str = "mtcnn"
    scale: float = 1.3
    shift: float = 0.0
    min_face: int = 48
    max_faces: int = 4
    source: str = "detected"

    def __post_init__(self) -> None:
        if not isinstance(self.scale, (int, float)) or not 0.5 <= self.scale <= 4.0:
            raise ValueError(f"face crop scale must be between 0.5 and 4, got {self.scale!r}")
        if not isinstance(self.shift, (int, float)) or not -1.0 <= self.shift <= 1.0:
            raise ValueError(f"face crop shift must be between -1 and 1, got {self.shift!r}")
        for name, lo, hi in (("min_face", 12, MAX_INPUT_SIDE), ("max_faces", 1, 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not lo <= v <= hi:
                raise ValueError(f"face crop {name} must be an integer between {lo} and {hi}, got {v!r}")
        if self.source not in FACE_SOURCES:
            raise ValueError(f"face crop source must be one of {', '.join(FACE_SOURCES)}, got {self.source!r}")
        if not isinstance(self.detector, str):
            raise ValueError(f"face detector must be a name, got {self.detector!r}")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "shift", float(self.shift))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceCrop:
        """Inverse of ``dataclasses.asdict``; unknown keys are an error so a newer artifact is not misread."""
        if not isinstance(d, dict):
            raise ValueError(f"faces must be an object, got {d!r}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown face crop fields {sorted(unknown)}")
        return cls(**d)


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
        faces: how faces are found and cropped before resizing (None: the model sees whole images).
    """

    input_size: tuple[int, int] = (256, 256)
    resize: str = "squash"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0 / 255.0
    channel_order: str = "RGB"
    crop_pct: float = 1.0
    faces: FaceCrop | None = None

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
        if self.faces is not None and not isinstance(self.faces, FaceCrop):
            object.__setattr__(self, "faces", FaceCrop.from_dict(self.faces))
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
        if self.faces is None:
            del d["faces"]  # absent, not null: a record without faces stays readable by a dfx that predates them
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

    def with_faces(self, faces: FaceCrop | None) -> PreprocessSpec:
        """Returns a copy with another face crop (``None``: whole images)."""
        return dataclasses.replace(self, faces=faces)


def resize_to_input(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """``img`` at the spec's input size, resized as :func:`preprocess` resizes it (the training cache reuses it)."""
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
    arr = np.asarray(resize_to_input(img, spec))  # (H, W, 3) uint8
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
