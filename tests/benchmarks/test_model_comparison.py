import json
import sys

import numpy as np

from dfx.benchmarks import model_comparison as C
from dfx.engine import metrics as M
from dfx.engine.calibration import expected_calibration_error
from dfx.engine.select import open_backend


def test_each_model_set_and_mode_is_scored_as_dfx_infer_scores_it(tiny_data, tiny_onnx, tmp_path, monkeypatch):
    (tiny_data / "validate" / "fake" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "cmp"
    monkeypatch.setattr(sys, "argv", ["x", "--models", str(tiny_onnx), f"twin={tiny_onnx}", "--data", str(tiny_data),
                                      "--faces", "off", "auto", "--out", str(out)])
    C.main()
    result = json.loads(out.with_suffix(".json").read_text())
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 2  # models × modes × (the set, all)
    assert result["models"] == [str(tiny_onnx), "twin"]
    with open_backend(tiny_onnx, "onnxruntime-cpu") as be:
        y, s, missed = C.score_set(be, tiny_data, "off")
        threshold = be.info.threshold
    assert (y.size, missed) == (12, 1) and np.array_equal(y, [0] * 6 + [1] * 6)
    want = {"n": 12, "not_scored": 1, "auc": M.roc_auc(y, s), "acc": M.accuracy(y, s, threshold),
            "ece": expected_calibration_error(y, s)}
    for r in rows:  # the model has no face crop in its record: auto scores whole images too
        assert {k: r[k] for k in want} == want
    md = out.with_suffix(".md").read_text()
    assert md.count("| data |") == 2 and md.count("| all |") == 2 and "12 (1)" in md and "AUC twin" in md
