"""dfx.engine: the lean runtime (numpy, Pillow, onnxruntime; never torch)."""

from .artifact import LABELS, ModelInfo, read_onnx_info
from .decode import DecodeError, Status, load_image
from .errors import DfxError, MissingDependencyError
from .spec import PreprocessSpec, preprocess

__all__ = ["LABELS", "ModelInfo", "read_onnx_info", "DecodeError", "Status", "load_image", "DfxError",
           "MissingDependencyError", "PreprocessSpec", "preprocess"]
