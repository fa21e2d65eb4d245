import json
import sys

import numpy as np

from dfx.benchmarks import calibration_floor as C
from dfx.engine.calibration import expected_calibration_error


def test_the_logistic_fit_recovers_the_map_that_made_the_labels():
    rng = np.random.default_rng(0)
    u = rng.normal(0, 2, 20000)
    y = (rng.random(u.size) < 1 / (1 + np.exp(-(0.4 * u - 0.7)))).astype(int)
    a, b = C.fit_logistic(u, y)
    assert abs(a - 0.4) < 0.03 and abs(b + 0.7) < 0.05


def test_the_noise_floor_is_what_chance_leaves_and_shrinks_with_more_images():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(0.3, 0.7, 200), rng.uniform(0.3, 0.7, 20000)
    assert C.noise_floor(small) > 3 * C.noise_floor(large) > 0
    confident = np.where(rng.random(200) < 0.5, 0.01, 0.99)  # near-certain scores leave little room for chance
    assert C.noise_floor(confident) < C.noise_floor(small)
    assert expected_calibration_error(np.zeros(4, int), np.zeros(4)) == 0.0


def test_the_script_reports_each_set(tiny_data, tiny_onnx, tmp_path, monkeypatch):
    out = tmp_path / "floor"
    monkeypatch.setattr(sys, "argv", ["x", "--data", str(tiny_data), "--model", str(tiny_onnx), "--draws", "5",
                                      "--out", str(out)])
    C.main()
    r = json.loads(out.with_suffix(".json").read_text())["sets"]["data"]
    assert r["n"] == 12 and 0 <= r["ece_own_map"] <= 1 and r["noise_floor"] > 0
    assert "| data | 12 |" in out.with_suffix(".md").read_text()
