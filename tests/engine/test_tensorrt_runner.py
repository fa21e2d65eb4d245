"""The TensorRT runner's host-side logic (buffers, shapes, copies, profile limits, clean-up) against a fake
TensorRT + CUDA runtime that executes the engine's fallback ONNX. The real TensorRT path is GPU-marked in
tests/export/test_tensorrt.py."""

import ctypes
import types

import numpy as np
import pytest

from dfx.engine.backends import tensorrt_backend as trt_mod
from dfx.engine.select import open_backend

from .._fakes import fake_plan


class FakeCudart:
    cudaStreamNonBlocking = 1
    cudaHostRegisterDefault = 0
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self):
        self.live, self.freed, self.copies, self.sources = {}, [], [], []
        self.registered, self.register_log = {}, []
        self.register_error = 0

    def cudaHostRegister(self, ptr, size, flags):
        if not self.register_error:
            self.registered[ptr] = size
            self.register_log.append(ptr)
        return (self.register_error,)

    def cudaHostUnregister(self, ptr):
        del self.registered[ptr]
        return (0,)

    def _alloc(self, n):
        buf = ctypes.create_string_buffer(n)
        self.live[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    cudaMallocHost = cudaMalloc = _alloc

    def _free(self, ptr):
        self.freed.append(self.live.pop(int(ptr)))
        return (0,)

    cudaFreeHost = cudaFree = _free

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        ctypes.memmove(int(dst), int(src), n)
        self.copies.append((kind, n))
        self.sources.append(int(src))
        return (0,)

    def cudaGetDeviceCount(self):
        return 0, 1

    def cudaGetDeviceProperties(self, device):
        return 0, types.SimpleNamespace(name=b"NVIDIA H100", major=9, minor=0)

    def cudaEventElapsedTime(self, a, b):
        return 0, 0.25

    def __getattr__(self, name):  # set device, streams and events: succeed and hand out a handle
        return lambda *a: (0, object())


class FakeEngine:
    num_io_tensors = 2

    def __init__(self, onnx, profile, hw):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        self.profile, self.hw = profile, hw

    def get_tensor_name(self, i):
        return ["input", "logit"][i]

    def get_tensor_mode(self, name):
        return "in" if name == "input" else "out"

    def get_tensor_profile_shape(self, name, index):
        return [(b, 3, *self.hw) for b in self.profile]

    def get_tensor_dtype(self, name):
        return "float32"

    def create_execution_context(self):
        engine = self

        class Context:
            addr, shape = {}, None

            def set_tensor_address(self, name, ptr):
                self.addr[name] = ptr

            def set_input_shape(self, name, shape):
                self.shape = shape

            def execute_async_v3(self, stream):
                n = int(np.prod(self.shape))
                x = np.frombuffer((ctypes.c_float * n).from_address(self.addr["input"]), np.float32)
                y = engine.session.run(None, {"input": x.reshape(self.shape)})[0]
                ctypes.memmove(self.addr["logit"], y.astype(np.float32).ctypes.data, y.nbytes)
                return True

        return Context()


@pytest.fixture
def fake_gpu(monkeypatch, tiny_onnx, tmp_path):
    plan = fake_plan(tmp_path, tiny_onnx, profile={"min": 2, "opt": 4, "max": 4})
    cudart = FakeCudart()
    trt = types.SimpleNamespace(
        __version__="11.4.0", TensorIOMode=types.SimpleNamespace(INPUT="in"),
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, s: None}),
        Runtime=lambda logger: types.SimpleNamespace(
            deserialize_cuda_engine=lambda data: FakeEngine(tiny_onnx, (2, 4, 4), (32, 32))),
        nptype=lambda dt: np.float32)
    monkeypatch.setattr(trt_mod, "_modules", lambda: (trt, cudart))
    return plan, cudart


def test_runner_matches_onnxruntime_and_frees_everything(fake_gpu, tiny_onnx):
    plan, cudart = fake_gpu
    x = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    be = open_backend(plan)
    assert be.name == "tensorrt" and (be.min_batch, be.max_batch) == (2, 4)
    with be, open_backend(tiny_onnx, "onnxruntime-cpu") as ref:
        np.testing.assert_allclose(be.infer(x), ref.infer(x), rtol=1e-6)
        assert be.last_timing_ms == {"h2d": 0.25, "compute": 0.25, "d2h": 0.25}
        assert cudart.copies[-2:] == [(1, x.nbytes), (2, 3 * 4)]  # only the used part of the buffers moves
        with pytest.raises(ValueError, match="outside the engine profile"):
            be.infer(x[:1])
    assert not cudart.live and len(cudart.freed) == 4  # pinned + device buffers for input and output


def test_scan_through_the_engine_pads_the_last_batch(fake_gpu, tiny_onnx, bad_corpus, tmp_path):
    from dfx.engine.scan import scan

    plan, _ = fake_gpu
    files = [bad_corpus[k] for k in ("rgb", "cmyk", "grayscale", "rgba", "palette")]
    s_trt = scan(files, engine=plan, output=str(tmp_path / "trt.csv"), batch_size=64, progress=False)
    scan(files, engine=tiny_onnx, backend="onnxruntime-cpu", output=str(tmp_path / "ort.csv"), progress=False)
    assert s_trt.backend.startswith("tensorrt") and s_trt.scored == 5
    assert (tmp_path / "trt.csv").read_text() == (tmp_path / "ort.csv").read_text()


@pytest.mark.parametrize("register_error", [0, 1])
def test_pipeline_buffers_go_to_the_gpu_without_a_staging_copy(fake_gpu, tiny_onnx, bad_corpus, register_error):
    from dfx.engine.pipeline import score_files

    plan, cudart = fake_gpu
    cudart.register_error = register_error  # a refused page-lock falls back to staging, same scores
    files = [bad_corpus[k] for k in ("rgb", "cmyk", "grayscale", "rgba", "palette")]
    with open_backend(tiny_onnx, "onnxruntime-cpu") as ref:
        want = [r.score for r in score_files(ref, files, batch_size=4)]
    with open_backend(plan) as be:
        got = [r.score for r in score_files(be, files, batch_size=4)]
        staging = be._host["input"].ctypes.data
        assert not cudart.registered  # unlocked when the scan ends
    np.testing.assert_allclose(got, want, rtol=1e-6)
    h2d = [src for (kind, _), src in zip(cudart.copies, cudart.sources) if kind == 1]
    if register_error:
        assert h2d == [staging, staging] and not cudart.register_log
    else:  # 5 files, profile max 4: a full batch straight from the locked block, then 1 padded to 2 (staged)
        (block,) = cudart.register_log
        assert block <= h2d[0] < block + 4 * 4 * 3 * 32 * 32 * 4 and h2d[1] == staging
