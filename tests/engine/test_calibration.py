"""Calibrated scores: the temperature fit, ECE, the threshold policies, and the runtime applying the record."""

import numpy as np
import pytest

from dfx.engine.artifact import ModelInfo
from dfx.engine.calibration import calibrated, expected_calibration_error, fit_temperature, log_loss, threshold_for
from dfx.engine.errors import DfxError
from dfx.engine.spec import PreprocessSpec


def _synthetic(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0, 2, n)
    labels = (rng.random(n) < calibrated(true_logit)).astype(int)  # labels drawn from the true probabilities
    return true_logit, labels


def test_temperature_undoes_overconfidence_and_ece_measures_it():
    true_logit, y = _synthetic()
    overconfident = true_logit * 3.0
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.05)
    assert expected_calibration_error(y, calibrated(true_logit)) < 0.02
    assert expected_calibration_error(y, calibrated(overconfident)) > 0.05
    assert expected_calibration_error(y, calibrated(overconfident, t)) < 0.02
    assert log_loss(y, overconfident / t) < log_loss(y, overconfident)
    with pytest.raises(DfxError, match="both real and fake"):
        fit_temperature(np.zeros(5), np.ones(5))


def test_threshold_policies():
    true_logit, y = _synthetic(5000, 1)
    s = calibrated(true_logit)
    t = threshold_for("fpr=0.01", y, s)
    assert np.mean(s[y == 0] >= t) <= 0.01 < np.mean(s[y == 0] >= np.nextafter(t, -1) - 1e-3)
    eer_t = threshold_for("eer", y, s)
    fpr, fnr = np.mean(s[y == 0] >= eer_t), np.mean(s[y == 1] < eer_t)
    assert abs(fpr - fnr) < 0.02
    f1_t = threshold_for("f1", y, s)
    def f1(th):
        p = s >= th
        return 2 * np.sum(p & (y == 1)) / (p.sum() + (y == 1).sum())
    assert f1(f1_t) >= max(f1(x) for x in (0.2, 0.3, 0.4, 0.5, 0.6))
    for bad in ("fpr=2", "fpr=x", "roc"):
        with pytest.raises(DfxError, match="threshold policy|valid"):
            threshold_for(bad, y, s)


def test_a_calibrated_record_says_so_and_older_records_stay_as_they_were():
    plain = ModelInfo(arch="meso4", spec=PreprocessSpec())
    assert plain.to_dict()["format_version"] == 1 and "temperature" not in plain.to_dict()
    cal = ModelInfo(arch="meso4", spec=PreprocessSpec(), temperature=1.7, threshold=0.4)
    d = cal.to_dict()
    assert d["format_version"] == 2 and d["temperature"] == 1.7  # an older dfx refuses it instead of misreading
    assert ModelInfo.from_dict(d).temperature == 1.7
    for bad in (0, -1, float("inf"), "hot", True):
        with pytest.raises(DfxError, match="temperature"):
            ModelInfo.from_dict(d | {"temperature": bad})


def test_dfx_infer_applies_the_records_temperature(tiny_onnx, bad_corpus, tmp_path):
    pytest.importorskip("onnx")
    import csv
    import math

    from click.testing import CliRunner

    from dfx.engine.cli import main
    from dfx.export.calibrate import calibrate_onnx
    from dfx.export.verify import logit

    from ..conftest import write_split

    data = tmp_path / "val"
    write_split(data, 8, np.random.default_rng(5))
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    info, report = calibrate_onnx(model, [data], policy="fpr=0.1")
    assert info.temperature == report["temperature"] > 0 and report["n"] == 16 and "nll_after" in report
    rows = {}
    for name, path in (("raw", tiny_onnx), ("cal", model)):
        out = tmp_path / f"{name}.csv"
        CliRunner().invoke(main, [str(bad_corpus["rgb"]), str(bad_corpus["cmyk"]), "--engine", str(path),
                                  "--backend", "onnxruntime-cpu", "-o", str(out)], catch_exceptions=False)
        rows[name] = [float(r["score"]) for r in csv.DictReader(out.open())]
    for raw, cal in zip(rows["raw"], rows["cal"]):
        assert cal == pytest.approx(1 / (1 + math.exp(-logit(raw) / info.temperature)), abs=2e-6)
