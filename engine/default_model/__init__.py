"""The small model bundled with dfx so ``dfx-infer photos/`` works with no download (see MODEL_CARD.md)."""

from __future__ import annotations

from pathlib import Path

from ..errors import DfxError

__all__ = ["default_model_path", "BUNDLED_MODEL"]

BUNDLED_MODEL = Path(__file__).resolve().parent / "dfx-default.onnx"


def default_model_path() -> Path:
    """Path of the bundled ONNX model (works from a checkout and from an installed wheel)."""
    if not BUNDLED_MODEL.is_file():
        raise DfxError(f"the bundled default model {BUNDLED_MODEL} is missing from this installation; pass --engine")
    return BUNDLED_MODEL
