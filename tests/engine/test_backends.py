import json
import types

import numpy as np
import pytest

from dfx.engine.artifact import read_onnx_info
from dfx.engine.backends import get_backend_class
from dfx.engine.backends import tensorrt_backend as trt_mod
from dfx.engine.errors import DfxError
from dfx.engine.select import open_backend

from .._fakes import fake_plan


def test_onnx_runs_with_metadata(tiny_onnx):
    be = open_backend(tiny_onnx)  # auto: CUDA where onnxruntime-gpu and a GPU are, else the CPU
    assert be.name in ("onnxruntime-cpu", "onnxruntime-cuda")
    assert be.info.arch == "meso4" and be.info.spec.input_size == (32, 32)
    with be:
        out = be.infer(np.zeros((3, 3, 32, 32), np.float32))
    assert out.shape == (3,) and out.dtype == np.float32


def test_plan_without_tensorrt_falls_back_to_sidecar_onnx_and_says_so(tiny_onnx, tmp_path, caplog):
    plan = fake_plan(tmp_path, tiny_onnx)
    with caplog.at_level("WARNING", logger="dfx.engine"):
        be = open_backend(plan)
    assert be.name in ("onnxruntime-cpu", "onnxruntime-cuda") and be.path == tmp_path / "meso4.onnx"
    assert f"falling back to onnxruntime ({be.device}) with {be.path}" in caplog.text
    assert caplog.text.count("falling back") == 1


def test_sidecar_fallback_must_lie_beside_the_engine_and_match_its_record(tiny_onnx, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for name in ("../meso4.onnx", str(tmp_path / "meso4.onnx"), ".."):
        plan = fake_plan(other, tiny_onnx, onnx=name)
        with pytest.raises(DfxError, match="must be a file name beside the engine"):
            open_backend(plan)
    info = read_onnx_info(tiny_onnx)
    info.threshold = 0.9  # the sidecar was edited, or the ONNX beside it replaced
    plan = fake_plan(tmp_path, tiny_onnx, info=info)
    with pytest.raises(DfxError, match="does not carry the model record"):
        open_backend(plan)


def test_explicit_tensorrt_without_it_is_a_user_error(tiny_onnx, tmp_path):
    plan = fake_plan(tmp_path, tiny_onnx)
    with pytest.raises(DfxError, match="dfx\\[gpu\\]|no CUDA GPU"):
        open_backend(plan, "tensorrt")
    with pytest.raises(DfxError, match="dfx-export --engine"):
        open_backend(tiny_onnx, "tensorrt")


def test_missing_sidecar_or_fallback_onnx(tiny_onnx, tmp_path):
    plan = fake_plan(tmp_path, tiny_onnx)
    (tmp_path / "meso4.onnx").unlink()
    with pytest.raises(DfxError, match="fallback ONNX .* is missing"):
        open_backend(plan)
    (tmp_path / "meso4.plan.json").unlink()
    with pytest.raises(DfxError, match="sidecar"):
        open_backend(plan)


def test_damaged_sidecar(tiny_onnx, tmp_path):
    plan = fake_plan(tmp_path, tiny_onnx)
    (tmp_path / "meso4.plan.json").write_text(json.dumps({"precision": "fp16"}))
    with pytest.raises(DfxError, match="damaged"):
        open_backend(plan)


def test_engine_for_another_gpu_or_tensorrt_is_refused_with_rebuild_command(tiny_onnx, tmp_path, monkeypatch):
    plan = fake_plan(tmp_path, tiny_onnx, gpu_name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")
    fake_trt = types.SimpleNamespace(__version__="11.4.0")
    monkeypatch.setattr(trt_mod, "_modules", lambda: (fake_trt, None))
    monkeypatch.setattr(trt_mod, "gpu_identity", lambda device=0: ("NVIDIA H100 80GB HBM3", "9.0"))
    with pytest.raises(DfxError, match="built for NVIDIA A100.*Rebuild it here: dfx-export --onnx .*meso4.onnx "
                                      "--engine"):
        open_backend(plan)
    fake_trt.__version__ = "10.13.0"
    plan2 = fake_plan(tmp_path, tiny_onnx, gpu_name="NVIDIA H100 80GB HBM3")
    with pytest.raises(DfxError, match="TensorRT 11.4.0 \\(this machine has 10.13.0\\)"):
        open_backend(plan2)


def test_unknown_names_list_valid_choices(tiny_onnx, tmp_path):
    with pytest.raises(DfxError, match="valid: auto, tensorrt, onnxruntime-cuda, onnxruntime-cpu"):
        open_backend(tiny_onnx, "openvino")
    with pytest.raises(DfxError, match="valid: auto"):
        get_backend_class("openvino")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(DfxError, match="give a .plan"):
        open_backend(tmp_path / "m.pt")


def test_onnx_without_dfx_metadata_is_refused(tmp_path, tiny_onnx):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "plain.onnx"))
    with pytest.raises(DfxError, match="no dfx metadata"):
        open_backend(tmp_path / "plain.onnx")


def test_cuda_backend_needs_onnxruntime_gpu(tiny_onnx):
    from dfx.engine.backends.onnxruntime_backend import cuda_provider_available

    if cuda_provider_available():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(DfxError, match="onnxruntime-gpu"):
        open_backend(tiny_onnx, "onnxruntime-cuda")
