"""Counters for refused input, logged once per N so a flood cannot flood the log too.

Malformed payloads are expected on a shared broker (buggy peers, attackers,
truncation); the agent counts them by ``source:reason`` for ``status()``
and keeps going.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("edgefleet.agent")

LOG_EVERY = 100


class DropCounters:
    def __init__(self, log_every: int = LOG_EVERY) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._log_every = log_every

    def drop(self, source: str, reason: str, detail: object = "") -> None:
        key = f"{source}:{reason}"
        with self._lock:
            self._counts[key] += 1
            n = self._counts[key]
        if n == 1 or n % self._log_every == 0:
            log.warning("dropped %s message (%s, %d so far): %s", source, reason, n, detail)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self, source: str | None = None) -> int:
        with self._lock:
            return sum(v for k, v in self._counts.items() if source is None or k.startswith(source + ":"))


__all__ = ["DropCounters"]
