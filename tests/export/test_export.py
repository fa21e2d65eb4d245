import json

import numpy as np
import pytest
from click.testing import CliRunner

from dfx.engine.artifact import ModelInfo, read_onnx_info
from dfx.engine.errors import DfxError
from dfx.export import build as B
from dfx.export.build import export_model
from dfx.export.cli import main
from dfx.training import create_model, get_entry, list_models
from dfx.training.checkpoint import save_checkpoint

from ..conftest import write_split

torch = pytest.importorskip("torch")


def _checkpoint(tmp_path, name, size=32, data=None):
    torch.manual_seed(0)
    spec = get_entry(name).default_spec.with_size(size)
    model, kwargs = create_model(name, spec)
    extra = {"config": {"data": [str(data)]}} if data else {}
    info = ModelInfo(arch=name, spec=spec, threshold=0.42, model_kwargs=kwargs, extra=extra)
    return save_checkpoint(tmp_path / "best.safetensors", model.eval(), info)


@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_and_verifies_fp32_and_fp16(name, tmp_path):
    ckpt = _checkpoint(tmp_path, name)
    result = export_model(checkpoint=ckpt, fp16=True, engine=False, n_verify=4)
    assert set(result.artifacts) == {"onnx", "fp16"}
    assert [c.passed for c in result.checks] == [True, True]
    info = read_onnx_info(result.artifacts["fp16"])  # metadata survives the FP16 conversion
    assert info.arch == name and info.threshold == 0.42 and info.spec.input_size == (32, 32)
    assert info.extra["source_checkpoint_sha256"]
    report = json.loads((tmp_path / f"{name}.export.json").read_text())
    assert report["checks"][0]["what"] == "onnx vs pytorch"


def test_onnx_interface_and_dynamic_batch(tmp_path):
    import onnxruntime as ort

    result = export_model(checkpoint=_checkpoint(tmp_path, "meso4"), n_verify=2)
    s = ort.InferenceSession(str(result.artifacts["onnx"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == ["input"] and [o.name for o in s.get_outputs()] == ["logit"]
    for n in (1, 5):
        assert s.run(None, {"input": np.zeros((n, 3, 32, 32), np.float32)})[0].shape == (n, 1)
    opset = {o.domain: o.version for o in __import__("onnx").load(str(result.artifacts["onnx"])).opset_import}
    assert opset[""] >= 17


def test_verifies_on_the_runs_validation_images_and_slims(tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    write_split(data / "train", 2, rng)
    write_split(data / "validate", 3, rng)
    result = export_model(checkpoint=_checkpoint(tmp_path, "meso4", data=data), simplify=True)
    assert [c.inputs for c in result.checks] == [f"images from {data / 'validate'}"] * 2
    assert result.checks[0].n == 6 and result.checks[1].what == "onnx (slimmed) vs pytorch"


def test_verification_failure_exits_1_and_moves_the_artifact(tmp_path, monkeypatch):
    ckpt = _checkpoint(tmp_path, "meso4")
    real = B.torch_logits
    monkeypatch.setattr(B, "torch_logits", lambda m, x: real(m, x) + 0.5)  # a wrong export, simulated
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt)])
    assert r.exit_code == 1 and "verification failed" in r.output and "Traceback" not in r.output
    assert "generated images — FAILED; verify on real faces with --verify-data" in r.output  # no data recorded
    assert not (tmp_path / "meso4.onnx").exists() and (tmp_path / "meso4.onnx.failed").exists()


def test_damaged_and_mismatched_checkpoints_give_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --model looks in ./weights/<model>/
    ckpt = _checkpoint(tmp_path, "meso4")
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt)])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "damaged" in r.output
    r = CliRunner().invoke(main, ["--model", "meso4", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "dfx-train meso4" in r.output
    r = CliRunner().invoke(main, [])
    assert r.exit_code == 1 and "exactly one of --model, --checkpoint or --onnx" in r.output


def test_explicit_engine_without_gpu_fails_at_once_and_writes_nothing(tmp_path):
    from dfx.export.tensorrt_build import engine_unavailable_reason

    if engine_unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are available here")
    ckpt = _checkpoint(tmp_path, "meso4")
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt), "--engine"])
    assert r.exit_code == 1 and "cannot build a TensorRT engine here" in r.output and "dfx[gpu]" in r.output
    assert not (tmp_path / "meso4.onnx").exists()  # all or nothing: no half-finished export
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt), "--fp16"])  # auto: skip with a notice
    assert r.exit_code == 0 and "note: no TensorRT engine" in r.output and (tmp_path / "meso4.fp16.onnx").is_file()


