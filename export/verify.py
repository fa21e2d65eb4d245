"""Verification: an artifact must compute what its reference computes, on real images when there are some."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dfx.engine.calibration import calibrated
from dfx.engine.decode import DecodeError, load_image
from dfx.engine.inputs import list_images
from dfx.engine.spec import PreprocessSpec, preprocess

__all__ = ["GENERATED", "VerifyReport", "compare", "verification_inputs", "torch_logits", "backend_logits", "logit"]

GENERATED = "generated images"  # the inputs description when no real images were found

log = logging.getLogger("dfx.export")


@dataclass
class VerifyReport:
    """How closely an artifact matches its reference.

    Attributes:
        what: the artifact checked and its reference (``onnx vs pytorch``…).
        n: images compared.
        inputs: ``images from DIR`` or ``generated``.
        max_abs_diff: max |Δlogit|.
        max_abs_score_diff: max |ΔP(fake)|.
        agreement: share of images with the same decision at the model's threshold, among those whose reference
            logit lies farther than ``tolerance`` from it (nearer ones may flip within tolerance).
        tolerance: max |Δlogit| allowed.
        passed: within tolerance and full agreement (agreement >= min_agreement).
    """

    what: str
    n: int
    inputs: str
    max_abs_diff: float
    agreement: float
    tolerance: float
    min_agreement: float
    passed: bool
    max_abs_score_diff: float = 0.0

    def line(self) -> str:
        """One line for logs and reports."""
        verdict = "ok" if self.passed else "FAILED"
        return (f"{self.what}: max |Δlogit| {self.max_abs_diff:.2e} (tolerance {self.tolerance:g}), max |Δscore| "
                f"{self.max_abs_score_diff:.2e}, decisions agree on {self.agreement:.1%} of {self.n} {self.inputs} "
                f"— {verdict}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def logit(p: float) -> float:
    """P(fake) threshold → the logit threshold it corresponds to (clipped away from 0 and 1)."""
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


def compare(what: str, ref: np.ndarray, got: np.ndarray, threshold: float, tolerance: float,
            min_agreement: float, inputs: str) -> VerifyReport:
    """Compares two logit vectors (decisions at P(fake) ``threshold``)."""
    ref, got = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    t = logit(threshold)
    diff = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    score_diff = float(np.max(np.abs(calibrated(ref) - calibrated(got)))) if ref.size else 0.0
    # An image whose reference logit sits within the tolerance of the threshold may flip without any error
    # beyond tolerance (a 3e-6 difference flipped one at exactly the EER point): judge decisions beyond it.
    clear = np.abs(ref - t) > tolerance
    agree = float(np.mean((ref[clear] >= t) == (got[clear] >= t))) if clear.any() else 1.0
    ok = bool(np.isfinite(diff) and np.isfinite(got).all() and diff <= tolerance and agree >= min_agreement)
    return VerifyReport(what, int(ref.size), inputs, diff, agree, tolerance, min_agreement, ok, score_diff)



def verification_inputs(spec: PreprocessSpec, data_dir: str | Path | None, n: int = 16,
                        seed: int = 0) -> tuple[np.ndarray, str]:
    """A float32 NCHW batch: ``n`` real images from ``data_dir`` (searched recursively, real and fake mixed),
    or generated images (smooth content + noise, not pure noise, so activations look natural) when none.

    Returns:
        (batch, description).
    """
    if data_dir is not None and Path(data_dir).is_dir():
        files = list_images(data_dir)
        rng = np.random.default_rng(seed)
        picked = [files[i] for i in sorted(rng.choice(len(files), min(n * 2, len(files)), replace=False))] \
            if files else []
        xs = []
        for f in picked:
            try:
                xs.append(preprocess(load_image(f, target_size=spec.input_size), spec))
            except DecodeError:
                continue
            if len(xs) == n:
                break
        if xs:
            return np.stack(xs), f"images from {data_dir}"
        log.warning("no readable images in %s; verifying on generated images", data_dir)
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    yy, xx = np.mgrid[0:h, 0:w]
    xs = []
    for _ in range(n):
        base = np.stack([np.sin(xx / rng.uniform(3, 30) + rng.uniform(0, 6)) for _ in range(3)], -1) * 80 + 128
        base = base + yy[..., None] * rng.uniform(-0.5, 0.5) + rng.normal(0, 12, (h, w, 3))
        xs.append(preprocess(Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)), spec))
    return np.stack(xs), GENERATED


def torch_logits(model: Any, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits of a PyTorch model on a numpy batch (CPU, eval)."""
    import torch

    model = model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy().ravel()
                               for i in range(0, len(x), batch)])


def backend_logits(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int = 16) -> np.ndarray:
    """Logits of any ``infer(batch)`` callable on a numpy batch."""
    return np.concatenate([np.asarray(run(x[i:i + batch])).ravel() for i in range(0, len(x), batch)])
