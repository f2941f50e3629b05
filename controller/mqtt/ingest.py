"""The ingest worker: drains decoded messages into the store in batches.

Paho's network thread only decodes and enqueues; every DB write happens here,
so a slow disk never stalls keep-alives or block publishing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from controller.metrics import ControllerMetrics, RateLimitedLog
from controller.services.ingest import Incoming, apply_batch

log = logging.getLogger("edgefleet.controller.ingest")


class Task:
    """A non-message job for the worker (e.g. republish desired state after a reconnect)."""

    def __init__(self, name: str, fn: Callable[[], None]) -> None:
        self.name = name
        self.fn = fn


Item = Incoming | Task


class IngestWorker:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        metrics: ControllerMetrics,
        batch_size: int = 500,
        maxsize: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._batch_size = batch_size
        self._queue: queue.Queue[Item | None] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._rl = RateLimitedLog(log)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgefleet-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def put(self, item: Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._metrics.ingest_dropped.inc()
            self._rl.warning("full", "ingest queue full (%d); dropping messages", self._queue.maxsize)
        self._metrics.ingest_queue.set(self._queue.qsize())

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch: list[Incoming] = []
            stop = False
            item: Item | None = first
            while item is not None:
                if isinstance(item, Task):
                    self._flush(batch)
                    batch = []
                    self._run_task(item)
                else:
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
            self._flush(batch)
            self._metrics.ingest_queue.set(self._queue.qsize())
            if stop:
                return

    def _run_task(self, task: Task) -> None:
        try:
            task.fn()
        except Exception:  # a failing task must not kill the worker
            log.exception("ingest task %s failed", task.name)

    def _flush(self, batch: list[Incoming]) -> None:
        if not batch:
            return
        try:
            self._store(batch)
        except Exception:
            if len(batch) == 1:
                item = batch[0]
                self._metrics.messages_rejected.labels(item.kind, "db_error").inc()
                self._rl.warning(
                    f"db:{item.kind}", "storing %s from %s failed", item.kind, item.message.device_id, exc_info=True
                )
                return
            # One poisoned message (a value the database refuses) must not cost the others: retry singly.
            for item in batch:
                self._flush([item])

    def _store(self, batch: list[Incoming]) -> None:
        with self._sessions() as session:
            result = apply_batch(session=session, items=batch)
        for kind, n in result.stored.items():
            self._metrics.messages_ingested.labels(kind).inc(n)
        for p95 in result.p95s:
            self._metrics.telemetry_p95.observe(p95)
        for item in result.unknown:
            self._metrics.messages_rejected.labels(item.kind, "unknown_device").inc()
            self._rl.warning(
                f"unknown:{item.message.device_id}",
                "%s from unregistered device %r ignored",
                item.kind,
                item.message.device_id,
            )


__all__ = ["IngestWorker", "Task"]
