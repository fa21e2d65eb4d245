import numpy as np
import pytest
from PIL import Image

from dfx.benchmarks.face_detection import _by_edge, _by_scale, _markdown, _reaches_past, make_scene

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


def test_a_mirror_scene_holds_one_face_continued_by_its_own_mirror_images():
    rng = np.random.default_rng(1)
    crop = make_image(1, rng, 80)
    scene, boxes = make_scene(rng, [crop, crop], [crop], 2, surround="mirror")
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    s = x1 - x0
    w, h = scene.size
    assert 640 <= w <= 1600 and 480 <= h <= 1200 and y1 - y0 == s >= 64
    a = np.asarray(scene).astype(int)
    face = np.asarray(crop.resize((s, s), Image.Resampling.BICUBIC)).astype(int)
    assert np.array_equal(a[y0:y1, x0:x1], face)
    if x1 < w:  # the column past the face's right edge repeats its last column: no seam
        assert np.array_equal(a[y0:y1, x1], face[:, -1])
    if y0 > 0:
        assert np.array_equal(a[y0 - 1, x0:x1], face[0])
    empty, none = make_scene(rng, [], [crop], 0, surround="mirror")
    assert none == [] and empty.size[0] >= 640


def test_an_unknown_surround_is_refused_with_the_valid_choices():
    with pytest.raises(ValueError, match="generated, mirror"):
        make_scene(np.random.default_rng(0), [], [], 0, surround="mirrored")


def test_the_table_has_a_row_per_source_and_the_targets():
    per = {"a": {"faces": 10, "found": 9, "recall": 0.9, "consistent": 0.5, "consistent_default": 0.6,
                 "tolerance_zoom": 0.7, "tolerance_shift": 0.8}}
    r = {"machine": "m", "model": "x.onnx", "crop": {}, "scenes_per_source": 5, "min_side": 64, "seed": 0,
         "per_source": per, "recall": 0.9, "consistent": 0.5, "consistent_default": 0.6, "tolerance_zoom": 0.7,
         "tolerance_shift": 0.8,
         "false_detection_rate": 0.0, "empty_scenes": 5, "detect_ms_per_scene": 20.0, "cost_files": 10,
         "img_per_s_faces_off": 100.0, "img_per_s_faces_on": 50.0, "faces_on_over_off": 0.5,
         "box_side_diff": [0.02, 0.07], "box_centre_diff": [0.017, 0.048],
         "by_scale": _by_scale([(0.5, True, False), (0.6, False, False), (1.0, True, True), (2.0, False, True)])}
    assert r["by_scale"]["shrunk below 0.75×"] == {"faces": 2, "consistent": 0.5, "consistent_default": 0.0}
    assert r["by_scale"]["enlarged above 1.33×"] == {"faces": 1, "consistent": 0.0, "consistent_default": 1.0}
    md = _markdown(r)
    assert "| a | 10 | 0.900 | 0.500 | 0.600 | 0.700 / 0.800 |" in md and "**0.50×**" in md
    assert "side differs by 0.020 (median; 90th percentile 0.070), centre by 0.017 (0.048)" in md
    assert "0.75–1.33×: 1.000 / 1.000 (1 faces)" in md
    assert "by where the face's cut" not in md  # results saved before the split still render
    r["by_edge"] = _by_edge([(False, True, True, False), (True, False, False, True), (True, True, False, False)])
    assert r["by_edge"]["inside the pasted crop"] == {"faces": 1, "consistent": 1.0, "consistent_default": 1.0}
    assert r["by_edge"]["reaching past it"] == {"faces": 2, "consistent": 0.5, "consistent_default": 0.0,
                                                "consistent_default_clipped": 0.5}
    assert ("inside the pasted crop 1.000 / 1.000 (1 faces); reaching past it into the generated surroundings "
            "0.500 / 0.000 (2 faces), 0.500 as dfx-infer") in _markdown(r)
    mirrored = _markdown({**r, "surround": "mirror"})
    assert "1 face of ≥ 64 px in its own mirror images" in mirrored and "into the mirrored surroundings" in mirrored
    skipped = {k: v for k, v in r.items() if k not in ("cost_files", "img_per_s_faces_off", "img_per_s_faces_on",
                                                        "faces_on_over_off")}  # --cost-files 0
    assert "Cost on" not in _markdown(skipped) and _markdown(skipped).endswith(".\n")


def test_recut_zooms_about_the_centre_and_shifts_right():
    from PIL import Image

    from dfx.benchmarks.face_detection import _recut

    img = Image.new("RGB", (200, 100))
    assert _recut(img, 1.0, 0.0).getbbox() is None and _recut(img, 1.0, 0.0).size == (200, 100)
    img.paste((255, 255, 255), (0, 0, 100, 100))  # left half white
    tight = _recut(img, 0.9, 0.0)
    assert tight.size == (180, 90) and tight.getpixel((89, 45)) == (255, 255, 255)
    assert tight.getpixel((90, 45)) == (0, 0, 0)
    moved = _recut(img, 1.0, 0.05)  # 10 px to the right: the white half ends 10 px earlier
    assert moved.getpixel((89, 50)) == (255, 255, 255) and moved.getpixel((90, 50)) == (0, 0, 0)


def test_box_difference_is_measured_on_the_crop_in_its_box_sides():
    from dfx.benchmarks.face_detection import _box_difference
    from dfx.engine.face_detect import Face

    own = Face((50.0, 50.0, 150.0, 150.0), 0.99)  # on a 200-px crop
    pasted = (300, 100, 400, 200)  # the crop pasted at half size
    same = Face((325.0, 125.0, 375.0, 175.0), 0.99)
    assert _box_difference(same, own, pasted, 200) == (0.0, 0.0)
    moved_bigger = Face((330.0, 125.0, 385.0, 180.0), 0.99)  # 10 % larger, centre 15 px right and 5 px down (crop px)
    side, centre = _box_difference(moved_bigger, own, pasted, 200)
    assert abs(side - 0.1) < 1e-9 and abs(centre - np.hypot(15, 5) / 100) < 1e-9


def test_a_cut_reaches_past_the_pasted_crop_by_more_than_a_pixel():
    pasted = (100, 100, 200, 200)
    assert not _reaches_past((100, 100, 200, 200), pasted)
    assert not _reaches_past((99, 101, 201, 199), pasted)  # rounding
    assert _reaches_past((97, 100, 200, 200), pasted) and _reaches_past((110, 110, 210, 190), pasted)
    assert _reaches_past((100, 100, 200, 203), pasted)
