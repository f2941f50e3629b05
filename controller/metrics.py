"""Prometheus metrics, one registry per app so several controllers can live in one test process."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "edgefleet_controller"


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_ingested = Counter(
            f"{PREFIX}_messages_ingested", "MQTT messages accepted, by kind", ["kind"], registry=r
        )
        self.messages_rejected = Counter(
            f"{PREFIX}_messages_rejected",
            "MQTT messages refused, by topic kind and reason",
            ["kind", "reason"],
            registry=r,
        )
        self.devices_online = Gauge(
            f"{PREFIX}_devices_online", "Registered devices whose last state is online", registry=r
        )
        self.devices_registered = Gauge(f"{PREFIX}_devices_registered", "Registered devices", registry=r)
        self.deployment_devices = Gauge(
            f"{PREFIX}_deployment_devices", "Deployment targets by state", ["state"], registry=r
        )
        self.block_requests = Counter(f"{PREFIX}_block_requests", "BlockRequests accepted", registry=r)
        self.blocks_sent = Counter(f"{PREFIX}_blocks_sent", "Blocks published, by mode", ["mode"], registry=r)
        self.block_bytes_sent = Counter(
            f"{PREFIX}_block_bytes_sent", "Block bytes published, by mode", ["mode"], registry=r
        )
        self.telemetry_p95 = Histogram(
            f"{PREFIX}_telemetry_p95_latency_ms",
            "p95 inference latency reported by devices (ms)",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000),
            registry=r,
        )
        self.ingest_queue = Gauge(f"{PREFIX}_ingest_queue_depth", "Decoded messages waiting for the DB", registry=r)
        self.ingest_dropped = Counter(f"{PREFIX}_ingest_dropped", "Messages dropped: ingest queue full", registry=r)
        self.http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.desired_published = Counter(f"{PREFIX}_desired_published", "Desired-state manifests published", registry=r)
        self.rollout_halts = Counter(
            f"{PREFIX}_rollout_halts",
            "Rollouts halted by a gate (failure, p95, p95_regression) or aborted by an operator (manual)",
            ["reason"],
            registry=r,
        )
        self.rollouts = Gauge(f"{PREFIX}_rollouts", "Wave-based rollouts by status", ["status"], registry=r)


class RateLimitedLog:
    """Logs the first occurrence per key, then at most once per ``interval_s`` with a suppressed count.

    A misbehaving device can send thousands of bad messages a second; the log
    must stay readable and the disk must not fill.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._log = logger
        self._interval = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        last, suppressed = self._last.get(key, (float("-inf"), 0))
        if now - last >= self._interval:
            suffix = f" ({suppressed} similar suppressed)" if suppressed else ""
            self._log.warning(msg + suffix, *args, exc_info=exc_info)
            self._last[key] = (now, 0)
        else:
            self._last[key] = (last, suppressed + 1)
        if len(self._last) > 10_000:
            self._last.clear()


__all__ = ["PREFIX", "ControllerMetrics", "RateLimitedLog"]
