"""dfx: a deepfake facial-image detector (training, export, lean runtime, benchmarks).

The runtime lives in :mod:`dfx.engine` (numpy, Pillow, onnxruntime only); training, export and benchmarks are
optional extras that build on it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
