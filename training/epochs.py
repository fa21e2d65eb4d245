"""Every epoch's batches from one sampler, so a run's DataLoader and its workers start once.

A DataLoader made per epoch restarts its worker processes and refills its prefetch queue every epoch; on a GPU
that restart is a gap of the order of an epoch of Meso-4 (4,853 images at 20,000 img/s take a quarter of a second).
Here one loader serves the whole run: each item is ``(epoch, index)``, so the workers — which never see the
trainer's objects change — still seed each sample's augmentation from (seed, epoch, index) alone
(:meth:`~dfx.training.data.FaceDataset.__getitem__`), and the loader keeps prefetching across epoch boundaries.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler

__all__ = ["RunBatches", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's draws (its sampling order, and the training step's own randomness)."""
    return seed * 1_000_003 + epoch


class RunBatches(Sampler[list[tuple[int, int]]]):
    """Batches of ``(epoch, index)`` for ``epochs``, each epoch drawn as a per-epoch DataLoader would draw it.

    Args:
        n_items: the data set's length.
        batch_size: items per batch; the short last batch is dropped when there is more than one batch.
        steps_per_epoch: at most this many batches per epoch.
        seed: the run's seed (the order of epoch ``e`` comes from :func:`epoch_seed`).
        epochs: the epochs to serve, in order (a resumed run starts at its next epoch).
        weights: per-item sampling weights (drawn with replacement, ``steps × batch`` of them); None: a shuffle.
    """

    def __init__(self, n_items: int, batch_size: int, steps_per_epoch: int, seed: int, epochs: range,
                 weights: np.ndarray | None = None):
        self.n_items, self.batch_size, self.steps = n_items, batch_size, steps_per_epoch
        self.seed, self.epochs, self.weights = seed, epochs, weights

    def batches(self, epoch: int) -> list[list[int]]:
        """Epoch ``epoch``'s batches of item indices."""
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        if self.weights is not None:
            n = min(self.steps * self.batch_size, self.n_items)
            order = list(WeightedRandomSampler(self.weights, n, generator=gen))
        else:
            order = list(RandomSampler(range(self.n_items), generator=gen))
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.n_items > self.batch_size and chunks and len(chunks[-1]) < self.batch_size:
            chunks.pop()  # drop_last, as the per-epoch loader did
        return chunks[:self.steps]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for epoch in self.epochs:
            for batch in self.batches(epoch):
                yield [(epoch, i) for i in batch]
