"""A thread that feeds a source into ``Agent.predict`` at the source's rate.

Pacing uses absolute deadlines (not ``sleep(period)`` after each call), so the
rate stays right when inference itself takes a noticeable part of the period;
if the device falls behind it does not try to catch up in a burst.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import numpy as np

from agent.sources import ReplaySource
from shared.errors import EdgefleetError

log = logging.getLogger("edgefleet.agent.inference")


class _Predictor(Protocol):
    skipped_no_model: int

    @property
    def has_model(self) -> bool: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...


class InferenceLoop:
    def __init__(self, agent: _Predictor, source: ReplaySource) -> None:
        self.agent = agent
        self.source = source
        self.calls = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("inference loop already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgefleet-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> InferenceLoop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        period = self.source.period_s
        next_at = time.monotonic()
        for x in self.source:
            if self._stop.is_set():
                return
            self._step(x)
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                if self._stop.wait(delay):
                    return
            else:
                next_at = time.monotonic()  # behind: drop the backlog rather than burst

    def _step(self, x: np.ndarray) -> None:
        if not self.agent.has_model:
            self.agent.skipped_no_model += 1
            return
        self.calls += 1
        try:
            self.agent.predict(x)
        except EdgefleetError as exc:  # counted by the agent; the loop keeps the device running
            self.errors += 1
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("inference failed (%d so far): %s", self.errors, exc)


__all__ = ["InferenceLoop"]
