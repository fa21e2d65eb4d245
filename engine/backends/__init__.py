"""Backends by name, imported only when used (so the base install never needs tensorrt or CUDA)."""

from __future__ import annotations

import importlib

from ..errors import DfxError
from .base import Backend

__all__ = ["Backend", "BACKENDS", "get_backend_class"]

# name → "module:Class"; keys are the values accepted by --backend (plus "auto").
BACKENDS = {
    "tensorrt": "dfx.engine.backends.tensorrt_backend:TensorRTBackend",
    "onnxruntime-cuda": "dfx.engine.backends.onnxruntime_backend:OnnxRuntimeCUDABackend",
    "onnxruntime-cpu": "dfx.engine.backends.onnxruntime_backend:OnnxRuntimeCPUBackend",
}


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``."""
    if name not in BACKENDS:
        raise DfxError(f"unknown backend {name!r}; valid: auto, {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)
