"""Where the time of ``--faces on`` goes: one decode worker's stages per file, and the detector's networks.

The face benchmark (:mod:`dfx.benchmarks.face_detection`) measures the end-to-end ratio; this one says which stage
to work on. On one thread, per validation file: decoding and preprocessing with faces off; decoding, detection and
crop + preprocessing with faces on; the model's batch-32 inference (on its default threads). Then the detector's
time split over P-Net, R-Net and O-Net (calls, crops and milliseconds per file) and the rest (pyramid, crops,
suppression in numpy and Pillow), and the time per file for other stage thresholds with the share of files in which
a face is still found.

Run from the repository root::

    python -m dfx.benchmarks.face_cost --data ../shared/data/mesonet-deepfake --out benchmarks/results/face-cost-cpu
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from dfx.benchmarks.bench import machine_line
from dfx.benchmarks.report import save_result
from dfx.engine.artifact import read_onnx_info
from dfx.engine.decode import load_image
from dfx.engine.decode_pool import FACE_DECODE_SIDE
from dfx.engine.default_model import default_model_path
from dfx.engine.face_crop import crop_face
from dfx.engine.face_mtcnn import THRESHOLDS, MtcnnDetector
from dfx.engine.inputs import list_images
from dfx.engine.select import open_backend
from dfx.engine.spec import FaceCrop, preprocess

__all__ = ["measure_stages", "measure_networks", "measure_thresholds"]

SWEEP = ((0.8, 0.7, 0.9), (0.7, 0.8, 0.9), (0.8, 0.8, 0.9), (0.9, 0.8, 0.9))


def _ms(seconds: float, n: int) -> float:
    return round(1000 * seconds / max(n, 1), 3)


def measure_stages(paths: list[Path], model: Path) -> dict:
    """Milliseconds per file of each stage of a decode worker, faces off and on, and of batch-32 inference."""
    be = open_backend(model, "onnxruntime-cpu")
    be.activate()
    spec = be.info.spec.with_faces(be.info.spec.faces or FaceCrop())
    det = MtcnnDetector(min_face=spec.faces.min_face)
    out = np.zeros((3, *spec.input_size), np.float32)
    t = defaultdict(float)
    for p in paths:
        t0 = time.perf_counter()
        img = load_image(p, target_size=spec.input_size)
        t1 = time.perf_counter()
        preprocess(img, spec, out=out)
        t2 = time.perf_counter()
        img = load_image(p, target_size=(FACE_DECODE_SIDE, FACE_DECODE_SIDE))
        t3 = time.perf_counter()
        faces = det.detect(img)
        t4 = time.perf_counter()
        for f in faces[:spec.faces.max_faces]:
            preprocess(crop_face(img, f, spec.faces), spec, out=out)
        t5 = time.perf_counter()
        for k, a, b in (("decode_off", t0, t1), ("preprocess_off", t1, t2), ("decode_on", t2, t3),
                        ("detect", t3, t4), ("crop_preprocess_on", t4, t5)):
            t[k] += b - a
    x = np.zeros((32, 3, *spec.input_size), np.float32)
    be.infer(x)
    t0 = time.perf_counter()
    for _ in range(5):
        be.infer(x)
    infer = (time.perf_counter() - t0) / 160
    be.close()
    return {**{k: _ms(v, len(paths)) for k, v in t.items()}, "infer_batch32_per_file": round(1000 * infer, 3)}


class _Timed:
    """An onnxruntime session that adds its calls, rows and time to shared counters."""

    def __init__(self, name: str, session, stats: dict):
        self.name, self.session, self.stats = name, session, stats

    def run(self, names, feed):
        t0 = time.perf_counter()
        out = self.session.run(names, feed)
        s = self.stats[self.name]
        s["seconds"] += time.perf_counter() - t0
        s["calls"] += 1
        s["rows"] += feed["image"].shape[0]
        return out


def measure_networks(images: list, min_face: int) -> dict:
    """The detector's time per file split over its three networks and the rest."""
    det = MtcnnDetector(min_face=min_face)
    for im in images[:20]:
        det.detect(im)
    stats: dict = defaultdict(lambda: defaultdict(float))
    det.pnet, det.rnet, det.onet = (_Timed(n, s, stats) for n, s in
                                    (("pnet", det.pnet), ("rnet", det.rnet), ("onet", det.onet)))
    t0 = time.perf_counter()
    for im in images:
        det.detect(im)
    total = time.perf_counter() - t0
    n = len(images)
    nets = {k: {"ms": _ms(v["seconds"], n), "calls": round(v["calls"] / n, 2), "rows": round(v["rows"] / n, 2)}
            for k, v in stats.items()}
    return {"total_ms": _ms(total, n), **nets,
            "other_ms": _ms(total - sum(v["seconds"] for v in stats.values()), n)}


def measure_thresholds(images: list, min_face: int, rounds: int = 3) -> list[dict]:
    """Detection time per file (best of ``rounds``) and the share of files with a face, per threshold triple."""
    rows = []
    for th in (THRESHOLDS, *SWEEP):
        det = MtcnnDetector(min_face=min_face, thresholds=th)
        best, found = float("inf"), 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            found = sum(bool(det.detect(im)) for im in images)
            best = min(best, time.perf_counter() - t0)
        rows.append({"thresholds": list(th), "ms": _ms(best, len(images)), "found": found / max(len(images), 1)})
    return rows


def _markdown(r: dict) -> str:
    s, n = r["stages"], r["networks"]
    lines = [f"# Cost of the face front-end, by stage — {r['machine']}", "",
             f"{r['files']} files of `{r['data']}`, model `{r['model']}`, one thread per stage "
             "(inference on onnxruntime's default threads). Command: `python -m dfx.benchmarks.face_cost`.", "",
             "| stage | ms per file |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.2f} |" for k, v in s.items()]
    lines += ["", f"Detector: {n['total_ms']:.2f} ms per file.", "", "| network | ms per file | calls | crops |",
              "|---|---|---|---|"]
    lines += [f"| {k} | {n[k]['ms']:.2f} | {n[k]['calls']} | {n[k]['rows']} |" for k in ("pnet", "rnet", "onet")]
    lines += [f"| numpy and Pillow (pyramid, crops, suppression) | {n['other_ms']:.2f} | | |", "",
              "| thresholds (P-Net, R-Net, O-Net) | ms per file | files with a face |", "|---|---|---|"]
    lines += [f"| {tuple(t['thresholds'])} | {t['ms']:.2f} | {t['found']:.3f} |" for t in r["thresholds"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/mesonet-deepfake"))
    ap.add_argument("--model", type=Path, default=None, help="an .onnx artifact (default: the bundled model)")
    ap.add_argument("--files", type=int, default=300, help="validation files timed")
    ap.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    a = ap.parse_args()
    model = a.model or default_model_path()
    paths = list_images(a.data / "validate")[:a.files]
    if not paths:
        raise SystemExit(f"no images under {a.data / 'validate'}")
    min_face = (read_onnx_info(model).spec.faces or FaceCrop()).min_face  # the crop measure_stages uses
    images = [load_image(p, target_size=(FACE_DECODE_SIDE, FACE_DECODE_SIDE)) for p in paths]
    r = {"machine": machine_line(), "data": str(a.data),
         "model": model.name, "files": len(paths), "stages": measure_stages(paths, model),
         "networks": measure_networks(images, min_face), "thresholds": measure_thresholds(images, min_face)}
    table = _markdown(r)
    print(table)
    if a.out:
        save_result(a.out, r, table)


if __name__ == "__main__":
    main()
