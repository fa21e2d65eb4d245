"""Latency measurement: warm-up by time, then at least N runs and T seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Timing", "measure"]


@dataclass
class Timing:
    """Per-batch latencies in milliseconds and the throughput they imply."""

    batch_size: int
    runs: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float

    @property
    def ms_per_image_p50(self) -> float:
        """Median latency divided by the batch size."""
        return self.p50_ms / self.batch_size


def measure(fn: Callable[[], object], batch_size: int, warmup_s: float = 0.5, min_runs: int = 10,
            min_s: float = 1.0, max_runs: int = 100_000) -> Timing:
    """Times ``fn`` (which must block until its work is done, device included)."""
    t_end = time.perf_counter() + warmup_s
    fn()
    while time.perf_counter() < t_end:
        fn()
    lat = []
    t0 = time.perf_counter()
    while (len(lat) < min_runs or time.perf_counter() - t0 < min_s) and len(lat) < max_runs:
        s = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - s) * 1e3)
    a = np.array(lat)
    return Timing(batch_size, len(a), float(a.mean()), *(float(np.percentile(a, q)) for q in (50, 90, 99)),
                  images_per_s=batch_size * 1e3 / float(a.mean()))
