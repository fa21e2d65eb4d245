"""``export_model()``: checkpoint → verified ONNX (+ FP16, TensorRT engine, CPU INT8), as one library call."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import dfx
from dfx.engine.artifact import ModelInfo, atomic_write_bytes, atomic_write_text, read_onnx_info, sha256_file
from dfx.engine.errors import DfxError
from dfx.engine.inputs import VAL_NAMES, child_dir

from .calibrate import calibrate_onnx
from .onnx_export import embed_metadata, export_onnx, onnx_module
from .verify import GENERATED, VerifyReport, backend_logits, compare, torch_logits, verification_inputs

__all__ = ["export_model", "ExportResult", "TOLERANCES"]

log = logging.getLogger("dfx.export")

# max |Δlogit| and decision agreement required of each artifact against its reference.
TOLERANCES = {"onnx": (1e-3, 1.0), "onnx-slim": (1e-3, 1.0), "fp16": (0.1, 0.95), "engine": (0.1, 0.95)}


@dataclass
class ExportResult:
    """What was written and how each artifact verified."""

    artifacts: dict[str, Path] = field(default_factory=dict)
    checks: list[VerifyReport] = field(default_factory=list)
    int8: Any = None
    notices: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (also written as NAME.export.json)."""
        return {"artifacts": {k: {"path": str(p), "bytes": p.stat().st_size} for k, p in self.artifacts.items()
                              if p.exists()},
                "checks": [c.to_dict() for c in self.checks], "int8": self.int8.to_dict() if self.int8 else None,
                "notices": self.notices, "calibration": self.calibration, "dfx_version": dfx.__version__}


def _check(result: ExportResult, report: VerifyReport, artifact: Path) -> None:
    result.checks.append(report)
    log.info("%s", report.line())
    if not report.passed:
        failed = artifact.with_name(artifact.name + ".failed")
        artifact.replace(failed)  # keep it for inspection, under a name no loader picks up
        # Generated images lie outside what a trained model has seen and can exaggerate FP16 error.
        hint = "; verify on real faces with --verify-data DIR" if report.inputs == GENERATED else ""
        raise DfxError(f"verification failed, artifact kept as {failed.name} (earlier exports are untouched): "
                       f"{report.line()}{hint}")


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    from dfx.engine.backends.onnxruntime_backend import OnnxRuntimeCPUBackend

    with OnnxRuntimeCPUBackend(path) as be:
        return backend_logits(be.infer, x)


def _default_verify_dir(info: ModelInfo) -> Path | None:
    # The checkpoint's own validation images, when the run's data is still where it was.
    for d in map(Path, info.extra.get("config", {}).get("data", [])):
        if d.is_dir():
            return child_dir(d, VAL_NAMES) or d
    return None


def _restamp(path: Path, info: ModelInfo) -> None:
    onnx = onnx_module()
    proto = onnx.load(str(path))
    embed_metadata(proto, info)
    onnx.save(proto, str(path))


class _Steps:
    """One log line as each export step starts and how long it took: the long ones (a ViT export, an engine
    build) show what is happening instead of a silent minute."""

    def __init__(self) -> None:
        self._t0: float | None = None

    def next(self, what: str) -> None:
        self.done()
        log.info("%s …", what)
        self._t0 = time.perf_counter()

    def done(self) -> None:
        if self._t0 is not None:
            log.info("  done in %.1f s", time.perf_counter() - self._t0)
        self._t0 = None


