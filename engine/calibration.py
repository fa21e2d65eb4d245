"""Calibrated scores: temperature scaling, expected calibration error and the threshold policies.

A raw sigmoid of a detector's logit is often over-confident (scores of 0.9–1.0 that are fake far less than 90 %
of the time). Temperature scaling divides every logit by one fitted T > 0 before the sigmoid: the ranking (AUC)
is unchanged, the probabilities mean what they say. T and the threshold chosen on the calibrated scores travel in
the artifact's record, and the runtime applies them (numpy only: this module is part of the lean runtime).
"""

from __future__ import annotations

import math

import numpy as np

from . import metrics as M
from .errors import DfxError

__all__ = ["fit_temperature", "expected_calibration_error", "log_loss", "calibrated", "threshold_for",
           "calibration_report", "THRESHOLD_POLICIES"]

THRESHOLD_POLICIES = ("eer", "fpr=<rate>", "f1")


def calibrated(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """P(fake) = sigmoid(logit / T), stable for large |logit|."""
    z = np.asarray(logits, np.float64) / temperature
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def log_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy of ``labels`` under sigmoid(``logits``), computed on logits (no overflow)."""
    z, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return log_loss(labels, logits / temperature)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the negative log-likelihood of ``labels`` under sigmoid(logits / T).

    A one-dimensional convex problem in log T: golden-section search over T in [0.05, 20].
    """
    z, y = np.asarray(logits, np.float64).ravel(), np.asarray(labels, np.float64).ravel()
    if z.size == 0 or not np.isfinite(z).all() or not (0 < y.sum() < y.size):
        raise DfxError("temperature scaling needs finite logits of both real and fake images")
    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _nll(z, y, math.exp(a)), _nll(z, y, math.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _nll(z, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _nll(z, y, math.exp(b))
    return float(math.exp((lo + hi) / 2))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE: the share-weighted gap between confidence and accuracy over ``bins`` equal-width bins of P(fake)."""
    y, p = np.asarray(labels, np.float64).ravel(), np.asarray(probs, np.float64).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def threshold_for(policy: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """The P(fake) threshold a policy picks on validation scores.

    Policies: ``eer`` (false-positive rate = false-negative rate), ``fpr=<rate>`` (the lowest threshold whose
    false-positive rate is at most ``rate``, e.g. ``fpr=0.01``), ``f1`` (the best F1 for the fake class).
    """
    y, s = np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel()
    if policy == "eer":
        return float(min(max(M.equal_error_rate(y, s)[1], 0.0), 1.0))
    if policy.startswith("fpr="):
        try:
            rate = float(policy[4:])
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate < 1.0:
            raise DfxError(f"threshold policy {policy!r}: the rate must be a number in [0, 1), e.g. fpr=0.01")
        negatives = np.sort(s[y == 0])[::-1]
        k = int(math.floor(rate * negatives.size))  # this many negatives may lie at or above the threshold
        return float(np.nextafter(negatives[k], 2.0)) if k < negatives.size else 0.0
    if policy == "f1":
        best, best_t = -1.0, 0.5
        for t in np.unique(s):
            pred = s >= t
            tp = float(np.sum(pred & (y == 1)))
            f1 = 2 * tp / (pred.sum() + (y == 1).sum()) if tp else 0.0
            if f1 > best:
                best, best_t = f1, float(t)
        return best_t
    raise DfxError(f"unknown threshold policy {policy!r}; valid: {', '.join(THRESHOLD_POLICIES)}")


def calibration_report(logits: np.ndarray, labels: np.ndarray, sources: np.ndarray | None = None,
                       policy: str = "eer") -> dict:
    """Fits a temperature to ``logits`` (on today's scale) and reports what it changes, overall and per source.

    Returns:
        ``temperature``, ``threshold`` (``policy``'s, on the calibrated scores), ``policy``, ``n``, ECE and
        log-loss before and after, and the same per source under ``per_source`` when ``sources`` is given.
    """
    raw = np.asarray(logits, np.float64).ravel()
    y = np.asarray(labels).ravel()
    t = fit_temperature(raw, y)  # finite by construction: a bounded search
    cal = calibrated(raw, t)
    report: dict = {"temperature": t, "threshold": threshold_for(policy, y, cal), "policy": policy, "n": int(y.size),
                    "per_source": {}}
    names = [] if sources is None else sorted(set(np.asarray(sources).tolist()))
    for name in [None, *names]:
        sel = np.ones(y.size, bool) if name is None else np.asarray(sources) == name
        entry = {"n": int(sel.sum()), "ece_before": expected_calibration_error(y[sel], calibrated(raw[sel])),
                 "ece_after": expected_calibration_error(y[sel], cal[sel]),
                 "nll_before": log_loss(y[sel], raw[sel]), "nll_after": log_loss(y[sel], raw[sel] / t)}
        if name is None:
            report.update(entry)
        else:
            report["per_source"][name] = entry
    return report
