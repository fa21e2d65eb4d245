"""Augmentation in batches on the device: what feeds a GPU from the once-decoded cache.

The per-image path (:class:`~dfx.training.augment.Augment` in the DataLoader workers, then ``preprocess``) costs
CPU per image per epoch; a GPU then waits for the workers. Here the workers only draw each sample's parameters
(from its own seeded RNG, so a run is the same whatever ``--workers``) and do what needs a codec or a resampling
kernel — JPEG re-compression, rescaling — and the self-blended images, sending only the images they changed
(:mod:`.batch_feed`); flip, crop, context, colour, blur, the resize to the input size and the normalisation run
batched on the device, as tensor ops, each on the samples that drew it. Context needs the batch (its frame is
another sample's image), so it exists only here.

It differs from the per-image path in small ways, by design: the resize is bilinear sampling without
antialiasing (the cache is at the input size, so a crop is only ever enlarged, by at most 1.12×), hue is not
jittered, and JPEG re-compression comes before the colour change rather than after. Evaluation never uses it:
validation and deployment keep the runtime's own ``preprocess``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dfx.engine.errors import DfxError
from dfx.engine.spec import PreprocessSpec

from .augment import rescale, uniform
from .options import AUGMENTATIONS, CONTEXT_ZOOM, CROP_MIN_AREA

__all__ = ["BatchAugment", "PARAMS", "to_uint8_tensor", "warp_crops", "in_context"]
# One row of per-sample parameters; crop corners are fractions of the cached image.
# context_zoom: the output's side ÷ the face's (1: off); context_x, context_y: where the face sits in the free margin.
PARAMS = ("flip", "y0", "x0", "y1", "x1", "brightness", "contrast", "saturation", "blur_sigma", "context_zoom",
          "context_x", "context_y")
_MAX_SIGMA = 1.5
_KERNEL = 2 * math.ceil(3 * _MAX_SIGMA) + 1


class BatchAugment:
    """Per-sample parameters drawn in the workers, applied to whole batches on the device.

    Args:
        enabled: names from :data:`~dfx.training.options.AUGMENTATIONS` to apply (same probabilities as the
            per-image path).
        spec: the model's preprocessing spec (input size and normalisation).
    """

    def __init__(self, enabled: Iterable[str], spec: PreprocessSpec):
        self.enabled = tuple(enabled)
        unknown = set(self.enabled) - set(AUGMENTATIONS)
        if unknown:
            raise DfxError(f"unknown augmentation(s) {sorted(unknown)}; valid: {', '.join(AUGMENTATIONS)}")
        self.spec = spec
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    # --- in the workers ----------------------------------------------------------------------------------------
    def draw(self, load: Callable[[], Image.Image]) -> tuple[Image.Image | None, torch.Tensor]:
        """Draws one sample's parameters (torch's RNG, seeded per sample by the data set) and applies rescaling and
        JPEG re-compression when drawn.

        Args:
            load: returns the sample's image; called only when one of those is drawn.

        Returns:
            (the new image, or None when the sample's pixels are unchanged; its :data:`PARAMS` row).
        """
        on, img = self.enabled, None
        p = dict(flip=0.0, y0=0.0, x0=0.0, y1=1.0, x1=1.0, brightness=1.0, contrast=1.0, saturation=1.0,
                 blur_sigma=0.0, context_zoom=1.0, context_x=0.5, context_y=0.5)
        if "flip" in on and uniform() < AUGMENTATIONS["flip"]:
            p["flip"] = 1.0
        if "crop" in on and uniform() < AUGMENTATIONS["crop"]:
            area = CROP_MIN_AREA + (1.0 - CROP_MIN_AREA) * uniform()
            ratio = math.exp(math.log(0.9) + (math.log(1.1) - math.log(0.9)) * uniform())
            w, h = min(1.0, math.sqrt(area * ratio)), min(1.0, math.sqrt(area / ratio))
            p["x0"], p["y0"] = (1.0 - w) * uniform(), (1.0 - h) * uniform()
            p["x1"], p["y1"] = p["x0"] + w, p["y0"] + h
        if "context" in on and uniform() < AUGMENTATIONS["context"]:
            p["context_zoom"], p["context_x"], p["context_y"] = uniform(*CONTEXT_ZOOM), uniform(), uniform()
        if "color" in on and uniform() < AUGMENTATIONS["color"]:
            p["brightness"], p["contrast"], p["saturation"] = (0.8 + 0.4 * uniform() for _ in range(3))
        if "rescale" in on and uniform() < AUGMENTATIONS["rescale"]:
            img = rescale(load(), back=True)  # here, before the device's crop: it needs Pillow's kernels
        if "jpeg" in on and uniform() < AUGMENTATIONS["jpeg"]:
            buf = io.BytesIO()
            (img or load()).save(buf, "JPEG", quality=int(30 + 65 * uniform()))
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        if "blur" in on and uniform() < AUGMENTATIONS["blur"]:
            p["blur_sigma"] = 0.1 + 1.4 * uniform()
        return img, torch.tensor([p[k] for k in PARAMS], dtype=torch.float32)

    # --- on the device -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) uint8 and (B, len(PARAMS)) → the model's float32 input (B, 3, h, w), on the images' device.

        Each operation runs only on the samples that drew it (about half for crop and colour, a fifth for blur);
        which those are is read from ``params`` where they arrive, on the CPU as the loader delivers them, so a GPU
        is never waited for.
        """
        cpu = params.detach().to("cpu", torch.float32)
        x = images.permute(0, 3, 1, 2).float()
        p = params.to(x.device, torch.float32, non_blocking=True)
        x = self._crop_flip_resize(x, p, cpu)
        if (k := _samples(cpu[:, 9] > 1, x.device)) is not None:
            # Each framed sample's frame is the next sample's image (as cropped), taken before any is framed.
            x[k] = in_context(x[k], x[(k + 1) % len(x)], p[k, 9:12])
        if (k := _samples(((cpu[:, 5:8] != 1).any(1)), x.device)) is not None:
            x[k] = self._colour(x[k], p[k])
        if (k := _samples(cpu[:, 8] > 0, x.device)) is not None:
            x[k] = self._blur(x[k], p[k, 8])
        x = x.clamp_(0, 255)
        if self.spec.channel_order == "BGR":
            x = x.flip(1)
        gain, offset = self._normalisation(x.device)
        return torch.addcmul(-offset, x, gain)

    def _normalisation(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Made once per device: a copy from host memory every batch would wait for the GPU's queue to drain.
        if device not in self._norm:
            self._norm[device] = tuple(torch.as_tensor(v, dtype=torch.float32).view(1, 3, 1, 1).to(device)
                                       for v in (self.spec._gain, self.spec._offset))
        return self._norm[device]

    def _crop_flip_resize(self, x: torch.Tensor, p: torch.Tensor, cpu: torch.Tensor) -> torch.Tensor:
        h, w = self.spec.input_size
        if tuple(x.shape[2:]) != (h, w):  # not at the input size (never from the cache): every sample is resampled
            return warp_crops(x, p, (h, w))
        cropped = (cpu[:, 1:5] != torch.tensor([0.0, 0.0, 1.0, 1.0])).any(1)
        if (k := _samples(cropped, x.device)) is not None:
            x[k] = warp_crops(x[k], p[k], (h, w))
        if (k := _samples((cpu[:, 0] > 0) & ~cropped, x.device)) is not None:  # mirrored only: exact, no resampling
            x[k] = x[k].flip(3)
        return x

    @staticmethod
    def _colour(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Brightness b, then contrast c about the mean grey, then saturation s about each pixel's grey, in one
        expression: b·c·(s·x + (1 - s)·grey(x)) + b·(1 - c)·mean(grey(x)) (the grey weights sum to 1)."""
        b, c, s = (p[:, i].view(-1, 1, 1, 1) for i in (5, 6, 7))
        grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        bc = b * c
        return x * (bc * s) + grey * (bc * (1 - s)) + grey.mean(dim=(2, 3), keepdim=True) * (b * (1 - c))

    @staticmethod
    def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = x.shape
        r = torch.arange(_KERNEL, device=x.device, dtype=torch.float32) - _KERNEL // 2
        k = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.clamp(min=1e-3).view(-1, 1) ** 2))
        k = torch.where(sigma.view(-1, 1) > 0, k, (r == 0).float().view(1, -1))  # sigma 0: the identity
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # one kernel per (sample, channel)
        y = F.pad(x.reshape(1, n * ch, h, w), (_KERNEL // 2,) * 4, mode="reflect")
        y = F.conv2d(y, k.view(n * ch, 1, 1, _KERNEL), groups=n * ch)
        y = F.conv2d(y, k.view(n * ch, 1, _KERNEL, 1), groups=n * ch)
        return y.view(n, ch, h, w)


def warp_crops(x: torch.Tensor, p: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Each sample's crop (and mirror) resampled bilinearly to ``size``.

    Args:
        x: (B, C, H, W) float images.
        p: (B, ≥ 5) rows whose first columns are flip, y0, x0, y1, x1 (:data:`PARAMS`; corners as fractions).
        size: the output's (height, width).
    """
    n, (h, w) = x.shape[0], size
    flip, y0, x0, y1, x1 = (p[:, i].view(-1, 1, 1) for i in range(5))
    # The sampling grid of an axis-aligned crop, built per axis: what affine_grid computes, without its
    # (n·h·w × 3) by (3 × 2) batched product. Pixel centres in [-1, 1], as align_corners=False places them.
    cx = (torch.arange(w, device=x.device, dtype=torch.float32) * 2 + 1) / w - 1
    cy = (torch.arange(h, device=x.device, dtype=torch.float32) * 2 + 1) / h - 1
    gx = cx.view(1, 1, w) * ((x1 - x0) * (1 - 2 * flip)) + (x0 + x1 - 1)  # a negative x scale mirrors the crop
    gy = cy.view(1, h, 1) * (y1 - y0) + (y0 + y1 - 1)
    grid = torch.stack([gx.expand(n, h, w), gy.expand(n, h, w)], dim=3)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def in_context(x: torch.Tensor, frame: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` shrunk into ``frame``: a face cut wider than its crop, the paste's edge in view.

    Args:
        x: (B, C, H, W) float images.
        frame: (B, C, H, W) the images around them.
        p: (B, 3) rows of zoom z ≥ 1 (the output's side ÷ the image's), and where the image sits in the free
            margin, across and down (0: left/top edge, 1: right/bottom edge).
    """
    n, _, h, w = x.shape
    z, fx, fy = (p[:, i].view(-1, 1, 1) for i in range(3))
    cx = (torch.arange(w, device=x.device, dtype=torch.float32) * 2 + 1) / w - 1
    cy = (torch.arange(h, device=x.device, dtype=torch.float32) * 2 + 1) / h - 1
    # Output position u ↦ image position z·u + t; t = (z - 1)(1 - 2·fx) puts the image's left edge at
    # -1 + 2·fx·(1 - 1/z): at the output's left edge for fx = 0, its right edge touching the output's for fx = 1.
    gx = cx.view(1, 1, w) * z + (z - 1) * (1 - 2 * fx)
    gy = cy.view(1, h, 1) * z + (z - 1) * (1 - 2 * fy)
    grid = torch.stack([gx.expand(n, h, w), gy.expand(n, h, w)], dim=3)
    inside = F.grid_sample(torch.ones_like(x[:, :1]), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + frame * (1 - inside)


def _samples(mask: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Indices (on ``device``) of the samples a CPU mask selects; None when it selects none."""
    k = mask.nonzero().squeeze(1)
    if not len(k):
        return None
    # From pinned memory: a copy from pageable memory may wait for the GPU's queue to drain (CUDA's "API
    # synchronization behavior").
    return (k.pin_memory() if device.type == "cuda" else k).to(device, non_blocking=True)


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB image as a (H, W, 3) uint8 tensor (the form batches travel to the device in)."""
    return torch.from_numpy(np.asarray(img, np.uint8).copy())
