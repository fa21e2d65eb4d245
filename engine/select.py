"""Backend selection: which backend runs an artifact here, with the documented fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

from .backends import BACKENDS, Backend, get_backend_class
from .errors import DfxError
from .sidecar import EngineSidecar

__all__ = ["open_backend", "BACKEND_CHOICES"]

log = logging.getLogger("dfx.engine")
BACKEND_CHOICES = ("auto", *BACKENDS)


def _onnx_backend(path: Path, backend: str, threads: int | None) -> Backend:
    if backend == "auto":
        from .backends.onnxruntime_backend import cuda_provider_available

        if cuda_provider_available():
            try:
                return get_backend_class("onnxruntime-cuda")(path, threads=threads)
            except DfxError as e:
                log.warning("%s; using onnxruntime on the CPU", e)
        backend = "onnxruntime-cpu"
    return get_backend_class(backend)(path, threads=threads)


def open_backend(artifact: str | Path, backend: str = "auto", threads: int | None = None) -> Backend:
    """Builds (does not activate) the backend that runs ``artifact``.

    ``.plan`` → TensorRT; when TensorRT or the GPU is missing and ``backend`` is ``auto``, falls back to
    onnxruntime on the CPU with the ONNX named in the engine's sidecar, and says so once. ``.onnx`` →
    onnxruntime, CUDA when ``onnxruntime-gpu`` and a GPU are there, else CPU.

    Args:
        artifact: a ``.plan`` engine or an ``.onnx`` file written by dfx-export.
        backend: ``auto`` or a name from :data:`BACKEND_CHOICES`.
        threads: CPU threads for onnxruntime (default: physical cores).
    """
    path = Path(artifact)
    if backend not in BACKEND_CHOICES:
        raise DfxError(f"unknown backend {backend!r}; valid: {', '.join(BACKEND_CHOICES)}")
    if not path.exists():
        raise DfxError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".plan":
        if backend in ("auto", "tensorrt"):
            from .backends.tensorrt_backend import TensorRTBackend, TensorRTUnavailable

            try:
                return TensorRTBackend(path)
            except TensorRTUnavailable as e:
                if backend == "tensorrt":
                    raise
                onnx = EngineSidecar.load(path).fallback_onnx(path)
                if not onnx.is_file():
                    raise DfxError(f"{e}, and the fallback ONNX {onnx} named in the sidecar is missing") from e
                log.warning("%s: falling back to onnxruntime on the CPU with %s", e, onnx.name)
                return get_backend_class("onnxruntime-cpu")(onnx, threads=threads)
        return _onnx_backend(EngineSidecar.load(path).fallback_onnx(path), backend, threads)
    if suffix == ".onnx":
        if backend == "tensorrt":
            raise DfxError(f"{path} is an ONNX file; build a TensorRT engine from it with dfx-export --engine, "
                           f"or pick an onnxruntime backend")
        return _onnx_backend(path, backend, threads)
    raise DfxError(f"{path}: unknown model type {suffix!r}; give a .plan (TensorRT) or .onnx file")
