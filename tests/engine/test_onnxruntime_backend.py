"""The onnxruntime backends: IO binding, one planned shape per run, the FP16 choice on a GPU, and refusals of
ONNX files that are not dfx models. The CUDA-specific runs are in test_cuda.py (GPU-marked)."""

import shutil

import numpy as np
import pytest

from dfx.engine import select
from dfx.engine.backends.onnxruntime_backend import OnnxRuntimeCPUBackend
from dfx.engine.decode import Status
from dfx.engine.errors import DfxError
from dfx.engine.pipeline import score_files
from dfx.engine.select import open_backend


class Recording(OnnxRuntimeCPUBackend):
    """The CPU backend, noting every batch size it runs."""

    def __init__(self, *args, **kwargs):
        self.calls = []
        super().__init__(*args, **kwargs)

    def infer(self, batch):
        self.calls.append(len(batch))
        return super().infer(batch)


def test_plan_once_runs_one_shape_warmed_up_before_the_first_batch(tiny_onnx, bad_corpus):
    # 7 files, one undecodable in the first batch: a compacted batch of 3 and a short last batch of 3
    files = [bad_corpus[k] for k in ("rgb", "truncated", "cmyk", "grayscale", "rgba", "palette", "gray16")]
    with OnnxRuntimeCPUBackend(tiny_onnx) as free:
        want = list(score_files(free, files, batch_size=4, decode="threads"))
    with Recording(tiny_onnx, plan_once=True) as be:
        assert be.prepare(4) == 4 and be.calls == [4]  # the warm-up builds the plan
        be.prepare(4)
        assert be.calls == [4]  # once per shape
        be.calls.clear()
        rows = list(score_files(be, files, batch_size=4, decode="threads"))
    assert be.calls == [4, 4]  # every batch padded to the one shape
    assert rows == want  # padding never changes a score


def test_without_plan_once_batches_keep_their_size(tiny_onnx, bad_corpus):
    files = [bad_corpus[k] for k in ("rgb", "cmyk", "grayscale", "rgba", "palette")]
    with Recording(tiny_onnx) as be:
        list(score_files(be, files, batch_size=4, decode="threads"))
    assert be.calls == [4, 1]  # no wasted work on the CPU


def test_io_binding_reads_the_batch_in_place_and_matches_session_run(tiny_onnx):
    x = np.random.default_rng(1).normal(size=(6, 3, 32, 32)).astype(np.float32)
    with OnnxRuntimeCPUBackend(tiny_onnx) as be:
        got = be.infer(x[::2])  # a non-contiguous view is made contiguous, not misread
        want = be.session.run(None, {"input": np.ascontiguousarray(x[::2])})[0].reshape(-1)
    np.testing.assert_array_equal(got, want)


def test_nan_logits_are_error_rows_not_real(tiny_onnx, bad_corpus, monkeypatch):
    files = [bad_corpus["rgb"], bad_corpus["cmyk"]]

    def nan_for_first(self, batch):
        out = np.zeros(len(batch), np.float32)
        out[0] = np.nan
        return out

    monkeypatch.setattr(OnnxRuntimeCPUBackend, "infer", nan_for_first)
    with OnnxRuntimeCPUBackend(tiny_onnx) as be:
        rows = list(score_files(be, files, batch_size=2, decode="threads", threshold=0.5))
    assert (rows[0].status, rows[0].score, rows[0].label) == (Status.MODEL_ERROR, None, None)
    assert "non-finite" in rows[0].error
    assert (rows[1].status, rows[1].score, rows[1].label) == (Status.OK, 0.5, "fake")


def _fake_cuda(monkeypatch):
    """Makes auto selection believe onnxruntime-gpu and a GPU are here; 'CUDA' sessions run on the CPU."""

    class FakeCuda(OnnxRuntimeCPUBackend):
        name, device = "onnxruntime-cuda", "cuda"

    from dfx.engine.backends import onnxruntime_backend

    monkeypatch.setattr(onnxruntime_backend, "cuda_provider_available", lambda: True)
    real = select.get_backend_class
    monkeypatch.setattr(select, "get_backend_class", lambda n: FakeCuda if n == "onnxruntime-cuda" else real(n))


def _with_threshold(src, dst, threshold):
    onnx = pytest.importorskip("onnx")
    import json

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == "dfx":
            record = json.loads(prop.value)
            record["threshold"] = threshold
            prop.value = json.dumps(record)
    onnx.save(model, str(dst))


def test_gpu_runs_the_fp16_export_beside_the_onnx_given(tiny_onnx, tmp_path, monkeypatch, caplog):
    _fake_cuda(monkeypatch)
    onnx = tmp_path / "meso4.onnx"
    shutil.copy(tiny_onnx, onnx)
    assert open_backend(onnx).path == onnx  # no FP16 export beside it
    shutil.copy(tiny_onnx, tmp_path / "meso4.fp16.onnx")  # stands in for the FP16 export: same record
    with caplog.at_level("INFO", logger="dfx.engine"):
        be = open_backend(onnx)
    assert be.name == "onnxruntime-cuda" and be.path == tmp_path / "meso4.fp16.onnx"
    assert "--no-fp16" in caplog.text
    assert open_backend(onnx, fp16=False).path == onnx
    assert open_backend(onnx, "onnxruntime-cpu").path == onnx  # the CPU runs what it is given
    assert open_backend(tmp_path / "meso4.fp16.onnx").path == tmp_path / "meso4.fp16.onnx"
    _with_threshold(tiny_onnx, tmp_path / "meso4.fp16.onnx", 0.9)  # a stale FP16 file of another run
    with caplog.at_level("WARNING", logger="dfx.engine"):
        assert open_backend(onnx).path == onnx
    assert "does not carry the same dfx record" in caplog.text


def test_onnx_that_is_not_a_dfx_model_is_refused_on_load(tiny_onnx, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    meta = {p.key: p.value for p in onnx.load(str(tiny_onnx)).metadata_props}

    def write(name, in_shape, out_shape):
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)
        y = helper.make_tensor_value_info("logit", TensorProto.FLOAT, out_shape)
        nodes = [helper.make_node("ReduceMean", ["input"], ["hw"], axes=[2, 3], keepdims=0)]  # (N, 3)
        if out_shape[1] == 1:
            nodes.append(helper.make_node("ReduceMean", ["hw"], ["logit"], axes=[1], keepdims=1))  # (N, 1)
        else:
            nodes[0].output[0] = "logit"
        graph = helper.make_graph(nodes, "g", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                  ir_version=8)  # what onnxruntime ≤ 1.31 reads too (newer onnx writes 14)
        helper.set_model_props(model, meta)
        onnx.save(model, str(tmp_path / name))
        return tmp_path / name

    with pytest.raises(DfxError, match="one logit per image"):
        open_backend(write("three.onnx", ["N", 3, 32, 32], ["N", 3]), "onnxruntime-cpu")
    with pytest.raises(DfxError, match="input is 64x64 but its dfx record says 32x32"):
        open_backend(write("size.onnx", ["N", 3, 64, 64], ["N", 1]), "onnxruntime-cpu")
    fixed = open_backend(write("b1.onnx", [1, 3, 32, 32], [1, 1]), "onnxruntime-cpu")
    assert (fixed.min_batch, fixed.max_batch) == (1, 1)  # a fixed-batch export runs one image at a time
