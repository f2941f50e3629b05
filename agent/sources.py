"""Input sources for the inference loop: recorded samples replayed at a fixed rate.

A simulated device has no camera or sensor; replaying a dataset at the rate
the real device would see gives the agent realistic load and gives telemetry
something to measure.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class ReplaySource:
    """Yields ``x[i:i+1]`` (one-sample batches) in order, wrapping around if ``loop``."""

    def __init__(self, x: np.ndarray, rate_hz: float, loop: bool = True) -> None:
        if rate_hz <= 0:
            raise ValueError("rate_hz must be positive")
        if len(x) == 0:
            raise ValueError("no samples to replay")
        self.x = np.ascontiguousarray(x)
        self.rate_hz = rate_hz
        self.loop = loop
        # Pre-slice once: the loop hands out views, never allocates per sample.
        self._samples = [self.x[i : i + 1] for i in range(len(self.x))]

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield from self._samples
            if not self.loop:
                return


__all__ = ["ReplaySource"]
