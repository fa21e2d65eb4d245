"""dfx.engine: the lean runtime (numpy, Pillow, onnxruntime; never torch).

Library use: ``from dfx import Detector`` (see :mod:`dfx.engine.detector`), or the same as ``dfx-infer``::

    from dfx.engine import scan
    summary = scan(["photos/"], engine="model.onnx", output="scores.csv", recursive=True)
"""

from .artifact import LABELS, ModelInfo, read_onnx_info
from .decode import DecodeError, Status, load_image
from .default_model import default_model_path
from .detector import Detector, Result
from .errors import DfxError, MissingDependencyError
from .pipeline import Row, score_files
from .scan import ScanSummary, scan
from .select import open_backend
from .spec import PreprocessSpec, preprocess

__all__ = ["Detector", "Result", "default_model_path", "LABELS", "ModelInfo", "read_onnx_info", "DecodeError",
           "Status", "load_image", "DfxError", "MissingDependencyError", "Row", "score_files", "ScanSummary", "scan",
           "open_backend", "PreprocessSpec", "preprocess"]
