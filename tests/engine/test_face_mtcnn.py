"""MTCNN's numpy stages (the networks themselves: tests/export/test_mtcnn_onnx.py; detection on real faces:
test_faces.py)."""

import numpy as np
import pytest
from PIL import Image

from dfx.engine.face_mtcnn import _crops, _nms


def greedy_nms(boxes, scores, threshold, method):
    """The textbook greedy suppression, one pair at a time."""
    def overlap(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
        area_a, area_b = (a[2] - a[0] + 1) * (a[3] - a[1] + 1), (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
        return w * h / (min(area_a, area_b) if method == "min" else area_a + area_b - w * h)

    keep = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(overlap(boxes[i].astype(np.float64), boxes[k].astype(np.float64)) <= threshold for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("n", [0, 1, 7, 300, 600])  # 300 and 600 cross the 256-box blocks
@pytest.mark.parametrize("method", ["union", "min"])
def test_nms_keeps_what_greedy_suppression_keeps_in_score_order(n, method):
    rng = np.random.default_rng(n)
    xy = rng.uniform(0, 10 + 10 * np.sqrt(n), (n, 2))  # dense enough that some boxes are suppressed
    boxes = np.hstack([xy, xy + rng.uniform(30, 90, (n, 1))]).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32)  # distinct: one right order
    kept = _nms(boxes, scores, 0.5, method)
    assert list(kept) == greedy_nms(boxes, scores, 0.5, method)
    assert 0 < len(kept) < n or n < 2


def test_crops_are_each_box_resized_from_the_smallest_level_that_still_spans_it():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    half = img.resize((80, 60), Image.Resampling.BOX)
    boxes = np.array([[10, 20, 70, 80], [-5, -5, 30, 30], [100, 50, 150, 100], [170, 10, 200, 40]], np.float32)
    keep, crops = _crops([img, half], boxes, 24)
    assert list(keep) == [0, 1, 2]  # the last box lies outside the image
    expect = [half.resize((24, 24), Image.Resampling.BOX, box=(4.5, 9.5, 35.0, 40.0)),  # spans 30 px at half size
              img.resize((24, 24), Image.Resampling.BOX, box=(0, 0, 30, 30)),  # clipped; 15 px at half: too small
              half.resize((24, 24), Image.Resampling.BOX, box=(49.5, 24.5, 75.0, 50.0))]
    assert crops.shape == (3, 24, 24, 3) and crops.dtype == np.uint8
    for got, want in zip(crops, expect):
        assert np.array_equal(got, np.asarray(want))
    assert _crops([img], boxes[3:], 24)[1].shape == (0, 24, 24, 3)
