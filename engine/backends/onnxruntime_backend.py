"""onnxruntime backends: CPU (tuned session) and CUDA (with ``onnxruntime-gpu``).

Both run through IO binding: the input is bound where the pipeline decoded it (a view of its batch buffer) and
the output into a preallocated array, so no copy is made on the way in on the CPU and only onnxruntime's own
host→device copy on the GPU (from page-locked memory when cuda-python can register the buffers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..artifact import read_onnx_info
from ..errors import DfxError
from .base import Backend
from .pinned import cudart_or_none, page_locked

__all__ = ["OnnxRuntimeCPUBackend", "OnnxRuntimeCUDABackend", "physical_cores", "cuda_provider_available",
           "CUDA_PROVIDER_OPTIONS"]

# Chosen by measurement on an H200 with onnxruntime-gpu 1.31 (issue "GPU-scale scanning"), not left at defaults:
# - HEURISTIC conv search: faster in steady state than the default EXHAUSTIVE (efficientnet_b0 FP16 8,600 vs
#   6,300 img/s; xception 2,600 vs 2,300) and cheaper to plan; DEFAULT fell back to slow kernels (200–650 img/s).
# - TF32 off: it moved scores by up to 5e-4 against the CPU; dfx promises the same scores everywhere.
CUDA_PROVIDER_OPTIONS = {
    "device_id": "0",
    "cudnn_conv_algo_search": "HEURISTIC",
    "use_tf32": "0",
    "cudnn_conv_use_max_workspace": "1",
    "do_copy_in_default_stream": "1",
}


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
    # Pad every batch of a run to one shape and warm that shape up in prepare(): for providers whose first run
    # of a shape is expensive (cuDNN plans per shape: 2.6–7 s each on an H200).
    plan_once = False

    def __init__(self, path: str | Path, threads: int | None = None, plan_once: bool | None = None):
        super().__init__(path)
        if not self.path.is_file():
            raise DfxError(f"{self.path}: no such ONNX file")
        self.threads = threads
        if plan_once is not None:
            self.plan_once = plan_once
        self.session = None
        self._warm: set[int] = set()
        self.info = read_onnx_info(self._make_session())
        hw = self.info.spec.input_size
        if any(isinstance(d, int) and d != want for d, want in zip(self._input_hw, hw)):
            raise DfxError(f"{self.path}: the model's input is {self._input_hw[0]}x{self._input_hw[1]} but its dfx "
                           f"record says {hw[0]}x{hw[1]}; the file was edited or mis-exported: re-export it")

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
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise DfxError(f"{self.path}: expected one input and one output, found {len(inputs)} and "
                           f"{len(outputs)}; export the model with dfx-export")
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        if len(out_shape) != 2 or isinstance(out_shape[1], int) and out_shape[1] != 1:
            raise DfxError(f"{self.path}: output {outputs[0].name!r} has shape {out_shape}; dfx models output "
                           f"one logit per image (N, 1). Export the model with dfx-export")
        if len(in_shape) != 4:
            raise DfxError(f"{self.path}: input {inputs[0].name!r} has shape {in_shape}; dfx models take NCHW "
                           f"batches. Export the model with dfx-export")
        if isinstance(in_shape[0], int) and in_shape[0] > 0:  # exported with a fixed batch: run exactly that
            self.min_batch = self.max_batch = in_shape[0]
        self._input_hw = tuple(in_shape[2:])
        self._input, self._output = inputs[0].name, outputs[0].name
        self._warm.clear()
        return self.session

    def activate(self) -> None:
        if self.session is None:
            self._make_session()

    def prepare(self, batch_size: int) -> int:
        if self.plan_once:
            self.min_batch = batch_size  # infer_rows pads short and compacted batches up to it: one shape per run
            if batch_size not in self._warm:
                h, w = self.info.spec.input_size
                self.infer(np.zeros((batch_size, 3, h, w), np.float32))
        return batch_size

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        n = len(batch)
        out = np.empty((n, 1), np.float32)
        binding = self.session.io_binding()
        # Bound in place: the pipeline's buffer is read where it lies (onnxruntime copies it to the device
        # itself when the provider needs it there), and the logits land straight in ``out``.
        binding.bind_input(self._input, "cpu", 0, np.float32, batch.shape, batch.ctypes.data)
        binding.bind_output(self._output, "cpu", 0, np.float32, out.shape, out.ctypes.data)
        try:
            self.session.run_with_iobinding(binding)
        except Exception as e:  # noqa: BLE001 - e.g. a fixed-batch or wrong-size ONNX: say which, once
            raise DfxError(f"{self.path}: onnxruntime failed on a batch of shape {batch.shape} "
                           f"({type(e).__name__}: {e})") from e
        self._warm.add(n)
        return out.reshape(n)

    def close(self) -> None:
        self.session = None


class OnnxRuntimeCPUBackend(_OnnxRuntimeBackend):
    """onnxruntime on the CPU: threads = physical cores, full graph optimisation."""

    name = "onnxruntime-cpu"
    providers = ["CPUExecutionProvider"]


class OnnxRuntimeCUDABackend(_OnnxRuntimeBackend):
    """onnxruntime's CUDA provider (needs ``onnxruntime-gpu`` and a GPU): one planned shape per run."""

    name = "onnxruntime-cuda"
    providers = [("CUDAExecutionProvider", CUDA_PROVIDER_OPTIONS)]
    plan_once = True

    def __init__(self, path: str | Path, threads: int | None = None, plan_once: bool | None = None):
        if not cuda_provider_available():
            raise DfxError("onnxruntime-cuda needs onnxruntime-gpu (pip install onnxruntime-gpu) and a CUDA GPU; "
                           "use --backend onnxruntime-cpu")
        super().__init__(path, threads, plan_once)
        if "CUDAExecutionProvider" not in self.session.get_providers():
            raise DfxError("onnxruntime could not start its CUDA provider (no GPU or CUDA libraries missing); "
                           "use --backend onnxruntime-cpu")
        self.device = "cuda"

    @contextmanager
    def input_buffer(self, buf: np.ndarray) -> Iterator[None]:
        """Page-locks the pipeline's batch buffers for the scan (when cuda-python is installed)."""
        with page_locked(buf, cudart_or_none()):
            yield
