"""How low per-set ECE can go: a model's ECE on each validation set, against what calibration could reach there.

Per data set, for a model's scores on its ``validate/`` folders (whole images, as ``dfx-infer --faces off``):
- ECE of the scores as the model gives them (its stored temperature applied);
- ECE after the best logistic map for the pooled sets (``sigmoid(a·logit + b)``, fitted on all sets at once: the
  most any one global calibration of this form can do for every set together);
- ECE after each set's own best map of that form (a bound no global calibration reaches);
- the noise floor: the mean ECE of a *perfectly* calibrated model with those scores, labels drawn from the scores
  themselves (``--draws`` times). With few images or scores near 0.5, 15-bin ECE stays above zero by chance alone.

All fits are on the same images they are scored on, so every figure after calibration is optimistic. Run from the
repository root::

    python -m dfx.benchmarks.calibration_floor --data ../shared/data/mesonet-deepfake ../shared/data/stylegan2-ffhq \\
        ../shared/data/ciplab-photoshop --out benchmarks/results/calibration-floor-cpu
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dfx.benchmarks.report import save_result
from dfx.engine.calibration import calibrated, expected_calibration_error
from dfx.engine.select import open_backend

__all__ = ["fit_logistic", "noise_floor", "validation_logits"]


def fit_logistic(u: np.ndarray, y: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """(a, b) minimising the log-loss of ``sigmoid(a·u + b)`` (Newton's method on two parameters; Platt scaling)."""
    a, b = 1.0, 0.0
    x = np.stack([u, np.ones_like(u)], 1)
    for _ in range(steps):
        p = calibrated(a * u + b)
        grad = x.T @ (p - y)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        da, db = np.linalg.solve(hess, grad)
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return float(a), float(b)


def noise_floor(probs: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated model with these scores: labels drawn as Bernoulli(score)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error((rng.random(probs.size) < probs).astype(int), probs)
                          for _ in range(draws)]))


def validation_logits(model: Path | None, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The model's calibrated logits (``logit(score)``) and labels on ``folder``'s validation split, whole images."""
    from dfx.benchmarks.model_comparison import score_set
    from dfx.engine.default_model import default_model_path

    with open_backend(model or default_model_path(), "onnxruntime-cpu") as be:
        labels, scores, _ = score_set(be, folder, "off")
    scores = np.clip(scores, 1e-7, 1 - 1e-7)
    return np.log(scores / (1 - scores)), labels


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, type=Path, help="data sets with validate/{real,fake}")
    p.add_argument("--model", type=Path, help="an ONNX model (default: the bundled one)")
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/calibration-floor-cpu"))
    args = p.parse_args()
    sets = {d.name: validation_logits(args.model, d) for d in args.data}
    u, y = (np.concatenate([v[i] for v in sets.values()]) for i in (0, 1))
    pooled = fit_logistic(u, y)
    rows = {}
    for name, (us, ys) in sets.items():
        own = fit_logistic(us, ys)
        rows[name] = {"n": int(ys.size), "ece": expected_calibration_error(ys, calibrated(us)),
                      "ece_pooled_map": expected_calibration_error(ys, calibrated(pooled[0] * us + pooled[1])),
                      "ece_own_map": expected_calibration_error(ys, calibrated(own[0] * us + own[1])), "own_map": own,
                      "noise_floor": noise_floor(calibrated(own[0] * us + own[1]), args.draws)}
    result = {"model": str(args.model or "bundled"), "pooled_map": pooled, "sets": rows}
    lines = [f"Model: {result['model']}; whole images; 15-bin ECE on each set's validation images. Pooled map: "
             f"a = {pooled[0]:.3f}, b = {pooled[1]:.3f}. Command: `python -m dfx.benchmarks.calibration_floor`.", "",
             "| set | images | ECE as shipped | after the best pooled map | after the set's own map (a, b) | "
             "noise floor (perfectly calibrated) |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['n']} | {r['ece']:.3f} | {r['ece_pooled_map']:.3f} | {r['ece_own_map']:.3f} "
                     f"({r['own_map'][0]:.2f}, {r['own_map'][1]:.2f}) | {r['noise_floor']:.3f} |")
    save_result(args.out, result, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
