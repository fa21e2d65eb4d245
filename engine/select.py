"""Backend selection: which backend runs an artifact here, with the documented fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

from .artifact import read_onnx_info
from .backends import BACKENDS, Backend, get_backend_class
from .errors import DfxError
from .sidecar import EngineSidecar

__all__ = ["open_backend", "BACKEND_CHOICES", "fp16_sibling", "missing_model_message"]

log = logging.getLogger("dfx.engine")
BACKEND_CHOICES = ("auto", *BACKENDS)


def fp16_sibling(path: Path) -> Path | None:
    """``NAME.fp16.onnx`` beside ``NAME.onnx``, when it exists."""
    if path.name.lower().endswith(".fp16.onnx"):
        return None
    sibling = path.with_name(path.name[: -len(path.suffix)] + ".fp16.onnx")
    return sibling if sibling.is_file() else None


def _cuda_backend(path: Path, threads: int | None, fp16: bool) -> Backend:
    """onnxruntime on CUDA; with ``fp16``, the FP16 export of the same model when it lies beside ``path``."""
    cls = get_backend_class("onnxruntime-cuda")
    sibling = fp16_sibling(path) if fp16 else None
    if sibling is not None:
        be = cls(sibling, threads=threads)
        if be.info.to_dict() == read_onnx_info(path).to_dict():
            log.info("running %s on the GPU (the FP16 export of %s; --no-fp16 runs the FP32 one)",
                     sibling.name, path.name)
            return be
        log.warning("%s does not carry the same dfx record as %s; running %s", sibling.name, path.name, path.name)
    return cls(path, threads=threads)


def _onnx_backend(path: Path, backend: str, threads: int | None, fp16: bool) -> Backend:
    if backend == "auto":
        from .backends.onnxruntime_backend import cuda_provider_available

        if cuda_provider_available():
            try:
                return _cuda_backend(path, threads, fp16)
            except DfxError as e:
                log.warning("%s; using onnxruntime on the CPU", e)
        backend = "onnxruntime-cpu"
    if backend == "onnxruntime-cuda":
        return _cuda_backend(path, threads, fp16)
    return get_backend_class(backend)(path, threads=threads)


def _fallback(plan: Path, threads: int | None, fp16: bool, backend: str = "auto") -> Backend:
    """The engine's ONNX (named in its sidecar) on onnxruntime, refused unless it carries the engine's record."""
    sidecar = EngineSidecar.load(plan)
    onnx = sidecar.fallback_onnx(plan)
    if not onnx.is_file():
        raise DfxError(f"{plan} cannot run here (no TensorRT), and the fallback ONNX {onnx} named in its sidecar "
                       f"is missing")
    be = _onnx_backend(onnx, backend, threads, fp16)
    if be.info.to_dict() != sidecar.info.to_dict():
        raise DfxError(f"{onnx} does not carry the model record of {plan} (another model or threshold); refusing "
                       f"to run it in the engine's place. Rebuild the engine with dfx-export")
    return be


def missing_model_message(path: Path, weights: Path = Path("weights")) -> str:
    """What to do when the model file given does not exist: where exports go, what exists, the bundled model."""
    found = sorted(p for p in weights.glob("*/*") if p.suffix in (".onnx", ".plan"))[:6]
    here = f"; found here: {', '.join(map(str, found))}" if found else ""
    return (f"{path}: no such model file. dfx-export writes NAME.onnx, NAME.fp16.onnx and NAME.plan into the run "
            f"folder (weights/<model>/ by default; dfx-export --model <model> after dfx-train <model>){here}. "
            f"Leave out --engine to run the bundled model")


def open_backend(artifact: str | Path, backend: str = "auto", threads: int | None = None,
                 fp16: bool = True) -> Backend:
    """Builds (does not activate) the backend that runs ``artifact``.

    ``.plan`` → TensorRT; when TensorRT or the GPU is missing and ``backend`` is ``auto``, falls back to
    onnxruntime on the CPU with the ONNX named in the engine's sidecar, and says so once. ``.onnx`` →
    onnxruntime, CUDA when ``onnxruntime-gpu`` and a GPU are there, else CPU. On CUDA the FP16 export
    ``NAME.fp16.onnx`` runs instead of ``NAME.onnx`` when it lies beside it and carries the same dfx record.

    Args:
        artifact: a ``.plan`` engine or an ``.onnx`` file written by dfx-export.
        backend: ``auto`` or a name from :data:`BACKEND_CHOICES`.
        threads: CPU threads for onnxruntime (default: physical cores).
        fp16: prefer the FP16 sibling on CUDA (see above).
    """
    path = Path(artifact)
    if backend not in BACKEND_CHOICES:
        raise DfxError(f"unknown backend {backend!r}; valid: {', '.join(BACKEND_CHOICES)}")
    if not path.exists():
        raise DfxError(missing_model_message(path))
    suffix = path.suffix.lower()
    if suffix == ".plan":
        if backend in ("auto", "tensorrt"):
            from .backends.tensorrt_backend import TensorRTBackend, TensorRTUnavailable

            try:
                return TensorRTBackend(path)
            except TensorRTUnavailable as e:
                if backend == "tensorrt":
                    raise
                be = _fallback(path, threads, fp16)
                log.warning("%s: falling back to onnxruntime (%s) with %s", e, be.device, be.path)
                return be
        return _fallback(path, threads, fp16, backend)
    if suffix == ".onnx":
        if backend == "tensorrt":
            raise DfxError(f"{path} is an ONNX file; build a TensorRT engine from it with dfx-export --engine, "
                           f"or pick an onnxruntime backend")
        return _onnx_backend(path, backend, threads, fp16)
    raise DfxError(f"{path}: unknown model type {suffix!r}; give a .plan (TensorRT) or .onnx file")
