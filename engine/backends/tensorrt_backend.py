"""TensorRT backend: a deserialised ``.plan`` run with named tensors on a non-default CUDA stream.

Uses ``tensorrt`` and ``cuda-python``'s ``cuda.bindings.runtime`` (the ``gpu`` extra). Host memory is
page-locked so copies are truly asynchronous: during a scan the pipeline's own batch buffers are (no staging
copy per batch); other batches go through a pinned buffer of our own. Device buffers are sized once for the
profile's largest batch.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DfxError, MissingDependencyError
from ..sidecar import EngineSidecar
from .base import Backend
from .pinned import page_locked

__all__ = ["TensorRTBackend", "gpu_identity", "TensorRTUnavailable"]

log = logging.getLogger("dfx.engine")


class TensorRTUnavailable(DfxError):
    """TensorRT, cuda-python or a GPU is missing here (the runtime may fall back to onnxruntime on CPU)."""


def _modules() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable("TensorRT is not installed; install it with: pip install 'dfx[gpu]'") from e
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as e:
        raise MissingDependencyError("cuda-python", "gpu") from e
    return trt, cudart


def _check(result: Any) -> Any:
    """cuda-python returns (err, *values); raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise DfxError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of ``device``.

    Raises:
        TensorRTUnavailable: when no CUDA GPU is visible.
    """
    _, cudart = _modules()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise TensorRTUnavailable("no CUDA GPU is visible on this machine")
    props = _check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00 "), f"{props.major}.{props.minor}"


class TensorRTBackend(Backend):
    """Runs a TensorRT engine built by ``dfx-export``; refuses one built for another GPU or TensorRT."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: int = 0, **_: Any):
        super().__init__(path)
        if not self.path.is_file():
            raise DfxError(f"{self.path}: no such engine file")
        self.sidecar = EngineSidecar.load(self.path)
        self.info = self.sidecar.info
        self.min_batch = self.sidecar.profile["min"]
        self.max_batch = self.sidecar.profile["max"]
        self._device_id = device
        trt, _ = _modules()
        gpu, cc = gpu_identity(device)
        problems = []
        if trt.__version__ != self.sidecar.tensorrt_version:
            problems.append(f"TensorRT {self.sidecar.tensorrt_version} (this machine has {trt.__version__})")
        if (gpu, cc) != (self.sidecar.gpu_name, self.sidecar.compute_capability):
            problems.append(f"{self.sidecar.gpu_name} (sm {self.sidecar.compute_capability}; this machine has "
                            f"{gpu}, sm {cc})")
        if problems:
            raise DfxError(f"{self.path} was built for {' and '.join(problems)}; engines only run where they were "
                           f"built. Rebuild it here: {self.sidecar.rebuild_command(self.path)}")
        self.device = f"{gpu} (TensorRT {trt.__version__})"
        self._engine = self._context = self._stream = None
        self._buffers: list[Any] = []
        self._events: list[Any] = []
        self._locked: list[tuple[int, int]] = []  # page-locked pipeline buffers: [start, end) addresses
        self.last_timing_ms: dict[str, float] = {}

    def activate(self) -> None:
        if self._context is not None:
            return
        trt, cudart = _modules()
        _check(cudart.cudaSetDevice(self._device_id))
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self._engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise DfxError(f"{self.path}: TensorRT could not deserialise the engine; rebuild it: "
                           f"{self.sidecar.rebuild_command(self.path)}")
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking))
        # Four events split each call into host→device copy, compute and device→host copy (bench reports them).
        self._events = [_check(cudart.cudaEventCreate()) for _ in range(4)]
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise DfxError(f"{self.path}: expected one input and one output tensor, found {names}")
        self._in_name, self._out_name = inputs[0], outputs[0]
        max_shape = tuple(self._engine.get_tensor_profile_shape(self._in_name, 0)[2])  # (min, opt, max) Dims
        self._sample_shape = max_shape[1:]
        self._host, self._dev = {}, {}
        for name, shape in ((self._in_name, max_shape), (self._out_name, (self.max_batch, 1))):
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            hptr = _check(cudart.cudaMallocHost(nbytes))
            dptr = _check(cudart.cudaMalloc(nbytes))
            self._buffers += [("host", hptr), ("dev", dptr)]
            buf = (ctypes.c_byte * nbytes).from_address(int(hptr))
            self._host[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
            self._dev[name] = dptr
            self._context.set_tensor_address(name, int(dptr))

    @contextmanager
    def input_buffer(self, buf: np.ndarray) -> Iterator[None]:
        """Page-locks the pipeline's batch buffers, so ``infer`` copies views of them straight to the GPU."""
        with page_locked(buf, _modules()[1]) as locked:
            if not locked:  # infer stages batches through its own pinned buffer instead
                yield
                return
            span = (buf.ctypes.data, buf.ctypes.data + buf.nbytes)
            self._locked.append(span)
            try:
                yield
            finally:
                self._locked.remove(span)

    def _page_locked(self, batch: np.ndarray) -> bool:
        start = batch.ctypes.data
        return (batch.flags.c_contiguous and batch.dtype == self._host[self._in_name].dtype
                and any(lo <= start and start + batch.nbytes <= hi for lo, hi in self._locked))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        _, cudart = _modules()
        n = len(batch)
        if not self.min_batch <= n <= self.max_batch:
            raise ValueError(f"batch of {n} is outside the engine profile [{self.min_batch}, {self.max_batch}]")
        h_in, h_out = self._host[self._in_name], self._host[self._out_name]
        if self._page_locked(batch):
            src = batch
        else:  # stage into our pinned buffer (casts too, should the engine's input not be float32)
            h_in[:n] = batch
            src = h_in[:n]
        in_bytes = src.nbytes
        out_bytes = h_out[:n].nbytes
        self._context.set_input_shape(self._in_name, (n, *self._sample_shape))
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ev = self._events
        _check(cudart.cudaEventRecord(ev[0], self._stream))
        _check(cudart.cudaMemcpyAsync(self._dev[self._in_name], src.ctypes.data, in_bytes, h2d, self._stream))
        _check(cudart.cudaEventRecord(ev[1], self._stream))
        if not self._context.execute_async_v3(self._stream):
            raise DfxError("TensorRT execution failed")
        _check(cudart.cudaEventRecord(ev[2], self._stream))
        _check(cudart.cudaMemcpyAsync(h_out.ctypes.data, self._dev[self._out_name], out_bytes, d2h, self._stream))
        _check(cudart.cudaEventRecord(ev[3], self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        self.last_timing_ms = {name: float(_check(cudart.cudaEventElapsedTime(ev[i], ev[i + 1])))
                               for i, name in enumerate(("h2d", "compute", "d2h"))}
        return h_out[:n].reshape(n).astype(np.float32, copy=True)

    def close(self) -> None:
        if self._context is None:
            return
        _, cudart = _modules()
        self._host = {}
        for kind, ptr in self._buffers:
            (cudart.cudaFreeHost if kind == "host" else cudart.cudaFree)(ptr)
        self._buffers = []
        for event in self._events:
            cudart.cudaEventDestroy(event)
        self._events = []
        cudart.cudaStreamDestroy(self._stream)
        self._context = self._engine = self._stream = None
