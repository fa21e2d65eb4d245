"""Framing consistency: the second view of each training image and the penalty between the two views' scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dfx.engine.errors import DfxError
from dfx.training import trainer as T
from dfx.training.consistency import FramingConsistency

from ..conftest import write_split


def _ramps(n: int = 8, size: int = 32) -> torch.Tensor:
    """Images whose value is the column index: a cut's columns are read straight off its pixels."""
    return torch.arange(size, dtype=torch.float32).view(1, 1, 1, size).expand(n, 3, size, size).contiguous()


def test_with_no_zoom_the_second_view_is_the_image():
    x = torch.randn(4, 3, 16, 16)
    assert torch.allclose(FramingConsistency(1.0, max_zoom=0.0).reframe(x), x, atol=1e-5)


def test_the_second_view_is_a_tighter_cut_inside_the_image():
    torch.manual_seed(0)
    size, zoom = 32, 0.1
    y = FramingConsistency(1.0, max_zoom=zoom).reframe(_ramps(64, size))
    first, last = y[:, 0, 0, 0], y[:, 0, 0, -1]
    span = (last - first) / (size - 1)  # the cut's side as a share of the image's, read off the ramp
    assert y.shape == (64, 3, size, size)
    assert (first >= -1e-4).all() and (last <= size - 1 + 1e-4).all()  # never outside the image
    assert (span >= 1 - zoom - 1e-3).all() and (span <= 1 + 1e-4).all()
    assert span.std() > 0.01 and first.std() > 0.1  # random sides and places, not one fixed cut
    torch.manual_seed(0)
    assert torch.equal(FramingConsistency(1.0, max_zoom=zoom).reframe(_ramps(64, size)), y)  # torch's seeded RNG


def test_the_penalty_is_the_weighted_squared_score_difference_with_gradients_through_both():
    a = torch.tensor([0.0, 2.0, -1.0], requires_grad=True)
    b = torch.tensor([0.0, 1.0, 1.0], requires_grad=True)
    p = FramingConsistency(4.0).penalty(a, b)
    expected = 4.0 * ((torch.sigmoid(a) - torch.sigmoid(b)) ** 2).mean()
    assert p.item() == pytest.approx(expected.item()) and p.item() > 0
    p.backward()
    assert a.grad[0] == 0 and a.grad[1] != 0 and b.grad[2] != 0
    assert FramingConsistency(4.0).penalty(a, a).item() == 0


def _first_step_loss(tmp_path, name: str, consistency: float) -> dict:
    out = tmp_path / name
    T.train(T.TrainConfig(model="meso4", data=[str(tmp_path / "d")], out=str(out), epochs=1, batch_size=8,
                          input_size=32, workers=0, max_steps_per_epoch=1, calibrate=False, consistency=consistency))
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])


def test_a_run_adds_the_weighted_penalty_to_its_loss_and_records_it(tmp_path):
    write_split(tmp_path / "d" / "train", 6, np.random.default_rng(0))
    write_split(tmp_path / "d" / "validate", 4, np.random.default_rng(1))
    losses = [_first_step_loss(tmp_path, f"w{w}", w)["loss"] for w in (1e-6, 50.0, 100.0)]
    # One step from the same weights on the same two views: the same classification loss, plus weight × the mean
    # squared score difference, so the loss grows by equal amounts for equal steps in the weight.
    assert all(np.isfinite(losses)) and losses[1] - losses[0] > 1e-4
    assert losses[2] - losses[1] == pytest.approx(losses[1] - losses[0], rel=1e-3)
    assert json.loads((tmp_path / "w50.0" / "config.json").read_text())["consistency"] == 50.0


def test_a_negative_weight_is_refused(tmp_path):
    with pytest.raises(DfxError, match="consistency"):
        T.TrainConfig(model="meso4", data=[str(tmp_path)], consistency=-1.0).resolved()
