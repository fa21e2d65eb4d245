"""Framing consistency: a training penalty on how much a face's score moves when it is cut a little differently.

A face detector's box on the same face moves by a few per cent between a photo and the face's own crop
(``benchmarks/face_detection.py``: 2.4 % of the side at the median, 7 % for one face in ten), and a model trained
on one framing per image can move its score by far more than 0.05 for such a change. Random crops as augmentation
show the model other framings but do not ask it to score them alike; this does. Each training batch gets a second
view of every image, cut again at a random scale and offset on the device, and the loss adds
``weight · mean((p₁ − p₂)²)`` over the two views' probabilities (the consistency regularisation of semi-supervised
learning, e.g. Laine & Aila, "Temporal Ensembling", ICLR 2017, applied to framing).

The second view is cut from the model's input (already augmented and normalised), so it works the same with
augmentation in the workers or on the device, and zooms in only: a cut never needs pixels from outside the image.
For the bundled Meso-4 recipe it did not pay for itself (``benchmarks/results/consistency-candidates-cpu.md``), so
it is off by default.
"""

from __future__ import annotations

import torch

from .augment_batch import warp_crops

__all__ = ["FramingConsistency", "MAX_ZOOM"]

MAX_ZOOM = 0.1  # the second view keeps 90–100 % of the side, at a random place inside the image


class FramingConsistency:
    """The second view and the penalty between the two views' scores.

    Args:
        weight: the penalty's weight in the loss (> 0).
        max_zoom: the largest share of the side the second view drops.
    """

    def __init__(self, weight: float, max_zoom: float = MAX_ZOOM):
        self.weight = weight
        self.max_zoom = max_zoom

    @torch.no_grad()
    def reframe(self, x: torch.Tensor) -> torch.Tensor:
        """Each image of the (B, C, H, W) batch cut again: side 1 − U(0, max_zoom), anywhere inside, resampled
        bilinearly back to (H, W). Draws from torch's RNG, which the trainer seeds per epoch."""
        n = x.shape[0]
        r = torch.rand(n, 3, device=x.device)
        side = 1.0 - self.max_zoom * r[:, 0]
        x0, y0 = (1.0 - side) * r[:, 1], (1.0 - side) * r[:, 2]
        boxes = torch.stack([torch.zeros_like(side), y0, x0, y0 + side, x0 + side], dim=1)  # (flip, y0, x0, y1, x1)
        return warp_crops(x, boxes, tuple(x.shape[2:])).contiguous(memory_format=torch.channels_last)

    def penalty(self, logits: torch.Tensor, logits_reframed: torch.Tensor) -> torch.Tensor:
        """``weight ·`` the mean squared difference of the two views' probabilities (gradients through both)."""
        return self.weight * (torch.sigmoid(logits) - torch.sigmoid(logits_reframed)).pow(2).mean()
