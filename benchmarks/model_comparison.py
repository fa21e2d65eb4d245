"""Two or more deployed models on the same validation sets: the check before a bundled model is replaced.

Per model (ONNX files, optionally labelled ``LABEL=FILE``; ``bundled`` is the model dfx-infer uses by default),
per data set's ``validate/{real,fake}`` and per face mode (``off``: whole images, as training validates; ``auto``:
as dfx-infer scores by default, faces cropped when the model's record says so): AUC, accuracy at the model's own
threshold, and 15-bin ECE of the scores as the model gives them. Files not scored (``no_face`` with faces on,
unreadable files) are counted and left out.
Run from the repository root::

    python -m dfx.benchmarks.model_comparison --models bundled new=runs/new/meso4.onnx \\
        --data ../shared/data/mesonet-deepfake ../shared/data/stylegan2-ffhq ../shared/data/ciplab-photoshop \\
        --out benchmarks/results/default-model-cpu
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from dfx.benchmarks.report import save_result
from dfx.engine import metrics as M
from dfx.engine.calibration import expected_calibration_error
from dfx.engine.default_model import default_model_path
from dfx.engine.inputs import VAL_NAMES, child_dir, labelled_images
from dfx.engine.pipeline import score_files
from dfx.engine.select import open_backend

__all__ = ["compare_models", "score_set"]


def score_set(backend, folder: Path, faces: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels, scores, files not scored) for the validation split of the data set ``folder``; one score per file
    (with faces, its most suspicious face's, as dfx-infer's file row)."""
    items = labelled_images(child_dir(folder, VAL_NAMES) or folder)
    labels = [y for _, y in items]
    rows = [r for r in score_files(backend, [p for p, _ in items], 32, faces=faces) if r.face is None]
    ok = np.array([r.score is not None for r in rows])
    scores = np.array([r.score for r in rows if r.score is not None], np.float64)
    return np.asarray(labels)[ok], scores, int((~ok).sum())


def compare_models(models: list[str], data: list[Path], modes: tuple[str, ...] = ("off", "auto")) -> dict[str, Any]:
    """The comparison as a dict: ``rows`` holds one entry per (model, set, mode), sets pooled as ``all``."""
    rows = []
    for model in models:
        label, _, file = model.partition("=") if "=" in model and not Path(model).exists() else ("", "", model)
        path = default_model_path() if model == "bundled" else Path(file)
        model = label or model
        with open_backend(path, "onnxruntime-cpu") as be:
            threshold = be.info.threshold
            for mode in modes:
                pooled: list[tuple[np.ndarray, np.ndarray]] = []
                skipped = 0
                for folder in data:
                    y, s, missed = score_set(be, folder, mode)
                    pooled.append((y, s))
                    skipped += missed
                    rows.append(_row(model, folder.name, mode, y, s, threshold, missed))
                y, s = (np.concatenate([p[i] for p in pooled]) for i in (0, 1))
                rows.append(_row(model, "all", mode, y, s, threshold, skipped))
    return {"models": list(dict.fromkeys(r["model"] for r in rows)), "files": models, "sets": [d.name for d in data],
            "rows": rows}


def _row(model: str, name: str, mode: str, y: np.ndarray, s: np.ndarray, threshold: float, missed: int) -> dict:
    return {"model": model, "set": name, "faces": mode, "n": int(y.size), "not_scored": missed,
            "auc": M.roc_auc(y, s), "acc": M.accuracy(y, s, threshold), "ece": expected_calibration_error(y, s)}


def _markdown(result: dict[str, Any]) -> str:
    models = result["models"]
    head = ["set", "faces", "images (not scored)"] + [f"{k} {m}" for k in ("AUC", "ACC", "ECE") for m in models]
    lines = [f"Models: {', '.join(f'`{m}`' for m in models)}. Command: `python -m dfx.benchmarks.model_comparison`.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by = {(r["model"], r["set"], r["faces"]): r for r in result["rows"]}
    for mode in dict.fromkeys(r["faces"] for r in result["rows"]):
        for name in result["sets"] + ["all"]:
            first = by[(models[0], name, mode)]
            cells = [name, mode, f"{first['n']} ({first['not_scored']})"]
            cells += [f"{by[(m, name, mode)][k]:.3f}" for k in ("auc", "acc", "ece") for m in models]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command-line entry: writes ``OUT.json`` and ``OUT.md``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="ONNX files (LABEL=FILE to name one), or 'bundled'")
    p.add_argument("--data", nargs="+", required=True, type=Path, help="data sets with validate/{real,fake}")
    p.add_argument("--faces", nargs="+", default=["off", "auto"], choices=["off", "auto", "on"])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/model-comparison-cpu"))
    args = p.parse_args()
    result = compare_models(args.models, args.data, tuple(args.faces))
    save_result(args.out, result, _markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
