"""Shared fixtures: tiny generated face-like data sets and the optional ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Nothing may touch the network during tests (timm/HF would try to download weights).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test cleanly when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only available in development and CI)")
    return p


def make_image(label: int, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """A learnable toy 'face': reals are smooth gradients, fakes carry a high-frequency checker pattern."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([yy, xx, (yy + xx) / 2], -1) * 200 + rng.uniform(0, 40, 3)
    if label == 1:
        base = base + ((np.indices((size, size)).sum(0) % 2) * 40)[..., None]
    base = base + rng.normal(0, 4, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def write_split(root: Path, n: int, rng: np.random.Generator, real: str = "real", fake: str = "fake") -> None:
    """Writes ``n`` real and ``n`` fake JPEGs under ``root/real`` and ``root/fake``."""
    for label, name in ((0, real), (1, fake)):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            make_image(label, rng).save(d / f"{i:03d}.jpg", quality=95)


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """``train/{real,fake}`` (12 each) and ``validate/{real,fake}`` (6 each) of 40x40 images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    write_split(root / "train", 12, rng)
    write_split(root / "validate", 6, rng)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A meso4 checkpoint at 32x32 input with fixed random weights (no training needed to test plumbing)."""
    torch = pytest.importorskip("torch")
    from dfx.engine.artifact import ModelInfo
    from dfx.training import create_model, get_entry
    from dfx.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    spec = get_entry("meso4").default_spec.with_size(32)
    model, kwargs = create_model("meso4", spec)
    with torch.no_grad():  # spread the logits so both labels occur
        model.head.fc2.weight.mul_(20)
    info = ModelInfo(arch="meso4", spec=spec, threshold=0.5, model_kwargs=kwargs)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.safetensors", model.eval(), info)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path) -> Path:
    """``tiny_checkpoint`` exported to ONNX with its dfx metadata."""
    from dfx.export.onnx_export import export_onnx
    from dfx.training.checkpoint import load_checkpoint

    model, info = load_checkpoint(tiny_checkpoint)
    return export_onnx(model, info, tiny_checkpoint.parent / "meso4.onnx")


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory) -> dict[str, Path]:
    """One file per hard input case; the dict maps the case to its path (expected status in EXPECTED_STATUS)."""
    import io

    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    base = make_image(0, rng, 64)
    files: dict[str, Path] = {}

    def save(name: str, img: Image.Image, **kw) -> None:
        files[name.rsplit(".", 1)[0]] = root / name
        img.save(root / name, **kw)

    save("rgb.jpg", base, quality=90)
    for ext in ("png", "webp", "bmp"):
        save(f"rgb_{ext}.{ext}", base)
    save("grayscale.png", base.convert("L"))
    save("cmyk.jpg", base.convert("CMYK"))
    save("palette.png", base.convert("P"))
    pal = base.convert("P")
    save("palette_transparent.png", pal, transparency=0)
    save("rgba.png", base.convert("RGBA"))
    arr16 = (np.asarray(base.convert("L"), np.uint16) * 257)
    save("gray16.png", Image.fromarray(arr16.astype("<u2")))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: stored 64x32, displayed 32x64
    save("exif_rotated.jpg", base.resize((64, 32)), exif=exif.tobytes())
    frames = [base, make_image(1, rng, 64)]
    files["animated"] = root / "animated.gif"
    frames[0].save(files["animated"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["empty"] = root / "empty.jpg"
    files["empty"].write_bytes(b"")
    jpeg = io.BytesIO()
    base.save(jpeg, "JPEG", quality=90)
    files["truncated"] = root / "truncated.jpg"
    files["truncated"].write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    files["not_image"] = root / "notes.jpg"
    files["not_image"].write_text("this is not an image\n" * 20)
    # A decompression bomb: 200 megapixels that compress to a few kilobytes.
    save("bomb.png", Image.new("1", (20000, 10000)))
    return files


EXPECTED_STATUS = {"empty": "empty_file", "truncated": "truncated", "not_image": "not_an_image",
                   "bomb": "too_large"}


@pytest.fixture
def marker_detector(monkeypatch):
    """Registers the stand-in detector (tests/engine/_marker_detector.py) as ``marker`` — in this process only, so
    ``auto`` decoding stays on threads here (it takes worker processes for faces, which would not know it)."""
    import importlib

    from dfx.engine import decode_pool, face_detect

    monkeypatch.setitem(face_detect.FACE_DETECTORS, "marker", "tests.engine._marker_detector:MarkerDetector")
    real = decode_pool.resolve_decode_mode

    def threads_for_auto(mode: str = "auto", faces: bool = False) -> str:
        return "threads" if mode == "auto" else real(mode, faces)

    monkeypatch.setattr(decode_pool, "resolve_decode_mode", threads_for_auto)
    monkeypatch.setattr(importlib.import_module("dfx.engine.scan"), "resolve_decode_mode", threads_for_auto)
