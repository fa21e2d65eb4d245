"""The face front-end of the decode workers: find each face in a decoded image, crop and preprocess it.

:func:`image_into` is what every decoder (files, in-memory images, video frames) calls on a decoded image. When
the spec crops faces it fills the image's ``max_faces`` slots and returns the faces it cropped, which travel back
to the pipeline as a small :class:`FacesFound` (boxes, not pixels). An image with no face is an error row,
``no_face``: never a silent pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import DecodeError, Status
from .errors import DfxError
from .face_crop import crop_face
from .face_detect import Face, get_detector
from .spec import FaceCrop, PreprocessSpec, preprocess

__all__ = ["FacesFound", "image_into", "faces_into", "resolve_faces", "no_face_error", "FACE_MODES"]

FACE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class FacesFound:
    """The faces of one image: ``faces`` were cropped into the file's slots in order; ``total`` were detected."""

    faces: tuple[Face, ...]
    total: int


def no_face_error(min_face: int, where: str = "(--faces off scores the whole image)") -> DecodeError:
    """The ``no_face`` error, naming the smallest face looked for."""
    return DecodeError(Status.NO_FACE, f"no face of at least {min_face} px found {where}".rstrip())


def faces_into(img: Image.Image, spec: PreprocessSpec, out: np.ndarray) -> FacesFound:
    """Detects faces in a decoded RGB image and preprocesses the crops of the most confident into ``out``
    (max_faces, 3, H, W)."""
    crop = spec.faces
    faces = get_detector(crop.detector, min_face=crop.min_face).detect(img)
    kept = tuple(faces[:crop.max_faces])
    for i, face in enumerate(kept):
        preprocess(crop_face(img, face, crop), spec, out=out[i])
    return FacesFound(kept, len(faces))


def image_into(img: Image.Image, spec: PreprocessSpec, out: np.ndarray) -> FacesFound | None:
    """A decoded image → model input in ``out``: the whole image, or (when ``spec.faces``) each face's crop.

    Raises:
        DecodeError: ``no_face`` when faces are looked for and none is found.
    """
    if spec.faces is None:
        preprocess(img, spec, out=out)
        return None
    found = faces_into(img, spec, out)
    if not found.faces:
        raise no_face_error(spec.faces.min_face)
    return found


def resolve_faces(mode: str, spec: PreprocessSpec) -> PreprocessSpec:
    """The spec a run uses for face mode ``mode``: ``auto`` follows the artifact (crops faces when its spec says
    so), ``on`` crops faces (with the artifact's crop, else the default :class:`FaceCrop`), ``off`` scores whole
    images."""
    if mode not in FACE_MODES:
        raise DfxError(f"unknown face mode {mode!r}; valid: {', '.join(FACE_MODES)}")
    if mode == "off":
        return spec.with_faces(None)
    if mode == "on" and spec.faces is None:
        return spec.with_faces(FaceCrop())
    return spec
