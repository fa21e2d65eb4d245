"""MTCNN (Zhang et al., 2016) on onnxruntime and numpy: the bundled, torch-free face detector.

Three cascaded networks (``engine/face_models``, built by :mod:`dfx.export.mtcnn_onnx`; licence in
``engine/face_models/LICENSE.md``): P-Net proposes boxes on an image pyramid, R-Net and O-Net refine and rescore
them; O-Net also gives five landmarks. The stages follow facenet-pytorch's implementation, which the DFDC winners
used. Large images are first shrunk so their longer side is at most ``max_side``: faces below ``min_face`` are
not looked for anyway, and the pyramid's cost grows with the image's area.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DfxError
from .face_detect import Face, FaceDetector

__all__ = ["MtcnnDetector", "MODEL_DIR", "THRESHOLDS"]

MODEL_DIR = Path(__file__).resolve().parent / "face_models"
# Per-stage face-probability thresholds. facenet-pytorch's defaults are (0.6, 0.7, 0.7). P-Net's 0.7 passes fewer
# proposals on (about 10 % less time per image, recall unchanged); O-Net's 0.9 keeps false detections on face-free
# scenes under 2 % (benchmarks/face_detection.py).
THRESHOLDS = (0.7, 0.7, 0.9)
_FACTOR = 0.709  # pyramid step: each scale is 0.709× the previous (area halves every two steps)
# Overlap (IoU) above which a lower-scored box is suppressed: P-Net within a scale, P-Net across scales, R-Net.
NMS = (0.5, 0.6, 0.4)
_NMS_BLOCK = 256  # boxes whose overlaps with all others are computed at once


def _session(name: str):
    import onnxruntime as ort

    path = MODEL_DIR / f"mtcnn-{name}.onnx"
    if not path.is_file():
        raise DfxError(f"the bundled face detector file {path} is missing from this installation; reinstall dfx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one detector per decode worker: the workers are the parallelism
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _normalise(x: np.ndarray) -> np.ndarray:
    """HWC or NHWC uint8 → NCHW float32 scaled as the networks were trained, (x - 127.5) / 128."""
    x = np.asarray(x, np.float32)
    x = x[None] if x.ndim == 3 else x
    return ((x - 127.5) * 0.0078125).transpose(0, 3, 1, 2).copy()


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first (``min``: overlap over the smaller area).

    Overlaps are computed for a block of boxes against all at once, then the greedy pass only reads them, instead
    of a dozen numpy calls per kept box; blocks keep memory flat for any number of boxes.
    """
    if len(scores) < 2:  # nothing to suppress; P-Net's levels often propose one box or none
        return np.arange(len(scores))
    order = np.argsort(scores)[::-1]
    x0, y0, x1, y1 = (boxes[order, k] for k in range(4))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    alive = np.ones(len(order), bool)
    keep = []
    for lo in range(0, len(order), _NMS_BLOCK):
        hi = min(lo + _NMS_BLOCK, len(order))
        w = np.maximum(0.0, np.minimum(x1[lo:hi, None], x1) - np.maximum(x0[lo:hi, None], x0) + 1)
        h = np.maximum(0.0, np.minimum(y1[lo:hi, None], y1) - np.maximum(y0[lo:hi, None], y0) + 1)
        inter = w * h
        denom = np.minimum(area[lo:hi, None], area) if method == "min" else area[lo:hi, None] + area - inter
        over = inter / denom > threshold
        for i in range(lo, hi):
            if alive[i]:
                keep.append(i)
                alive &= ~over[i - lo]
    return order[np.asarray(keep, np.int64)]


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (R-Net and O-Net take square crops)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Applies the networks' box offsets (fractions of the box's width and height)."""
    out = boxes.copy()
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    out[:, 0:4] = boxes[:, 0:4] + reg * np.hstack([w, h, w, h])
    return out


def _crops(levels: list[Image.Image], boxes: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The in-image part of each box, resized to ``side``² (boxes with no area inside are dropped).

    ``levels`` is the image at full size then ever smaller (the P-Net pyramid); each box is cut from the smallest
    level on which it still spans ``side`` pixels, so a resize never reads more than about twice the pixels it
    writes (cutting every box from the full image cost more than the networks).
    """
    w, h = levels[0].size
    keep, out = [], []
    for i, (x0, y0, x1, y1) in enumerate(np.trunc(boxes[:, :4]).astype(np.int64).tolist()):
        x0, y0, x1, y1 = max(x0, 1) - 1, max(y0, 1) - 1, min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        span = max(x1 - x0, y1 - y0)
        level = next((lv for lv in reversed(levels) if span * lv.size[0] / w >= side), levels[0])
        fx, fy = level.size[0] / w, level.size[1] / h
        keep.append(i)
        out.append(level.resize((side, side), Image.Resampling.BOX, box=(x0 * fx, y0 * fy, x1 * fx, y1 * fy)))
    # One strip, one conversion: an array per crop cost more than its resize.
    strip = Image.new("RGB", (side, side * len(out)))
    for k, crop in enumerate(out):
        strip.paste(crop, (0, side * k))
    return np.asarray(keep, np.int64), np.asarray(strip).reshape(len(out), side, side, 3)


