"""dfx: a deepfake facial-image detector (training, export, lean runtime, benchmarks).

The runtime lives in :mod:`dfx.engine` (numpy, Pillow, onnxruntime only); training, export and benchmarks are
optional extras that build on it. For scoring from Python: ``from dfx import Detector``.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "Detector"]


def __getattr__(name: str):
    # Lazy, so ``import dfx`` (every command's first step) stays free of onnxruntime until a Detector is wanted.
    if name == "Detector":
        from dfx.engine.detector import Detector

        return Detector
    raise AttributeError(f"module 'dfx' has no attribute {name!r}")
