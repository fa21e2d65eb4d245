"""``Detector``: the main job as a Python object — load a model once, score files, images or arrays.

::

    from dfx import Detector

    with Detector() as det:                       # the bundled model; Detector("x.onnx" | "x.plan", ...) any artifact
        for r in det.score(["a.jpg", pil_image, rgb_array]):
            print(r.path or r.index, r.score, r.label, r.status)

Paths go through the same pipeline as ``dfx-infer`` (same decoding, same batches, same scores); in-memory images
skip only the file decoding. With faces (``faces="auto"`` follows the model; the bundled one crops faces) each
result's score is its most suspicious face's, and ``result.faces`` lists every scored face.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .backends.base import Backend
from .decode import DEFAULT_MAX_PIXELS, DecodeError, Status, to_rgb
from .decode_pool import decode_into
from .default_model import default_model_path
from .face_frontend import FacesFound, image_into, resolve_faces
from .inputs import iter_inputs
from .pipeline import score_files
from .select import open_backend
from .spec import PreprocessSpec
from .writers import FACE_FIELDS, FIELDS, record

__all__ = ["Detector", "Result", "FaceResult"]


@dataclass(frozen=True)
class Result:
    """The score of one item given to :meth:`Detector.score`.

    Attributes:
        index: the item's position in the input.
        path: the file's path, or None for an in-memory image.
        score: P(fake) in [0, 1], None when the item could not be scored.
        label: ``fake`` or ``real`` (None when not scored).
        status: ``ok`` or an error status (the same as dfx-infer's; ``no_face`` when faces were looked for).
        error: what went wrong, empty when ok.
        faces: when faces are cropped, each scored face (the item's score is its most suspicious face's).
        faces_found: when faces are cropped, how many were detected (more than the model's max_faces are counted,
            not scored).
    """

    index: int
    path: str | None
    score: float | None
    label: str | None
    status: str
    error: str = ""
    faces: tuple[FaceResult, ...] = ()
    faces_found: int | None = None


@dataclass(frozen=True)
class FaceResult:
    """One scored face: ``box`` (x0, y0, x1, y1) in the image's pixels, the detector's ``confidence``, and the
    face's ``score`` / ``label`` / ``status``."""

    box: tuple[int, int, int, int]
    confidence: float
    score: float | None
    label: str | None
    status: str


class _InMemory:
    """An image given as an object; the decode pool hands it to :func:`_load_item` like a path."""

    def __init__(self, image: Image.Image | np.ndarray):
        self.image = image


def _as_image(item: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(item, Image.Image):
        return to_rgb(ImageOps.exif_transpose(item))  # as load_image does for files
    arr = np.asarray(item)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DecodeError(Status.NOT_IMAGE, f"arrays must be HWC uint8 RGB, got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr, "RGB")


def _load_item(item: Any, spec: PreprocessSpec, out: np.ndarray, max_pixels: int) -> DecodeError | FacesFound | None:
    if not isinstance(item, _InMemory):
        return decode_into(item, spec, out, max_pixels)
    try:
        return image_into(_as_image(item.image), spec, out)
    except DecodeError as e:
        return e
    except Exception as e:  # noqa: BLE001 - one odd image must become a result, never end the call
        return DecodeError(Status.DECODE_ERROR, f"{type(e).__name__}: {e}")


class Detector:
    """A loaded model that scores images.

    Args:
        model: a ``.onnx`` or ``.plan`` written by dfx-export (default: the bundled model).
        backend: ``auto`` or a backend name (``onnxruntime-cpu``, ``onnxruntime-cuda``, ``tensorrt``).
        threshold: P(fake) at or above which the label is ``fake`` (default: the model's).
        batch_size: images per inference call.
        fp16: on a GPU, run ``NAME.fp16.onnx`` when it lies beside ``NAME.onnx``.
        faces: ``auto`` (the model's setting: the bundled model crops faces), ``on`` or ``off`` (whole images).
    """

    def __init__(self, model: str | os.PathLike | None = None, backend: str = "auto", threshold: float | None = None,
                 batch_size: int = 32, fp16: bool = True, faces: str = "auto"):
        self.backend: Backend = open_backend(model or default_model_path(), backend, fp16=fp16)
        self.backend.activate()
        self.threshold = self.backend.info.threshold if threshold is None else float(threshold)
        self.batch_size = batch_size
        self.faces = faces
        resolve_faces(faces, self.backend.info.spec)  # a bad mode fails here, not at the first call

    @property
    def info(self):
        """The model's dfx record (arch, spec, threshold, metrics)."""
        return self.backend.info

    def score(self, items: str | os.PathLike | Image.Image | np.ndarray | Sequence[Any]) -> list[Result]:
        """Scores files, PIL images or HWC uint8 RGB arrays (one, or a list); one :class:`Result` per item."""
        single = isinstance(items, (str, os.PathLike, Image.Image, np.ndarray))
        seq = [items] if single else list(items)
        wrapped = [Path(x) if isinstance(x, (str, os.PathLike)) else _InMemory(x) for x in seq]
        rows = score_files(self.backend, wrapped, self.batch_size, threshold=self.threshold, decode="threads",
                           load=_load_item, faces=self.faces)
        results, faces = [], []
        for r in rows:
            if r.face is not None:  # a face of the next item: its own row follows its faces
                faces.append(FaceResult(r.box, r.face_confidence, r.score, r.label, r.status))
                continue
            i = len(results)
            w = wrapped[i]
            results.append(Result(i, str(w) if isinstance(w, Path) else None, r.score, r.label, r.status, r.error,
                                  tuple(faces), r.faces))
            faces = []
        return results

    def scan(self, inputs: Iterable[str | os.PathLike], recursive: bool = False, decode: str = "auto",
             workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[dict[str, Any]]:
        """Yields the rows ``dfx-infer`` writes for the image files under ``inputs`` (``path``, ``score``…; with
        faces, a row per face before each file's own row)."""
        files = iter_inputs(list(inputs), recursive)
        fields = FACE_FIELDS if resolve_faces(self.faces, self.backend.info.spec).faces else FIELDS
        for row in score_files(self.backend, files, self.batch_size, workers, self.threshold, decode=decode,
                               max_pixels=max_pixels, faces=self.faces):
            yield record(row, fields)

    def close(self) -> None:
        """Releases the model."""
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
