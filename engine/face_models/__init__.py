"""The bundled face detector's ONNX files (see LICENSE.md)."""
