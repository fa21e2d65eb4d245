"""Batches for the device path as cache rows: the pixels a worker did not change never travel.

With augmentation on the device (:mod:`.augment_batch`), most samples reach the model as their cached pixels:
only JPEG re-compression, rescaling and the self-blended images need a worker to make new ones. So a worker's
item is (cache row, augmentation parameters, label, the new image or None), :func:`collate_rows` packs a batch
of them, and :class:`BatchImages` assembles the uint8 batch where the model runs: from a copy of the cache on the
GPU when it fits there, else gathered from host memory into pinned memory, then the workers' images put in place.

Sending every image cost each batch of 256 about 50 MB written into shared memory by a worker, mapped and copied
again into pinned memory by the main process, then copied to the GPU; Meso-4 on the H200 trained at only 0.54–0.68
of its 14 ms step's rate (benchmarks/results/train-gpu-h200.md).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .cache import ImageCache

__all__ = ["RowBatch", "collate_rows", "BatchImages", "DEVICE_SHARE"]

log = logging.getLogger("dfx.training")

# The most of a GPU's free memory the decoded images may take there; the rest stays for the model's activations
# (ViT-B/16 at batch 256 needs tens of GiB).
DEVICE_SHARE = 0.25
_CHUNK = 256  # rows copied to the GPU at a time (about 50 MB at 256 px)

RowBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""(cache rows (B,), parameters (B, P), labels (B,), positions of the workers' images (K,), those images
(K, H, W, 3) uint8)."""


def collate_rows(items: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None]]) -> RowBatch:
    """Packs (row, parameters, label, new image or None) items into a :data:`RowBatch`."""
    rows, params, labels, images = zip(*items)
    changed = [k for k, img in enumerate(images) if img is not None]
    new = torch.stack([images[k] for k in changed]) if changed else torch.zeros((0, 0, 0, 3), dtype=torch.uint8)
    return (torch.tensor(rows, dtype=torch.int64), torch.stack(params), torch.stack(labels),
            torch.tensor(changed, dtype=torch.int64), new)


class BatchImages:
    """Assembles a :data:`RowBatch`'s uint8 images on ``device``.

    Args:
        cache: the once-decoded training images.
        device: where the model trains.
        resident: keep a copy of the cache on ``device`` and gather there; None: on a GPU when the cache takes at
            most :data:`DEVICE_SHARE` of its free memory. Otherwise each batch's rows are gathered on the host.
        n_rows: only rows below this are ever asked for (the trainer's cache holds the training images first,
            then the validation images, which never go to the device); None: all.
    """

    def __init__(self, cache: ImageCache, device: torch.device, resident: bool | None = None,
                 n_rows: int | None = None):
        self.cache, self.device = cache, device
        self._buffer: torch.Tensor | None = None
        n = cache.shape[0] if n_rows is None else n_rows
        nbytes = cache.nbytes // cache.shape[0] * n
        if resident is None and device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            resident = nbytes <= DEVICE_SHARE * free
            if not resident:
                log.info("decoded images (%.0f MiB) kept in host memory: more than %.0f %% of %s's free %.0f MiB",
                         nbytes / 2**20, DEVICE_SHARE * 100, device, free / 2**20)
        self.on_device: torch.Tensor | None = None
        if resident:
            self.on_device = torch.empty((n, *cache.shape[1:]), dtype=torch.uint8, device=device)
            for lo in range(0, n, _CHUNK):  # a disk cache is read once, a chunk at a time
                hi = min(lo + _CHUNK, n)
                self.on_device[lo:hi].copy_(torch.from_numpy(np.array(cache.array[lo:hi])))
            log.info("decoded training images copied to %s (%.0f MiB): batches travel as cache rows", device,
                     nbytes / 2**20)

    def __call__(self, batch: RowBatch) -> torch.Tensor:
        """(B, H, W, 3) uint8 on the device: each row's cached pixels, or the worker's new image where it sent one.

        On the CPU the result is overwritten by the next call.
        """
        rows, _, _, changed, new = batch
        if self.on_device is not None:
            images = self.on_device.index_select(0, rows.to(self.device, non_blocking=True))
            if len(changed):
                images[changed.to(self.device, non_blocking=True)] = new.to(self.device, non_blocking=True)
            return images
        pin = self.device.type == "cuda"
        shape = (len(rows), *self.cache.shape[1:])
        if pin:  # torch's pinned-memory allocator reuses a block only once the copy out of it has finished
            host = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        else:  # on the CPU the batch is consumed before the next call: one buffer, not 50 MB of fresh pages a step
            if self._buffer is None or self._buffer.shape != shape:
                self._buffer = torch.empty(shape, dtype=torch.uint8)
            host = self._buffer
        # numpy's take reads a memory-mapped (disk) cache as well as a RAM one, straight into the batch's memory
        # (mode "raise" would go through a temporary copy; the rows are valid anyway).
        np.take(self.cache.array, rows.numpy(), axis=0, out=host.numpy(), mode="clip")
        if len(changed):
            host[changed] = new
        return host.to(self.device, non_blocking=True) if pin else host