def export_model(
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    out_dir: str | Path | None = None,
    **options: Any,
) -> ExportResult:
    """Builds and verifies deployable artifacts in a staging folder, then moves them into place together.

    A verified artifact from an earlier export is never removed by a later attempt that fails: the failed file
    lands beside it as ``NAME….failed`` and the earlier files (and their ``NAME.export.json``) stay as they were.
    Arguments: see :func:`_export_into` (``options`` are its keyword arguments).
    """
    if (checkpoint is None) == (onnx is None):
        raise DfxError("give exactly one of a checkpoint (--model/--checkpoint) or --onnx")
    out = Path(out_dir) if out_dir else Path(checkpoint or onnx).parent
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".dfx-export-", dir=out))
    except OSError as e:
        raise DfxError(f"cannot write to {out}: {e.strerror or e}; choose another --out") from e
    try:
        try:
            result = _export_into(checkpoint, onnx, stage, **options)
        except DfxError:
            for failed in stage.glob("*.failed"):  # kept for inspection, under a name no loader picks up
                os.replace(failed, out / failed.name)
            raise
        staged = {p.resolve() for p in stage.iterdir()}
        for f in sorted(stage.iterdir()):
            os.replace(f, out / f.name)
        result.artifacts = {k: out / p.name if p.resolve() in staged else p for k, p in result.artifacts.items()}
        return result
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _export_into(
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    out_dir: str | Path | None = None,
    fp16: bool = False,
    engine: bool | None = None,
    int8: bool = False,
    calib: str | Path | None = None,
    batch_sizes: str = "1,32,128",
    verify_data: str | Path | None = None,
    n_verify: int = 16,
    simplify: bool = False,
    opset: int = 17,
    workspace_gib: float = 4.0,
    opt_level: int = 3,
    calibrate: list[str | Path] | None = None,
    threshold_policy: str = "eer",
) -> ExportResult:
    """Builds and verifies deployable artifacts in ``out_dir`` (the staging folder of :func:`export_model`).

    Args:
        checkpoint: a dfx-train ``.safetensors`` (exports ONNX from it), or
        onnx: an existing dfx ONNX (skips the PyTorch export; for engines built on another machine).
        out_dir: where artifacts go (default: beside the source).
        fp16: also write ``NAME.fp16.onnx``.
        engine: True builds a TensorRT engine (implies ``fp16``; fails without TensorRT/GPU); None builds one
            when ``fp16`` is set and a GPU with TensorRT is here, else says why not; False never.
        int8: write ``NAME.int8.onnx`` calibrated on ``calib`` (kept only when faster and accurate enough).
        batch_sizes: engine profile ``MIN,OPT,MAX``.
        verify_data: images to verify on (default: the checkpoint's validation folder, else generated).
        simplify: run onnxslim on the ONNX (verified again).
        calibrate: folders with ``real/`` and ``fake/`` to fit the temperature on (the ONNX's record, and so every
            artifact made from it, then carries it); none: scores stay raw sigmoids.
        threshold_policy: with ``calibrate``: ``eer``, ``fpr=<rate>`` or ``f1`` on the calibrated scores.
    """
    from .tensorrt_build import build_engine, engine_unavailable_reason, parse_batch_sizes

    profile = parse_batch_sizes(batch_sizes)
    if int8 and not calib:
        raise DfxError("--int8 needs --calib DIR (images to calibrate on, preferably with real/ and fake/)")
    if engine and not fp16:
        fp16 = True  # engines are built from the FP16 graph
    reason = engine_unavailable_reason() if engine is not False and fp16 else None
    if engine is True and reason:  # said before minutes of exporting, not after
        raise DfxError(f"cannot build a TensorRT engine here: {reason}. Export the ONNX here (leave out --engine), "
                       f"install dfx[gpu] on the machine with the GPU that will run it and run dfx-export --onnx "
                       f"NAME.onnx --engine there")
    result = ExportResult()
    steps = _Steps()
    src = Path(checkpoint or onnx)
    out = Path(out_dir)

    if checkpoint is not None:
        from dfx.training.checkpoint import load_checkpoint

        model, info = load_checkpoint(checkpoint)
        for m in model.modules():  # timm's fused attention exports as casts the FP16 converter mistypes
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
        info.extra = {**info.extra, "source_checkpoint": src.name, "source_checkpoint_sha256": sha256_file(src),
                      "exported_by": f"dfx {dfx.__version__}"}
        name = info.arch
        fp32 = out / f"{name}.onnx"
        x, desc = verification_inputs(info.spec, verify_data or _default_verify_dir(info), n_verify)
        ref = torch_logits(model, x)
        steps.next(f"exporting {name} to ONNX (opset {opset}) and verifying it against PyTorch on {desc}")
        export_onnx(model, info, fp32, opset)
        ref32 = _ort_logits(fp32, x)
        _check(result, compare("onnx vs pytorch", ref, ref32, info.threshold, *TOLERANCES["onnx"], inputs=desc),
               fp32)
        if simplify:
            try:
                import onnxslim
            except ImportError as e:
                from dfx.engine.errors import MissingDependencyError

                raise MissingDependencyError("onnxslim", "export") from e
            steps.next("simplifying the graph with onnxslim")
            slim = onnxslim.slim(str(fp32))  # in memory: stamp the record and write once
            embed_metadata(slim, info)
            atomic_write_bytes(fp32, slim.SerializeToString())
            ref32 = _ort_logits(fp32, x)
            _check(result, compare("onnx (slimmed) vs pytorch", ref, ref32, info.threshold,
                                   *TOLERANCES["onnx-slim"], inputs=desc), fp32)
    else:
        fp32 = Path(onnx)
        info = read_onnx_info(fp32)
        name = fp32.name.removesuffix(".onnx").removesuffix(".fp16")
        x, desc = verification_inputs(info.spec, verify_data or _default_verify_dir(info), n_verify)
        ref32 = _ort_logits(fp32, x)
    if calibrate:
        if fp32.parent != out:  # an --onnx given from elsewhere: calibrate a copy, never the source in place
            shutil.copy(fp32, out / fp32.name)
            fp32 = out / fp32.name
        steps.next(f"calibrating on {', '.join(map(str, calibrate))} (temperature, {threshold_policy} threshold)")
        info, result.calibration = calibrate_onnx(fp32, list(calibrate), threshold_policy)
    result.artifacts["onnx"] = fp32


    if fp16:
        from .fp16 import convert_fp16

        steps.next("converting to FP16 and verifying it against the FP32 ONNX")
        f16 = convert_fp16(fp32, out / f"{name}.fp16.onnx")  # the converter keeps metadata_props
        _check(result, compare("fp16 onnx vs fp32 onnx", ref32, _ort_logits(f16, x), info.threshold,
                               *TOLERANCES["fp16"], inputs=desc), f16)
        result.artifacts["fp16"] = f16
        if engine is not False and reason is None:
            from dfx.engine.backends.tensorrt_backend import TensorRTBackend

            plan = out / f"{name}.plan"
            steps.next("building the TensorRT engine (minutes for large models)")
            build_engine(f16, fp32, plan, info, profile, workspace_gib, opt_level)
            with TensorRTBackend(plan) as be:
                got = backend_logits(be.infer, x, batch=min(profile["max"], 16))
            _check(result, compare("tensorrt fp16 vs fp32 onnx", ref32, got, info.threshold, *TOLERANCES["engine"],
                                   inputs=desc), plan)
            result.artifacts["engine"] = plan
        elif engine is None and reason:
            result.notices.append(f"no TensorRT engine: {reason} (build one on the GPU machine with dfx[gpu]: "
                                  f"dfx-export --onnx {fp32} --engine)")

    if int8:
        from .int8 import quantize_int8

        q = out / f"{name}.int8.onnx"
        steps.next(f"calibrating INT8 on {calib} and comparing speed and accuracy with FP32")
        result.int8 = quantize_int8(fp32, q, info, Path(calib))
        if result.int8.kept:
            _restamp(q, info)
            result.artifacts["int8"] = q
        else:
            result.notices.append(f"INT8 not kept ({result.int8.reason}); {fp32.name} stays the CPU artifact")

    atomic_write_text(out / f"{name}.export.json", json.dumps(result.to_dict(), indent=2))
    steps.done()
    return result
