"""MTCNN's numpy stages (the networks themselves: tests/export/test_mtcnn_onnx.py; detection on real faces:
test_faces.py)."""

import numpy as np
import pytest

from dfx.engine.face_mtcnn import _nms


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
