"""PyTorch eager as a :class:`~dfx.engine.backends.base.Backend`: the baseline every bench ratio is taken against.

It lives here, not in :mod:`dfx.engine`, because the runtime never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfx.engine.backends.base import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """Runs a dfx-train checkpoint in PyTorch eager mode (CUDA with channels_last when asked)."""

    name = "pytorch-eager"

    def __init__(self, path: str | Path, device: str = "cpu"):
        super().__init__(path)
        import torch

        from dfx.training.checkpoint import load_checkpoint

        self._torch = torch
        self.model, self.info = load_checkpoint(path)
        self.device = device
        self.n_params = sum(p.numel() for p in self.model.parameters())

    def activate(self) -> None:
        self.model.to(self.device)
        if self.device.startswith("cuda"):
            self.model.to(memory_format=self._torch.channels_last)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            if self.device.startswith("cuda"):
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().reshape(-1).cpu().numpy()

    def synchronize(self) -> None:
        """Waits for queued GPU work (timings must include it)."""
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()
