"""Face front-end benchmark: detection recall, false detections, score consistency and the cost of detection.

Real uncropped photos are not in ``../shared``, so the scenes are built: face crops from the shared validation
sets pasted into larger generated scenes (textured backgrounds with shapes, gradients and noise, plus non-face
patches cut from the crops' own corners) at random positions and sizes, one to three faces per scene; as many
scenes have no face at all. Measured, with the model's own face crop (the artifact's ``faces``):

- recall: pasted faces of at least ``--min-side`` px that the detector finds (a box whose centre lies inside the
  pasted crop and whose side is 0.3–1.1 of it);
- false detections: face-free scenes with any detection;
- consistency: |score of the face found in the scene − score of its own crop| ≤ 0.05, with the crop scored two
  ways: whole (``--faces off``, how the crop file itself scores as an image) and as ``dfx-infer`` scores it by
  default (its face detected and cropped again);
- box stability: how far the box found in the scene (mapped back onto the crop) lies from the box found on the
  crop itself — side and centre differences in box sides;
- consistency by scale: the same two shares for faces pasted smaller than 0.75 × their crop's side, within
  0.75–1.33 × of it, and larger: how much of the inconsistency is the model's sensitivity to resolution;
- consistency by edge: the same shares for faces whose cut in the scene stays inside the pasted crop and for
  those whose cut reaches past it into the generated background (the paste's seam in view), and for the latter
  also with the cut clipped to the pasted crop: how much of the inconsistency the scenes' construction adds;
- framing tolerance: how often the crop's own score stays within 0.05 when the crop is re-cut 5 % tighter, or
  moved by 3 % of its side — the model's own sensitivity to framing, which bounds the consistency any detector
  can reach with box jitter of that size;
- cost: CPU ``score_files`` throughput on the validation files with ``--faces on`` ÷ ``--faces off``, same run.

Run from the repository root::

    python -m dfx.benchmarks.face_detection --data ../shared/data --out benchmarks/results/faces-cpu
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dfx.benchmarks.bench import machine_line
from dfx.benchmarks.report import save_result
from dfx.engine.calibration import calibrated
from dfx.engine.default_model import default_model_path
from dfx.engine.face_crop import crop_box, crop_face
from dfx.engine.face_detect import get_detector
from dfx.engine.inputs import list_images
from dfx.engine.pipeline import score_files
from dfx.engine.select import open_backend
from dfx.engine.spec import FaceCrop, preprocess

__all__ = ["make_scene", "measure_faces"]

SOURCES = ("mesonet-deepfake", "stylegan2-ffhq", "ciplab-photoshop")
SURROUNDS = ("generated", "mirror")


def _background(rng: np.random.Generator, w: int, h: int, patches: list[Image.Image]) -> Image.Image:
    """A face-free scene: a colour gradient, low-frequency noise, random shapes and non-face patches."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([rng.uniform(40, 200) + rng.uniform(-60, 60) * (xx / w) + rng.uniform(-60, 60) * (yy / h)
                     for _ in range(3)], -1)
    coarse = rng.normal(0, 25, (max(2, h // 32), max(2, w // 32), 3)).astype(np.float32)
    base += np.asarray(Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((w, h))) - 128.0
    img = Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    for _ in range(int(rng.integers(0, 4))):  # corners of face crops: hair, collars, studio backdrops
        p = patches[int(rng.integers(len(patches)))]
        side = p.size[0] // 4
        tile = p.crop((0, 0, side, side)).resize((int(rng.integers(40, 200)),) * 2)
        img.paste(tile, (int(rng.integers(0, w - tile.size[0])), int(rng.integers(0, h - tile.size[1]))))
    return img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))


def make_scene(rng: np.random.Generator, crops: list[Image.Image], patches: list[Image.Image], n_faces: int,
               min_side: int = 64, surround: str = "generated") -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A generated scene with ``n_faces`` of ``crops`` pasted without overlap; returns it and their boxes.

    ``surround="mirror"``: one face, the scene around it its own mirror images (numpy's ``symmetric`` padding), so
    the pixels beyond the crop continue it without a seam, as a photo's would.
    """
    if surround not in SURROUNDS:
        raise ValueError(f"unknown surround {surround!r}; choose one of {', '.join(SURROUNDS)}")
    w, h = int(rng.integers(640, 1601)), int(rng.integers(480, 1201))

    def place() -> tuple[int, int, int]:
        s = int(rng.integers(min_side, min(320, w // 2, h // 2)))
        return int(rng.integers(0, w - s)), int(rng.integers(0, h - s)), s

    if surround == "mirror" and n_faces:
        x, y, s = place()
        face = np.asarray(crops[0].resize((s, s), Image.Resampling.BICUBIC))
        return Image.fromarray(np.pad(face, ((y, h - y - s), (x, w - x - s), (0, 0)), mode="symmetric")), [
            (x, y, x + s, y + s)]
    img = _background(rng, w, h, patches)
    boxes: list[tuple[int, int, int, int]] = []
    for crop in crops[:n_faces]:
        for _ in range(50):
            x, y, s = place()
            if all(x + s <= a or c <= x or y + s <= b or d <= y for a, b, c, d in boxes):
                img.paste(crop.resize((s, s), Image.Resampling.BICUBIC), (x, y))
                boxes.append((x, y, x + s, y + s))
                break
    return img, boxes


def _matches(face, box: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = box
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    return x0 <= cx <= x1 and y0 <= cy <= y1 and 0.3 <= face.side / (x1 - x0) <= 1.1


def _score(be, img: Image.Image, spec) -> float:
    return float(calibrated(be.infer(preprocess(img, spec)[None]), be.info.temperature)[0])


def _box_difference(in_scene, on_crop, pasted: tuple[int, int, int, int], crop_side: int) -> tuple[float, float]:
    """Side and centre difference, in the crop's box sides, of a face's box in the scene and on its own crop."""
    x0, y0, x1, _ = pasted
    k = crop_side / (x1 - x0)  # scene pixels → crop pixels
    a = [(v - o) * k for v, o in zip(in_scene.box, (x0, y0, x0, y0))]
    b, side = on_crop.box, on_crop.side
    centre = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)
    return abs(max(a[2] - a[0], a[3] - a[1]) / side - 1), float(centre / side)


def _median_p90(values: list[float]) -> list[float]:
    return [float(np.median(values)), float(np.percentile(values, 90))] if values else [float("nan")] * 2


# pasted side ÷ crop side: (from, to, name)
SCALE_BINS = ((0.0, 0.75, "shrunk below 0.75×"), (0.75, 1.33, "0.75–1.33×"),
              (1.33, float("inf"), "enlarged above 1.33×"))


def _shares(rows: list[tuple[bool, ...]], keys: tuple[str, ...] = ("consistent", "consistent_default")) -> dict:
    """Face count and the share of True per column of ``rows``, named by ``keys``."""
    return {"faces": len(rows), **{k: float(np.mean([r[i] for r in rows])) if rows else float("nan")
                                   for i, k in enumerate(keys)}}


def _by_scale(faces: list[tuple[float, bool, bool]]) -> dict[str, dict]:
    """Consistency shares per :data:`SCALE_BINS` bin, from (pasted side ÷ crop side, whole ok, as-dfx-infer ok)."""
    return {name: _shares([(a, b) for k, a, b in faces if lo <= k < hi]) for lo, hi, name in SCALE_BINS}


def _reaches_past(cut: tuple[int, int, int, int], pasted: tuple[int, int, int, int]) -> bool:
    """Whether the scene ``cut`` takes in more than a pixel of the scene outside the ``pasted`` crop."""
    return cut[0] < pasted[0] - 1 or cut[1] < pasted[1] - 1 or cut[2] > pasted[2] + 1 or cut[3] > pasted[3] + 1


def _by_edge(faces: list[tuple[bool, bool, bool, bool]]) -> dict[str, dict]:
    """Consistency shares for cuts inside the pasted crop and reaching past it, from (reaches past, whole ok,
    as-dfx-infer ok, as-dfx-infer ok with the cut clipped to the pasted crop)."""
    keys = ("consistent", "consistent_default", "consistent_default_clipped")
    return {"inside the pasted crop": _shares([f[1:3] for f in faces if not f[0]], keys[:2]),
            "reaching past it": _shares([f[1:] for f in faces if f[0]], keys)}


def _recut(img: Image.Image, zoom: float, shift: float) -> Image.Image:
    """``img`` cut again: a ``zoom`` × side square about its centre moved right by ``shift`` × side."""
    w, h = img.size
    cx, cy, half = w / 2 + shift * w, h / 2, zoom * w / 2
    return img.crop((round(cx - half), round(cy - zoom * h / 2), round(cx + half), round(cy + zoom * h / 2)))


def measure_faces(data: Path, model: Path, scenes: int, seed: int, min_side: int, crop: FaceCrop | None,
                  cost_files: int, surround: str = "generated") -> dict:
    """Runs the measurements (see the module docstring) and returns them as a dict."""
    rng = np.random.default_rng(seed)
    be = open_backend(model, "onnxruntime-cpu")
    be.activate()
    spec = be.info.spec.with_faces(crop or be.info.spec.faces or FaceCrop())
    detector = get_detector(spec.faces.detector, min_face=spec.faces.min_face)
    files = {s: list_images(data / s / "validate") for s in SOURCES if (data / s / "validate").is_dir()}
    per_source: dict[str, dict] = {}
    false_scenes = empty_scenes = 0
    t_detect = n_detect = 0.0
    side_diffs, centre_diffs, scaled, edges = [], [], [], []
    for source, paths in files.items():
        found = total = consistent = consistent_default = compared = tight = moved = 0
        for _ in range(scenes):
            picks = [Image.open(paths[int(rng.integers(len(paths)))]).convert("RGB") for _ in range(3)]
            n = int(rng.integers(1, 4))
            scene, boxes = make_scene(rng, picks, picks, n, min_side, surround)
            t0 = time.perf_counter()
            faces = detector.detect(np.asarray(scene))
            t_detect, n_detect = t_detect + time.perf_counter() - t0, n_detect + 1
            for crop_img, box in zip(picks, boxes):
                total += 1
                hit = [f for f in faces if _matches(f, box)]
                if not hit:
                    continue
                found += 1
                cut = crop_box(hit[0], scene.size, spec.faces)
                s_scene = _score(be, scene.crop(cut), spec)
                s_crop = _score(be, crop_img, spec)
                own = detector.detect(crop_img)
                s_default = _score(be, crop_face(crop_img, own[0], spec.faces), spec) if own else None
                if own:
                    side, centre = _box_difference(hit[0], own[0], box, crop_img.size[0])
                    side_diffs.append(side)
                    centre_diffs.append(centre)
                compared += 1
                whole_ok = abs(s_scene - s_crop) <= 0.05
                default_ok = s_default is not None and abs(s_scene - s_default) <= 0.05
                consistent, consistent_default = consistent + whole_ok, consistent_default + default_ok
                scaled.append(((box[2] - box[0]) / crop_img.size[0], whole_ok, default_ok))
                past = _reaches_past(cut, box)
                clipped_ok = past and s_default is not None and abs(_score(be, scene.crop(
                    (max(cut[0], box[0]), max(cut[1], box[1]), min(cut[2], box[2]), min(cut[3], box[3]))), spec)
                    - s_default) <= 0.05
                edges.append((past, whole_ok, default_ok, clipped_ok))
                tight += abs(_score(be, _recut(crop_img, 0.95, 0.0), spec) - s_crop) <= 0.05
                moved += abs(_score(be, _recut(crop_img, 1.0, 0.03), spec) - s_crop) <= 0.05
            empty, _ = make_scene(rng, [], picks, 0, min_side)
            empty_scenes += 1
            false_scenes += bool(detector.detect(np.asarray(empty)))
        per_source[source] = {"faces": total, "found": found, "recall": found / max(total, 1),
                              "consistent": consistent / max(compared, 1),
                              "consistent_default": consistent_default / max(compared, 1),
                              "tolerance_zoom": tight / max(compared, 1), "tolerance_shift": moved / max(compared, 1)}
    cost = _cost(be, [p for ps in files.values() for p in ps][:cost_files]) if cost_files else {}
    be.close()
    faces_all = sum(r["faces"] for r in per_source.values())
    return {
        "machine": machine_line(),
        "model": str(model.name), "crop": spec.faces.__dict__, "surround": surround, "scenes_per_source": scenes,
        "min_side": min_side, "seed": seed, "per_source": per_source,
        "recall": sum(r["found"] for r in per_source.values()) / max(faces_all, 1),
        **{k: sum(r[k] * r["found"] for r in per_source.values()) / max(sum(r["found"] for r in per_source.values()), 1)
           for k in ("consistent", "consistent_default", "tolerance_zoom", "tolerance_shift")},
        "false_detection_rate": false_scenes / max(empty_scenes, 1), "empty_scenes": empty_scenes,
        "detect_ms_per_scene": 1000 * t_detect / max(n_detect, 1), **cost,
        "box_side_diff": _median_p90(side_diffs), "box_centre_diff": _median_p90(centre_diffs),
        "by_scale": _by_scale(scaled), "by_edge": _by_edge(edges),
    }


def _cost(be, paths: list[Path]) -> dict:
    """CPU throughput of score_files with faces off and on, interleaved over three rounds (best of each)."""
    best = {"off": 0.0, "on": 0.0}
    for _ in range(3):
        for mode in ("off", "on"):
            t0 = time.perf_counter()
            n = sum(1 for r in score_files(be, paths, 32, faces=mode) if r.face is None)
            best[mode] = max(best[mode], n / (time.perf_counter() - t0))
    return {"cost_files": len(paths), "img_per_s_faces_off": best["off"], "img_per_s_faces_on": best["on"],
            "faces_on_over_off": best["on"] / best["off"]}


def _markdown(r: dict) -> str:
    mirror = r.get("surround") == "mirror"
    faces = (f"1 face of ≥ {r['min_side']} px in its own mirror images (`--surround mirror`)" if mirror
             else f"1–3 pasted faces of ≥ {r['min_side']} px")
    lines = [f"# Face front-end — {r['machine']}", "",
             f"Model `{r['model']}`, crop {r['crop']}; {r['scenes_per_source']} scenes per source with {faces}, as "
             f"many face-free scenes; seed {r['seed']}. Command: `python -m dfx.benchmarks.face_detection`.", "",
             "| source | pasted faces | recall | score within 0.05 of its crop scored whole | … of its crop scored "
             "as dfx-infer does (face found and cropped again) | crop's score within 0.05 when re-cut 5 % tighter "
             "/ moved 3 % |", "|---|---|---|---|---|---|"]
    for s, v in r["per_source"].items():
        lines.append(f"| {s} | {v['faces']} | {v['recall']:.3f} | {v['consistent']:.3f} | "
                     f"{v['consistent_default']:.3f} | {v['tolerance_zoom']:.3f} / {v['tolerance_shift']:.3f} |")
    lines += [f"| **all** | {sum(v['faces'] for v in r['per_source'].values())} | **{r['recall']:.3f}** | "
              f"**{r['consistent']:.3f}** | **{r['consistent_default']:.3f}** | "
              f"{r['tolerance_zoom']:.3f} / {r['tolerance_shift']:.3f} |", "",
              f"- False detections: {r['false_detection_rate']:.3f} of {r['empty_scenes']} face-free scenes.",
              f"- Detection: {r['detect_ms_per_scene']:.1f} ms per scene (640–1600 px wide), one thread.",
              f"- Box stability (the box found in the scene, mapped onto the crop, against the box found on the crop; "
              f"in box sides): side differs by {r['box_side_diff'][0]:.3f} (median; 90th percentile "
              f"{r['box_side_diff'][1]:.3f}), centre by {r['box_centre_diff'][0]:.3f} "
              f"({r['box_centre_diff'][1]:.3f}).",
              "- Consistency by the pasted face's side ÷ its crop's (whole / as dfx-infer): " + "; ".join(
                  f"{k}: {v['consistent']:.3f} / {v['consistent_default']:.3f} ({v['faces']} faces)"
                  for k, v in r.get("by_scale", {}).items()) + "."]
    if "by_edge" in r:
        inside, past = r["by_edge"]["inside the pasted crop"], r["by_edge"]["reaching past it"]
        lines.append(f"- Consistency by where the face's cut in the scene lies (whole / as dfx-infer): inside the "
                     f"pasted crop {inside['consistent']:.3f} / {inside['consistent_default']:.3f} ({inside['faces']} "
                     f"faces); reaching past it into the {'mirrored' if mirror else 'generated'} surroundings "
                     f"{past['consistent']:.3f} / "
                     f"{past['consistent_default']:.3f} ({past['faces']} faces), "
                     f"{past['consistent_default_clipped']:.3f} as dfx-infer with the cut clipped to the pasted crop.")
    if "cost_files" in r:
        lines.append(f"- Cost on {r['cost_files']} validation files (score_files, batch 32, best of 3 interleaved "
                     f"rounds): {r['img_per_s_faces_off']:.0f} img/s with faces off, {r['img_per_s_faces_on']:.0f} "
                     f"with faces on: **{r['faces_on_over_off']:.2f}×**.")
    return "\n".join(lines + [""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--model", type=Path, default=None, help="an .onnx artifact (default: the bundled model)")
    ap.add_argument("--scenes", type=int, default=100, help="scenes with faces per source (as many without)")
    ap.add_argument("--min-side", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=None, help="override the artifact's crop scale")
    ap.add_argument("--shift", type=float, default=None, help="override the artifact's crop shift")
    ap.add_argument("--cost-files", type=int, default=600, help="validation files timed for the cost (0: skip it)")
    ap.add_argument("--surround", choices=SURROUNDS, default="generated",
                    help="what lies around a pasted face: a generated scene (1–3 faces), or the face's own mirror "
                         "images (one face; no seam)")
    ap.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.md")
    a = ap.parse_args()
    model = a.model or default_model_path()
    crop = None
    if a.scale is not None or a.shift is not None:
        from dfx.engine.artifact import read_onnx_info

        base = read_onnx_info(model).spec.faces or FaceCrop()
        crop = FaceCrop(**{**base.__dict__, **{k: v for k, v in (("scale", a.scale), ("shift", a.shift))
                                                if v is not None}})
    r = measure_faces(a.data, model, a.scenes, a.seed, a.min_side, crop, a.cost_files, a.surround)
    print(_markdown(r))
    if a.out:
        save_result(a.out, r, _markdown(r))


if __name__ == "__main__":
    main()
