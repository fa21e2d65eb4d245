"""FP16 ONNX with float32 inputs/outputs: TensorRT 10.12+/11 networks are strongly typed, so the precision
has to be in the graph itself (there is no FP16 builder flag any more)."""

from __future__ import annotations

import warnings
from pathlib import Path

from dfx.engine.artifact import atomic_write_bytes
from dfx.engine.errors import MissingDependencyError

from .onnx_export import onnx_module

__all__ = ["convert_fp16"]


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Writes an FP16 copy of ``src``: FP16 weights and compute, float32 ``input``/``logit``, metadata kept.

    onnxconverter-common keeps its default block list (ops without FP16 kernels or with FP16 range problems)
    in FP32 with casts around them.
    """
    onnx = onnx_module()
    try:
        from onnxconverter_common import float16
    except ImportError as e:
        raise MissingDependencyError("onnxconverter-common", "export") from e
    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one "truncated to 1e-07" warning per tiny weight: expected in FP16
        model16 = float16.convert_float_to_float16(model, keep_io_types=True)
    atomic_write_bytes(dst, model16.SerializeToString())
    return Path(dst)
