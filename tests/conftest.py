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
