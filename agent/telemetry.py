"""Latency recording on the inference path and its per-interval aggregation.

``LatencyRecorder.record`` is on the hot path: one list store and two integer
updates, no lock.  Latencies go into a preallocated ring; readers (telemetry
interval, watch phase) remember the running ``count`` they last saw and read
the samples since then.  If more than the ring's capacity arrive in one
interval, the newest ``capacity`` are kept — percentiles from a bounded,
recent sample rather than unbounded memory.  Concurrent predict() callers can
in rare interleavings overwrite one sample; counts stay approximately right,
which is all telemetry needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.hardware import Hardware
from shared.messages import LatencyStats, ModelRef, Telemetry

DEFAULT_CAPACITY = 1 << 14


class LatencyRecorder:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity & (capacity - 1):
            raise ValueError("capacity must be a power of two")
        self._ring: list[float] = [0.0] * capacity
        self._mask = capacity - 1
        self.count = 0
        self.errors = 0

    def record(self, seconds: float) -> None:
        i = self.count
        self._ring[i & self._mask] = seconds
        self.count = i + 1

    def since(self, start: int) -> np.ndarray:
        """Latencies (seconds) recorded after the running count was ``start``, newest ``capacity`` at most."""
        end = self.count
        n = min(end - start, self._mask + 1)
        if n <= 0:
            return np.empty(0)
        ring = np.asarray(self._ring)
        idx = np.arange(end - n, end) & self._mask
        out: np.ndarray = ring[idx]
        return out


@dataclass
class Mark:
    """A reader's position in the recorder: count and errors when it last looked."""

    count: int = 0
    errors: int = 0

    @classmethod
    def now(cls, recorder: LatencyRecorder) -> Mark:
        return cls(recorder.count, recorder.errors)


@dataclass(frozen=True)
class Window:
    count: int
    errors: int
    latency: LatencyStats | None

    @property
    def error_rate(self) -> float:
        total = self.count + self.errors
        return self.errors / total if total else 0.0


def window_since(recorder: LatencyRecorder, mark: Mark) -> Window:
    """Aggregate everything after ``mark``."""
    samples = recorder.since(mark.count)
    return Window(
        count=recorder.count - mark.count,
        errors=recorder.errors - mark.errors,
        latency=latency_stats(samples) if samples.size else None,
    )


def latency_stats(seconds: np.ndarray) -> LatencyStats:
    ms = seconds * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return LatencyStats(
        p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99), max_ms=float(ms.max()), mean_ms=float(ms.mean())
    )


def build_telemetry(
    *, device_id: str, seq: int, interval_s: float, window: Window, hardware: Hardware, model: ModelRef | None
) -> Telemetry:
    """One report; hardware readings that fail or are out of range are sent as unknown (None)."""
    battery = hardware.battery_pct()
    return Telemetry(
        device_id=device_id,
        seq=seq,
        interval_s=interval_s,
        count=window.count,
        errors=window.errors,
        latency=window.latency,
        cpu_percent=hardware.cpu_percent(),
        rss_bytes=hardware.rss_bytes(),
        temperature_c=hardware.temperature_c(),
        battery_pct=None if battery is None else min(max(battery, 0.0), 100.0),
        model=model,
    )


__all__ = ["LatencyRecorder", "Mark", "Window", "build_telemetry", "latency_stats", "window_since"]
