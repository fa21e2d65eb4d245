"""Per-image augmentation: rescaling (resolution and resampling kernel) and the default recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dfx.engine.errors import DfxError
from dfx.engine.spec import PreprocessSpec
from dfx.training.augment import Augment, rescale
from dfx.training.augment_batch import BatchAugment
from dfx.training.options import AUGMENTATIONS, DEFAULT_AUGMENTATIONS, RESCALE_SIDES
from dfx.training.trainer import TrainConfig

from ..conftest import make_image


def _checker(side: int) -> Image.Image:
    return Image.fromarray(((np.indices((side, side)).sum(0) % 2) * 255).astype(np.uint8)).convert("RGB")


def test_rescale_draws_sides_across_the_range_from_the_seeded_rng():
    img = make_image(0, np.random.default_rng(0), 128)
    sides = []
    for s in range(300):
        torch.manual_seed(s)
        sides.append(max(rescale(img).size))
    torch.manual_seed(3)
    again = rescale(img)
    torch.manual_seed(3)
    assert np.array_equal(np.asarray(again), np.asarray(rescale(img)))
    lo, hi = RESCALE_SIDES
    assert min(sides) >= lo - 1 and max(sides) <= hi + 1
    assert np.mean(np.array(sides) < 128) == pytest.approx(np.log(128 / lo) / np.log(hi / lo), abs=0.08)


def test_rescale_back_keeps_the_size_and_removes_pixel_scale_traces():
    img = _checker(128)
    torch.manual_seed(0)
    out = [rescale(img, back=True) for _ in range(40)]
    assert all(o.size == img.size for o in out)
    # a 1-pixel checker cannot survive a trip through fewer pixels: its per-pixel contrast collapses
    contrast = [float(np.abs(np.diff(np.asarray(o, np.float32)[..., 0], axis=1)).mean()) for o in out]
    assert min(contrast) < 0.3 * 255 and max(contrast) > 0.3 * 255  # shrunk sometimes, enlarged other times


def test_rescale_is_opt_in_and_runs_in_both_paths():
    assert "rescale" in AUGMENTATIONS and "rescale" not in DEFAULT_AUGMENTATIONS
    assert TrainConfig(model="meso4", data=["x"]).augment == list(DEFAULT_AUGMENTATIONS)
    img = make_image(1, np.random.default_rng(1), 96)
    per_image, device = Augment(["rescale"]), BatchAugment(["rescale"], PreprocessSpec(input_size=(32, 32)))
    changed = sent = 0
    for s in range(100):
        torch.manual_seed(s)
        changed += per_image(img).size != img.size
        torch.manual_seed(s)
        new = device.draw(lambda: img)[0]  # the device path sends the image back at its size, or nothing
        assert new is None or new.size == img.size
        sent += new is not None
    assert 15 < changed < 45 and 15 < sent < 45  # applied with probability AUGMENTATIONS["rescale"] = 0.3
    with pytest.raises(DfxError, match="rescale"):
        Augment(["sharpen"])
