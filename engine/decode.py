"""Safe image decoding: every file either becomes an RGB image or a clear error status.

Used by the runtime, training (evaluation and the data check) and the benchmarks, so a file scores the same
everywhere. Nothing is ever replaced by a blank image.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["DecodeError", "Status", "load_image", "to_rgb", "is_image_path", "is_video_path", "IMAGE_EXTENSIONS",
           "VIDEO_EXTENSIONS", "DEFAULT_MAX_PIXELS"]

# HEIC/HEIF (phones' photo format) decodes with the optional pillow-heif (dfx[heif]); without it such a file gets
# a row that says how to read it, never silence.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif",
                    ".heic", ".heif")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v")  # scored by their faces (dfx.engine.video)
# 100 megapixels: far above any face photo, far below what exhausts memory when a bomb is decoded.
DEFAULT_MAX_PIXELS = 100_000_000

# ISO base media files start with a 'ftyp' box naming their brand: these are HEIF stills (AVIF is Pillow's own).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}

# Pillow's own bomb check is a warning at MAX_IMAGE_PIXELS and an error at twice that; ours is explicit below.
Image.MAX_IMAGE_PIXELS = None


class Status:
    """Row statuses written by the runtime; ``ok`` means scored."""

    OK = "ok"
    EMPTY = "empty_file"
    NOT_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    TOO_LARGE = "too_large"
    UNREADABLE = "unreadable"
    DECODE_ERROR = "decode_error"
    MODEL_ERROR = "model_error"  # the model's output for this image was not a finite number
    NO_FACE = "no_face"  # faces were looked for and none was found


@dataclass
class DecodeError(Exception):
    """A file that cannot be scored; ``status`` is one of :class:`Status`."""

    status: str
    message: str

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB version of a decoded image: 16-bit and float greys scaled, palettes with transparency expanded."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: scale to 8 bits instead of letting convert() clip everything above 255 to white.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr8 = np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / hi) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    # CMYK, YCbCr, LAB, L, LA, RGBA, P, 1: Pillow's conversions (alpha is dropped, not blended).
    return img.convert("RGB")


def _check_file(path: str | os.PathLike) -> None:
    """Refuses what is not a non-empty regular file before opening it: reading a FIFO or a device can block
    forever, and a folder here is one that could not be listed."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise DecodeError(Status.UNREADABLE, f"{type(e).__name__}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise DecodeError(Status.UNREADABLE, "a folder that could not be listed (permissions, or a path too long)")
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(Status.NOT_IMAGE, "not a regular file (a pipe, socket or device); it was not opened")
    if st.st_size == 0:
        raise DecodeError(Status.EMPTY, "file is empty (0 bytes)")


def load_image(
    source: str | os.PathLike | bytes,
    target_size: tuple[int, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decodes one image file to RGB, applying its EXIF orientation (first frame of animations).

    Args:
        source: a path, or the file's bytes.
        target_size: (height, width) the image will be resized to; lets JPEG decode at a reduced scale
            (draft mode) when the source is at least twice as large, which is much faster on big photos.
        max_pixels: images with more pixels are refused as ``too_large`` before decoding.

    Returns:
        A fully loaded RGB image.

    Raises:
        DecodeError: with the status saying why the file cannot be scored.
    """
    try:
        return _load(source, target_size, max_pixels)
    except UnidentifiedImageError:
        if _brand(source) not in _HEIF_BRANDS:
            raise DecodeError(Status.NOT_IMAGE, "not a recognised image format") from None
        if not _heif_opener():
            raise DecodeError(Status.DECODE_ERROR, "a HEIC/HEIF photo: reading it needs pillow-heif (pip install "
                                                   "'dfx[heif]'), or convert it to JPEG") from None
        try:
            return _load(source, target_size, max_pixels)  # once more, now that Pillow knows the format
        except UnidentifiedImageError:
            raise DecodeError(Status.DECODE_ERROR, "a HEIC/HEIF header, but pillow-heif cannot read the file") \
                from None


@functools.cache
def _heif_opener() -> bool:
    """Registers pillow-heif's opener with Pillow once per process; False when it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _brand(source: str | os.PathLike | bytes) -> bytes:
    """The ISO base media brand of a file ('heic', 'avif' …), or b'' when it has none or cannot be read."""
    try:
        if isinstance(source, bytes):
            head = source[:12]
        else:
            with open(source, "rb") as f:
                head = f.read(12)
    except OSError:
        return b""
    return head[8:12] if head[4:8] == b"ftyp" else b""


def _load(source: str | os.PathLike | bytes, target_size: tuple[int, int] | None, max_pixels: int) -> Image.Image:
    """:func:`load_image` but for unidentified formats, which raise ``UnidentifiedImageError``."""
    try:
        if isinstance(source, bytes):
            if not source:
                raise DecodeError(Status.EMPTY, "file is empty (0 bytes)")
            fp: object = io.BytesIO(source)
        else:
            _check_file(source)
            fp = source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF/palette warnings are not the user's problem
            with Image.open(fp) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise DecodeError(Status.TOO_LARGE, f"{w}x{h} pixels exceeds the limit of {max_pixels}")
                if target_size is not None and img.format == "JPEG":
                    th, tw = target_size
                    orientation = img.getexif().get(0x0112, 1)
                    if orientation in (5, 6, 7, 8):  # rotated 90°: the target's sides swap in file space
                        th, tw = tw, th
                    img.draft("RGB", (tw, th))
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except (DecodeError, UnidentifiedImageError):
        raise
    except (PermissionError, FileNotFoundError, IsADirectoryError) as e:
        raise DecodeError(Status.UNREADABLE, f"{type(e).__name__}: {e.strerror or e}") from e
    except Image.DecompressionBombError as e:
        raise DecodeError(Status.TOO_LARGE, str(e)) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg or "broken data stream" in msg or isinstance(e, EOFError):
            raise DecodeError(Status.TRUNCATED, msg or "file ends early") from e
        raise DecodeError(Status.DECODE_ERROR, msg or type(e).__name__) from e
    except Exception as e:  # noqa: BLE001 - a codec bug must become a row, never end the run
        raise DecodeError(Status.DECODE_ERROR, f"{type(e).__name__}: {e}") from e


def is_image_path(path: Path) -> bool:
    """True when the file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path: Path) -> bool:
    """True when the file name has one of :data:`VIDEO_EXTENSIONS` (case-insensitive)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS
