"""``dfx-train --faces``: training images through the runtime's face detector and crop (docs/ARCHITECTURE.md, "Faces").

- ``off``: whole images, as before; the artifact records no face crop and dfx-infer scores whole images.
- ``precropped``: the folders already hold face crops. Their framing around the detector's box is measured on a
  sample (:func:`dfx.engine.face_crop.measure_framing`) and recorded, so dfx-infer cuts faces out of photos the way
  the training crops were cut. Training itself sees the crops as they are.
- ``detect``: the folders hold photos. Every image is cropped to its most confident face with the runtime's
  detector and crop (``FaceCrop()`` defaults), before augmentation; images without a face are dropped, counted
  like unreadable files. The cache (``--cache``) then holds the crops, so detection runs once per image.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from PIL import Image

from dfx.engine.decode import DecodeError, load_image
from dfx.engine.errors import DfxError
from dfx.engine.face_crop import crop_face, measure_framing
from dfx.engine.face_detect import get_detector
from dfx.engine.face_frontend import no_face_error
from dfx.engine.spec import FaceCrop, PreprocessSpec

from .options import TRAIN_FACE_MODES

__all__ = ["face_spec", "load_training_image", "FRAMING_SAMPLE"]

log = logging.getLogger("dfx.training")

FRAMING_SAMPLE = 400  # crops measured for the framing: its median settles well before this


def face_spec(mode: str, spec: PreprocessSpec, train_paths: list[str], seed: int = 0,
              scale: float | None = None) -> PreprocessSpec:
    """The run's spec for ``--faces mode`` (see the module docstring); ``scale`` sets ``detect``'s crop side in
    detector boxes (default: :class:`FaceCrop`'s)."""
    if mode not in TRAIN_FACE_MODES:
        raise DfxError(f"--faces must be one of {', '.join(TRAIN_FACE_MODES)}, got {mode!r}")
    if mode == "off":
        return spec.with_faces(None)
    if mode == "detect":
        return spec.with_faces(FaceCrop(source="detected") if scale is None else
                               FaceCrop(source="detected", scale=scale))
    base = FaceCrop(source="precropped")
    detector = get_detector(base.detector, min_face=base.min_face)
    sample = random.Random(seed).sample(train_paths, min(FRAMING_SAMPLE, len(train_paths)))

    def crops():
        for p in sample:
            try:
                img = load_image(p)
            except DecodeError:
                continue
            yield img.width, img.height, detector.detect(img)

    framing = measure_framing(crops())
    if framing is None or framing.measured < max(10, framing.seen // 4):
        found = 0 if framing is None else framing.measured
        raise DfxError(f"--faces precropped: the detector found exactly one face in only {found} of {len(sample)} "
                       f"sampled training images; these do not look like face crops (use --faces detect for "
                       f"photos, or --faces off)")
    log.info("face crops measured: %s", framing)
    return spec.with_faces(FaceCrop(scale=round(framing.scale, 3), shift=round(framing.shift, 3),
                                    source="precropped"))


def load_training_image(path: str | Path, spec: PreprocessSpec) -> Image.Image:
    """A training image as the model sees it before augmentation: the whole image, or its most confident face.

    Raises:
        DecodeError: the file's status, or ``no_face`` when ``--faces detect`` finds none.
    """
    crop = spec.faces
    if crop is None or crop.source == "precropped":
        return load_image(path, target_size=spec.input_size)
    img = load_image(path)
    faces = get_detector(crop.detector, min_face=crop.min_face).detect(img)
    if not faces:
        raise no_face_error(crop.min_face, "")
    return crop_face(img, faces[0], crop)
