"""The interface every inference backend keeps (docs/ARCHITECTURE.md, "Runtime")."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..artifact import ModelInfo

__all__ = ["Backend"]


class Backend(ABC):
    """Runs a built artifact: ``activate()`` once, ``infer(batch)`` many times, ``close()`` at the end.

    Attributes:
        name: registry name (``onnxruntime-cpu``…).
        path: the artifact being run.
        info: the dfx record read from the artifact (spec, labels, threshold).
        min_batch / max_batch: batch sizes the artifact accepts (an engine's optimisation profile).
        device: human-readable device description.
    """

    name: str = ""
    min_batch: int = 1
    max_batch: int | None = None

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.info: ModelInfo
        self.device = "cpu"

    @abstractmethod
    def activate(self) -> None:
        """Loads the artifact onto its device (separate from construction: build, then run)."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N,) float32 for a float32 NCHW batch whose N is within [min_batch, max_batch]."""

    def prepare(self, batch_size: int) -> int:
        """Tells an activated backend the batch size of the coming run; returns the size it will be called with.

        A backend that plans per input shape (onnxruntime's CUDA provider) fixes its shape here, so padding keeps
        every call at that one shape, and warms it up, so the plan is built before the first real batch.
        """
        return batch_size

    @contextmanager
    def input_buffer(self, buf: np.ndarray) -> Iterator[None]:
        """Scope in which ``infer`` gets batches that are views of ``buf`` (the pipeline's decode target).

        A GPU backend page-locks ``buf`` for the scope, so batches go to the device without a staging copy;
        the default does nothing.
        """
        yield

    def close(self) -> None:
        """Releases device memory and sessions."""

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
