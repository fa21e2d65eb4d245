"""CPU INT8: onnxruntime static QDQ quantisation calibrated on real images (dynamic MatMul/Gemm for ViT).

The INT8 file is kept only when it is faster than FP32 *and* within :data:`AUC_TOLERANCE` /
:data:`MIN_AGREEMENT` on held-back images; otherwise FP32 stays the CPU artifact and the report says why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfx.engine import metrics as M
from dfx.engine.artifact import ModelInfo
from dfx.engine.decode import DecodeError, load_image
from dfx.engine.errors import DfxError, MissingDependencyError
from dfx.engine.inputs import list_images
from dfx.engine.spec import preprocess

from .verify import logit

__all__ = ["quantize_int8", "Int8Report", "AUC_TOLERANCE", "MIN_AGREEMENT"]

log = logging.getLogger("dfx.export")
AUC_TOLERANCE = 0.01  # largest AUC loss accepted for the speed-up
MIN_AGREEMENT = 0.97  # share of held-back images whose decision must not change


@dataclass
class Int8Report:
    """Outcome of INT8 quantisation (figures measured in the same run)."""

    method: str
    n_calib: int
    n_eval: int
    auc_fp32: float
    auc_int8: float
    agreement: float
    fp32_img_s: float
    int8_img_s: float
    kept: bool
    reason: str

    def line(self) -> str:
        """One line for logs and reports."""
        return (f"int8 ({self.method}, {self.n_calib} calibration images): AUC {self.auc_int8:.4f} vs fp32 "
                f"{self.auc_fp32:.4f}, agreement {self.agreement:.1%} on {self.n_eval} held-back images; CPU "
                f"{self.int8_img_s:.0f} vs {self.fp32_img_s:.0f} img/s — {'kept' if self.kept else 'discarded'}: "
                f"{self.reason}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def _labelled_images(calib: Path) -> list[tuple[Path, int]]:
    files = list_images(calib)
    if not files:
        raise DfxError(f"--calib {calib}: no images found")

    def label(p: Path) -> int:
        parts = [x.lower() for x in p.relative_to(calib).parts]
        return 1 if "fake" in parts else 0 if "real" in parts else -1
    return [(p, label(p)) for p in files]


def _batch(items: list[tuple[Path, int]], info: ModelInfo) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for p, y in items:
        try:
            xs.append(preprocess(load_image(p, target_size=info.spec.input_size), info.spec))
            ys.append(y)
        except DecodeError:
            continue
    return np.stack(xs), np.array(ys)


def _speed(session: Any, x: np.ndarray, seconds: float = 1.5) -> float:
    session.run(None, {"input": x})  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, {"input": x})
        n += len(x)
    return n / (time.perf_counter() - t0)


def quantize_int8(fp32: Path, dst: Path, info: ModelInfo, calib: Path, n_calib: int = 64, n_eval: int = 128,
                  seed: int = 0) -> Int8Report:
    """Quantises ``fp32`` to ``dst`` and decides whether to keep it (see module docstring)."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_dynamic,
            quantize_static,
        )
    except ImportError as e:
        raise MissingDependencyError("onnxruntime.quantization", "export") from e
    items = _labelled_images(Path(calib))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    calib_items = [items[i] for i in order[:n_calib]]
    eval_items = [items[i] for i in order[n_calib:n_calib + n_eval]] or calib_items
    xc, _ = _batch(calib_items, info)
    xe, ye = _batch(eval_items, info)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": xc[i:i + 8]} for i in range(0, len(xc), 8)])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    # onnxruntime's recommended pre-pass (shape inference + graph optimisation) before quantising.
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepped = dst.with_name(dst.name + ".prep.onnx")
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # onnxruntime.quantization logs advice on the root logger
    try:
        quant_pre_process(str(fp32), str(prepped))
        if info.arch == "vit_b16":
            # Static activation quantisation of attention hurts ViT; weight-only dynamic MatMul/Gemm holds up.
            quantize_dynamic(str(prepped), str(dst), op_types_to_quantize=["MatMul", "Gemm"],
                             weight_type=QuantType.QInt8, per_channel=True)
        else:
            quantize_static(str(prepped), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        quiet.setLevel(level)
        prepped.unlink(missing_ok=True)
    method = "dynamic MatMul/Gemm" if info.arch == "vit_b16" else "static QDQ, per-channel"
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s32 = ort.InferenceSession(str(fp32), opts, providers=["CPUExecutionProvider"])
    s8 = ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])
    l32 = s32.run(None, {"input": xe})[0].ravel()
    l8 = s8.run(None, {"input": xe})[0].ravel()
    t = logit(info.threshold)
    agreement = float(np.mean((l32 >= t) == (l8 >= t)))
    has_both = (ye == 0).any() and (ye == 1).any() and (ye >= 0).all()
    auc32 = M.roc_auc(ye, l32) if has_both else float("nan")
    auc8 = M.roc_auc(ye, l8) if has_both else float("nan")
    xs = xe[: min(32, len(xe))]
    fast32, fast8 = _speed(s32, xs), _speed(s8, xs)
    reasons = []
    if fast8 <= fast32:
        reasons.append("not faster than FP32 on this CPU")
    if has_both and auc32 - auc8 > AUC_TOLERANCE:
        reasons.append(f"AUC drops by more than {AUC_TOLERANCE}")
    if agreement < MIN_AGREEMENT:
        reasons.append(f"decisions agree on fewer than {MIN_AGREEMENT:.0%} of images")
    kept = not reasons
    if not kept:
        dst.unlink(missing_ok=True)
    report = Int8Report(method, len(xc), len(xe), auc32, auc8, agreement, fast32, fast8, kept,
                        "within tolerance and faster" if kept else "; ".join(reasons))
    log.info("%s", report.line())
    return report
