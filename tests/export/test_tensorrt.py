"""TensorRT engine build and run: needs a CUDA GPU with TensorRT (``pip install 'dfx[gpu]'``)."""

import numpy as np
import pytest

from dfx.engine.artifact import ModelInfo

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _need_gpu():
    from dfx.export.tensorrt_build import engine_unavailable_reason

    reason = engine_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("name", ["meso4", "efficientnet_b0"])
def test_engine_builds_verifies_and_runs_with_partial_batches(name, tmp_path):
    import torch

    from dfx.engine.select import open_backend
    from dfx.engine.sidecar import EngineSidecar
    from dfx.export.build import export_model
    from dfx.training import create_model, get_entry
    from dfx.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    spec = get_entry(name).default_spec.with_size(64)
    model, kwargs = create_model(name, spec)
    ckpt = save_checkpoint(tmp_path / "best.safetensors", model.eval(),
                           ModelInfo(arch=name, spec=spec, model_kwargs=kwargs))
    result = export_model(checkpoint=ckpt, engine=True, batch_sizes="1,8,16")
    assert result.checks[-1].what == "tensorrt fp16 vs fp32 onnx" and result.checks[-1].passed
    side = EngineSidecar.load(result.artifacts["engine"])
    assert side.profile == {"min": 1, "opt": 8, "max": 16} and side.onnx == f"{name}.onnx"
    x = np.random.default_rng(0).normal(size=(5, 3, 64, 64)).astype(np.float32)
    with open_backend(result.artifacts["engine"]) as trt_be, open_backend(result.artifacts["onnx"]) as ort_be:
        assert trt_be.name == "tensorrt"
        np.testing.assert_allclose(trt_be.infer(x), ort_be.infer(x), atol=0.1)