@pytest.mark.parametrize("name", ["meso4", "efficientnet_b0"])
def test_int8_runs_and_reports(name, tmp_path):
    calib = tmp_path / "calib"
    write_split(calib, 12, np.random.default_rng(0))
    result = export_model(checkpoint=_checkpoint(tmp_path, name), int8=True, calib=calib, n_verify=2)
    rep = result.int8
    assert rep.n_calib == 24 or rep.n_calib == min(64, 24)
    assert rep.fp32_img_s > 0 and rep.int8_img_s > 0 and 0 <= rep.agreement <= 1
    assert rep.kept == ("int8" in result.artifacts) == (tmp_path / f"{name}.int8.onnx").exists()
    if rep.kept:
        assert read_onnx_info(result.artifacts["int8"]).arch == name
    else:
        assert any("INT8 not kept" in n for n in result.notices)


def test_int8_needs_calibration_data(tmp_path):
    with pytest.raises(DfxError, match="--calib"):
        export_model(checkpoint=_checkpoint(tmp_path, "meso4"), int8=True)


def test_batch_sizes_are_validated():
    from dfx.export.tensorrt_build import parse_batch_sizes

    assert parse_batch_sizes("1,32,128") == {"min": 1, "opt": 32, "max": 128}
    assert parse_batch_sizes("8") == {"min": 8, "opt": 8, "max": 8}
    for bad in ("32,1,128", "a,b,c", "1,2"):
        with pytest.raises(DfxError, match="MIN,OPT,MAX"):
            parse_batch_sizes(bad)


def test_each_export_step_is_announced_with_its_time(tmp_path, caplog):
    with caplog.at_level("INFO", logger="dfx.export"):
        export_model(checkpoint=_checkpoint(tmp_path, "meso4"), fp16=True, engine=False)
    text = caplog.text
    assert "exporting meso4 to ONNX (opset 17)" in text and "converting to FP16" in text
    assert text.count("done in") == 2


def test_a_failed_re_export_leaves_the_verified_artifacts_and_their_report(tmp_path, monkeypatch):
    ckpt = _checkpoint(tmp_path, "meso4")
    export_model(checkpoint=ckpt, fp16=True, engine=False)
    kept = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.suffix in (".onnx", ".json")}
    assert {"meso4.onnx", "meso4.fp16.onnx", "meso4.export.json"} <= set(kept)
    real = B.compare
    monkeypatch.setattr(B, "compare", lambda what, *a, **k: real(what, *a, **k) if "fp16" not in what else
                        real(what, a[0], a[1] + 1.0, *a[2:], **k))  # the FP16 conversion goes wrong this time
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt), "--fp16", "--no-engine"])
    assert r.exit_code == 1 and "verification failed" in r.output and "earlier exports are untouched" in r.output
    assert {n: (tmp_path / n).read_bytes() for n in kept} == kept
    assert (tmp_path / "meso4.fp16.onnx.failed").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dfx-export-")]


def test_decisions_at_the_threshold_may_flip_within_tolerance():
    from dfx.export.verify import compare, logit

    t = logit(0.3)
    ref = np.array([t, t + 2.0, t - 2.0])
    report = compare("x vs y", ref, ref + np.array([-3e-6, 1e-4, -1e-4]), 0.3, 1e-3, 1.0, "test images")
    assert report.passed and report.agreement == 1.0 and 0 < report.max_abs_score_diff < 1e-4
    assert not compare("x vs y", ref, ref + np.array([0, -2.5, 0]), 0.3, 1e-3, 1.0, "test images").passed
    assert not compare("x vs y", ref, ref * np.nan, 0.3, 1e-3, 0.0, "test images").passed


def test_a_checkpoint_whose_threshold_is_nan_does_not_export(tmp_path):
    import json as _json

    from safetensors import safe_open
    from safetensors.torch import save_file

    ckpt = _checkpoint(tmp_path, "meso4")
    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    record = _json.loads(meta["dfx"])
    record["threshold"] = float("nan")
    save_file(tensors, str(ckpt), metadata={**meta, "dfx": _json.dumps(record)})
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt)])
    assert r.exit_code == 1 and "threshold" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "meso4.onnx").exists()


def test_calibration_stage_stamps_every_artifact_and_reports_it(tmp_path):
    data = tmp_path / "faces"
    write_split(data, 8, np.random.default_rng(4))
    ckpt = _checkpoint(tmp_path, "meso4")
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt), "--fp16", "--no-engine", "--calibrate", str(data),
                                  "--threshold-policy", "f1"])
    assert r.exit_code == 0, r.output
    fp32, fp16 = read_onnx_info(tmp_path / "meso4.onnx"), read_onnx_info(tmp_path / "meso4.fp16.onnx")
    assert fp32.temperature == fp16.temperature != 1.0 and fp32.threshold == fp16.threshold
    report = json.loads((tmp_path / "meso4.export.json").read_text())["calibration"]
    assert report["policy"] == "f1" and report["temperature"] == fp32.temperature
    assert set(report["per_source"]) == {"faces"} and report["n"] == 16
    r = CliRunner().invoke(main, ["--checkpoint", str(ckpt), "--calibrate", str(data), "--threshold-policy", "fpr=5"])
    assert r.exit_code == 1 and "threshold policy" in r.output
