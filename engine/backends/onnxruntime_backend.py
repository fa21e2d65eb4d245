"""onnxruntime backends: CPU (tuned session) and CUDA (with ``onnxruntime-gpu``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..artifact import read_onnx_info
from ..errors import DfxError
from .base import Backend

__all__ = ["OnnxRuntimeCPUBackend", "OnnxRuntimeCUDABackend", "physical_cores", "cuda_provider_available"]


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # part of the base install: a broken environment, not a missing extra
        raise DfxError("onnxruntime is not installed; reinstall dfx (pip install dfx)") from e
    return ort


def physical_cores() -> int:
    """Physical cores (hyper-threads share a core's FP units, so more ORT threads than cores only contend)."""
    try:
        seen = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    seen.add((phys, core))
        if seen:
            return len(seen)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def cuda_provider_available() -> bool:
    """True when onnxruntime-gpu is installed (the provider may still fail to load without a GPU)."""
    return "CUDAExecutionProvider" in _ort().get_available_providers()


class _OnnxRuntimeBackend(Backend):
    providers: list = []

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__(path)
        if not self.path.is_file():
            raise DfxError(f"{self.path}: no such ONNX file")
        self.threads = threads
        self.session = None
        self.info = read_onnx_info(self._make_session())

    def _options(self):
        ort = _ort()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads or physical_cores()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # Idle ORT threads otherwise spin for a while after each run, burning the cores that the decode
        # threads need between batches; without spinning, decoding and inference share the CPU cleanly.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    def _make_session(self):
        ort = _ort()
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=self._options(),
                                                providers=self.providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types for bad files
            raise DfxError(f"{self.path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from e
        self._input = self.session.get_inputs()[0].name
        self._output = self.session.get_outputs()[0].name
        return self.session

    def activate(self) -> None:
        if self.session is None:
            self._make_session()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self._output], {self._input: batch})[0]
        return np.asarray(out, np.float32).reshape(len(batch))

    def close(self) -> None:
        self.session = None


class OnnxRuntimeCPUBackend(_OnnxRuntimeBackend):
    """onnxruntime on the CPU: threads = physical cores, full graph optimisation."""

    name = "onnxruntime-cpu"
    providers = ["CPUExecutionProvider"]


class OnnxRuntimeCUDABackend(_OnnxRuntimeBackend):
    """onnxruntime's CUDA provider (needs ``onnxruntime-gpu`` and a GPU)."""

    name = "onnxruntime-cuda"
    providers = ["CUDAExecutionProvider"]

    def __init__(self, path: str | Path, threads: int | None = None):
        if not cuda_provider_available():
            raise DfxError("onnxruntime-cuda needs onnxruntime-gpu (pip install onnxruntime-gpu) and a CUDA GPU; "
                           "use --backend onnxruntime-cpu")
        super().__init__(path, threads)
        if "CUDAExecutionProvider" not in self.session.get_providers():
            raise DfxError("onnxruntime could not start its CUDA provider (no GPU or CUDA libraries missing); "
                           "use --backend onnxruntime-cpu")
        self.device = "cuda"
