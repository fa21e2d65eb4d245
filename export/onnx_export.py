"""PyTorch → ONNX with the dfx record embedded (input ``input`` NCHW float32, output ``logit`` (N, 1))."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from dfx.engine.artifact import META_KEY, ModelInfo, atomic_write_bytes
from dfx.engine.errors import DfxError, MissingDependencyError

__all__ = ["export_onnx", "embed_metadata", "onnx_module", "MIN_OPSET"]

# 17 is the first opset with LayerNormalization as one op; decomposed, ViT's variance overflows in FP16.
MIN_OPSET = 17


def onnx_module():
    """The ``onnx`` package, or an error naming the extra."""
    try:
        import onnx
    except ImportError as e:
        raise MissingDependencyError("onnx", "export") from e
    return onnx


def embed_metadata(model_proto: Any, info: ModelInfo) -> None:
    """Stores the dfx record in ``metadata_props`` (readable via onnxruntime's ``custom_metadata_map``)."""
    props = {p.key: p.value for p in model_proto.metadata_props}
    props[META_KEY] = info.to_json()
    del model_proto.metadata_props[:]
    for k, v in sorted(props.items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = k, v


def export_onnx(model: Any, info: ModelInfo, path: str | Path, opset: int = MIN_OPSET) -> Path:
    """Exports ``model`` (eval mode, CPU) to ``path`` with a dynamic batch axis.

    Uses the TorchScript exporter: it needs no onnxscript, is quick on these CNNs and ViTs, and at opset
    >= 17 keeps LayerNormalization whole.
    """
    import torch

    onnx = onnx_module()
    if opset < MIN_OPSET:
        raise DfxError(f"--opset must be at least {MIN_OPSET} (ViT's LayerNormalization), got {opset}")
    model = model.eval().cpu()
    h, w = info.spec.input_size
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices are not the user's concern
        torch.onnx.export(model, (torch.zeros(2, 3, h, w),), buf, input_names=["input"], output_names=["logit"],
                          dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}}, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    embed_metadata(proto, info)
    proto.doc_string = f"dfx {info.arch}: logit, sigmoid(logit) = P(fake)"
    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    return path
