"""The calibration stage: fit a temperature on labelled images and store it, with the threshold a policy picks on
the calibrated scores, in an ONNX file's dfx record (the runtime then applies both; see
:mod:`dfx.engine.calibration`)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dfx.engine.artifact import ModelInfo, atomic_write_bytes, read_onnx_info
from dfx.engine.calibration import calibration_report
from dfx.engine.decode import DecodeError, load_image
from dfx.engine.inputs import labelled_images, source_name
from dfx.engine.spec import preprocess

from .onnx_export import embed_metadata, onnx_module
from .verify import backend_logits

__all__ = ["calibrate_onnx", "onnx_logits"]

log = logging.getLogger("dfx.export")


def onnx_logits(onnx: Path, files: list[Path], chunk: int = 128) -> tuple[np.ndarray, list[int]]:
    """Raw logits of ``onnx`` (onnxruntime, CPU) on ``files``; the indices of files that could be decoded."""
    from dfx.engine.backends.onnxruntime_backend import OnnxRuntimeCPUBackend

    out, kept = [], []
    with OnnxRuntimeCPUBackend(onnx) as be:
        spec = be.info.spec
        for start in range(0, len(files), chunk):
            xs = []
            for i in range(start, min(start + chunk, len(files))):
                try:
                    xs.append(preprocess(load_image(files[i], target_size=spec.input_size), spec))
                    kept.append(i)
                except DecodeError:
                    continue
            if xs:
                out.append(backend_logits(be.infer, np.stack(xs), batch=min(be.max_batch or 32, 32)))
    return (np.concatenate(out) if out else np.zeros(0, np.float32)), kept


def calibrate_onnx(onnx: Path, data: list[str | Path], policy: str = "eer") -> tuple[ModelInfo, dict[str, Any]]:
    """Fits the temperature of ``onnx`` on the ``real/`` and ``fake/`` images of ``data`` and rewrites its record.

    Returns:
        (the new record, the report: temperature, threshold, policy, ECE and counts overall and per data set).
    """
    info = read_onnx_info(onnx)
    items = [(p, y, source_name(d)) for d in data for p, y in labelled_images(d)]
    logits, kept = onnx_logits(onnx, [p for p, _, _ in items])
    labels = np.array([items[i][1] for i in kept])
    sources = np.array([items[i][2] for i in kept])
    raw = logits.astype(np.float64) / info.temperature  # the scores it gives today
    report = calibration_report(raw, labels, sources, policy) | {"data": [str(d) for d in data]}
    t, threshold = report["temperature"], report["threshold"]
    new = dataclasses.replace(info, temperature=t * info.temperature, threshold=threshold,
                              extra={**info.extra, "calibration": report})
    proto = onnx_module().load(str(onnx))
    embed_metadata(proto, new)
    atomic_write_bytes(onnx, proto.SerializeToString())
    log.info("calibrated %s on %d images: temperature %.3f, threshold %.4f (%s), log-loss %.4f → %.4f, ECE %.4f → "
             "%.4f", onnx.name, report["n"], t, threshold, policy, report["nll_before"], report["nll_after"],
             report["ece_before"], report["ece_after"])
    if report["n"] < 100:
        log.warning("only %d images to calibrate on: the temperature is a rough estimate", report["n"])
    return new, report
