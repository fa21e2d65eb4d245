import numpy as np

from dfx.benchmarks.face_detection import _markdown, make_scene

from ..conftest import make_image


def test_scenes_hold_the_pasted_faces_without_overlap_inside_the_image():
    rng = np.random.default_rng(0)
    crops = [make_image(i % 2, rng, 80) for i in range(3)]
    for _ in range(5):
        scene, boxes = make_scene(rng, crops, crops, 3)
        w, h = scene.size
        assert len(boxes) == 3 and 640 <= w <= 1600 and 480 <= h <= 1200
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and x1 - x0 >= 64
            for a, b, c, d in boxes[i + 1:]:
                assert x1 <= a or c <= x0 or y1 <= b or d <= y0
        empty, none = make_scene(rng, [], crops, 0)
        assert none == [] and empty.size[0] >= 640


def test_the_table_has_a_row_per_source_and_the_targets():
    per = {"a": {"faces": 10, "found": 9, "recall": 0.9, "consistent": 0.5, "consistent_default": 0.6}}
    r = {"machine": "m", "model": "x.onnx", "crop": {}, "scenes_per_source": 5, "min_side": 64, "seed": 0,
         "per_source": per, "recall": 0.9, "consistent": 0.5, "consistent_default": 0.6,
         "false_detection_rate": 0.0, "empty_scenes": 5, "detect_ms_per_scene": 20.0, "cost_files": 10,
         "img_per_s_faces_off": 100.0, "img_per_s_faces_on": 50.0, "faces_on_over_off": 0.5}
    md = _markdown(r)
    assert "| a | 10 | 0.900 | 0.500 | 0.600 |" in md and "**0.50×**" in md
