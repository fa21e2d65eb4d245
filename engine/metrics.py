"""Detection metrics in plain numpy (the runtime and the benchmarks need them without scikit-learn).

Labels: 1 = fake (positive), 0 = real. Scores: P(fake) or any monotonic function of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "roc_curve",
    "roc_auc",
    "average_precision",
    "equal_error_rate",
    "tpr_at_fpr",
    "confusion",
    "accuracy",
    "summarize",
]


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return y, s


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct threshold, highest score first."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    return tps, fps, s[last_of_run]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive rates over all thresholds (score >= threshold means fake).

    Returns:
        (fpr, tpr, thresholds), starting at (0, 0) with threshold +inf.
    """
    y, s = _check(labels, scores)
    tps, fps, thr = _counts(y, s)
    p, n = max(int(y.sum()), 1), max(int(y.size - y.sum()), 1)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p], np.r_[np.inf, thr]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    y, s = _check(labels, scores)
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall step) x precision, as scikit-learn defines it."""
    y, s = _check(labels, scores)
    if y.sum() == 0:
        return float("nan")
    tps, fps, _ = _counts(y, s)
    precision = tps / (tps + fps)
    recall = tps / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The error rate where false-positive and false-negative rates meet, and the threshold there.

    Returns:
        (eer, threshold): the mean of FPR and FNR at the ROC point where they are closest, and the score
        threshold of that point (use ``score >= threshold`` for "fake").
    """
    fpr, tpr, thr = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)[1:])) + 1  # skip the +inf point, which is not a usable threshold
    return float((fpr[i] + fnr[i]) / 2.0), float(thr[i])


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, max_fpr: float = 0.01) -> float:
    """Highest true-positive rate reachable with a false-positive rate of at most ``max_fpr``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= max_fpr
    return float(tpr[ok].max()) if ok.any() else 0.0


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, int]:
    """Confusion counts with fake as the positive class (``score >= threshold`` is fake)."""
    y, s = _check(labels, scores)
    pred = s >= threshold
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "fp": int(np.sum(pred & (y == 0))),
        "tn": int(np.sum(~pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
    }


def accuracy(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction classified correctly at ``threshold``."""
    c = confusion(labels, scores, threshold)
    total = sum(c.values())
    return (c["tp"] + c["tn"]) / total if total else float("nan")


def summarize(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """All metrics in one JSON-ready dict (scores are P(fake))."""
    y, s = _check(labels, scores)
    both = 0 < y.sum() < y.size
    eer, eer_thr = equal_error_rate(y, s) if both else (float("nan"), float("nan"))
    return {
        "n": int(y.size),
        "n_fake": int(y.sum()),
        "threshold": float(threshold),
        "acc": accuracy(y, s, threshold),
        "auc": roc_auc(y, s),
        "ap": average_precision(y, s),
        "eer": eer,
        "eer_threshold": eer_thr,
        "tpr_at_fpr_1pct": tpr_at_fpr(y, s, 0.01) if both else float("nan"),
        "confusion": confusion(y, s, threshold),
    }