class MtcnnDetector(FaceDetector):
    """MTCNN face detector (see the module docstring).

    Args:
        min_face: smallest face side looked for, in pixels of the original image.
        max_side: images are shrunk to this longer side before detection (boxes come back in original pixels).
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net.
    """

    def __init__(self, min_face: int = 48, max_side: int = 1024, thresholds: tuple[float, ...] = THRESHOLDS):
        super().__init__(min_face)
        self.max_side, self.thresholds = max_side, tuple(thresholds)
        self.pnet, self.rnet, self.onet = (_session(n) for n in ("pnet", "rnet", "onet"))

    def detect(self, image: np.ndarray | Image.Image) -> list[Face]:
        img = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))
        w, h = img.size
        shrink = min(1.0, self.max_side / max(h, w))
        if shrink < 1.0:
            img = img.resize((max(1, round(w * shrink)), max(1, round(h * shrink))), Image.Resampling.BOX)
        boxes, points = self._stages(img, self.min_face * shrink)
        faces = [Face(tuple(float(v) / shrink for v in b[:4]), float(b[4]),
                      tuple((float(x) / shrink, float(y) / shrink) for x, y in p)) for b, p in zip(boxes, points)]
        return sorted(faces, key=lambda f: -f.confidence)

    def _stages(self, img: Image.Image, min_face: float) -> tuple[np.ndarray, np.ndarray]:
        none = (np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32))
        boxes, levels = self._propose(img, max(min_face, 12.0))
        if not len(boxes):
            return none
        # R-Net: rescore 24×24 crops of the squared proposals.
        boxes = _square(boxes)
        keep, crops = _crops(levels, boxes, 24)
        if not len(keep):
            return none
        prob, reg = self.rnet.run(None, {"image": _normalise(crops)})
        ok = prob > self.thresholds[1]
        boxes, reg = boxes[keep][ok], reg[ok]
        boxes[:, 4] = prob[ok]
        pick = _nms(boxes, boxes[:, 4], NMS[2])
        boxes = _square(_regress(boxes[pick], reg[pick]))
        # O-Net: final score, offsets and landmarks on 48×48 crops.
        keep, crops = _crops(levels, boxes, 48)
        if not len(keep):
            return none
        prob, reg, marks = self.onet.run(None, {"image": _normalise(crops)})
        ok = prob > self.thresholds[2]
        boxes, reg, marks = boxes[keep][ok], reg[ok], marks[ok]
        boxes[:, 4] = prob[ok]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack([bw * marks[:, :5] + boxes[:, 0:1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2)
        boxes = _regress(boxes, reg)
        pick = _nms(boxes, boxes[:, 4], 0.7, "min")
        return boxes[pick], points[pick]

    def _propose(self, img: Image.Image, min_face: float) -> tuple[np.ndarray, list[Image.Image]]:
        """P-Net over the pyramid: rows of (x0, y0, x1, y1, score) after per-scale and global suppression, and the
        pyramid's levels (the image first) for cutting the later stages' crops."""
        w, h = img.size
        scale = 12.0 / min_face
        found, levels = [], [img]
        while min(w, h) * scale >= 12:
            sw, sh = int(w * scale + 1), int(h * scale + 1)
            # Each level from the one before (when smaller): reading the full image for every level cost more.
            src = levels[-1] if levels[-1].size[0] >= sw and levels[-1].size[1] >= sh else img
            level = src.resize((sw, sh), Image.Resampling.BOX)
            if sw <= w and sh <= h:
                levels.append(level)
            prob, reg = self.pnet.run(None, {"image": _normalise(np.asarray(level))})
            ys, xs = np.nonzero(prob[0] >= self.thresholds[0])
            if len(ys):
                cells = np.stack([xs, ys], 1).astype(np.float32)
                q0, q1 = np.floor((2 * cells + 1) / scale), np.floor((2 * cells + 12) / scale)
                rows = np.hstack([q0, q1, prob[0, ys, xs][:, None], reg[0][:, ys, xs].T])
                found.append(rows[_nms(rows, rows[:, 4], NMS[0])])
            scale *= _FACTOR
        if not found:
            return np.zeros((0, 5), np.float32), levels
        rows = np.concatenate(found)
        rows = rows[_nms(rows, rows[:, 4], NMS[1])]
        w_, h_ = rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]
        boxes = rows[:, :5].copy()
        boxes[:, 0:4] += rows[:, 5:9] * np.stack([w_, h_, w_, h_], 1)
        return boxes, levels
