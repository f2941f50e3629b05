"""Answers BlockRequests (docs/protocol.md, "Block transfer").

Requests for one artifact arriving within ``coalesce_ms`` are merged: a block
two or more devices want goes once to ``artifacts/{wire_sha}/blocks`` (the
broker fans it out), a block only one device wants goes to that device's own
``blocks`` topic. Work per request is bounded: ranges are clipped to the
artifact's block count and each device has a token bucket of blocks.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller.artifacts import ArtifactStore
from controller.db.models import Deployment, Device
from controller.errors import ControllerError
from controller.metrics import ControllerMetrics, RateLimitedLog
from controller.services.models import find_by_wire_sha
from shared.blocks import block_count, encode_block
from shared.messages import BlockRequest
from shared.topics import Topics

log = logging.getLogger("edgefleet.controller.blocks")

#: publish(topic, payload) -> None, QoS 1, not retained.
RawPublish = Callable[[str, bytes], None]


@dataclass(frozen=True)
class _Artifact:
    wire_sha256: str
    wire: bytes
    block_size: int
    count: int

    def frame(self, index: int) -> bytes:
        data = self.wire[index * self.block_size : (index + 1) * self.block_size]
        return encode_block(self.wire_sha256, index, self.count, len(self.wire), data)


@dataclass
class _Pending:
    artifact: _Artifact
    due: float
    wants: dict[str, set[int]] = field(default_factory=dict)


@dataclass
class _Bucket:
    tokens: float
    at: float


class BlockServer:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        topics: Topics,
        metrics: ControllerMetrics,
        publish: RawPublish,
        default_block_size: int,
        coalesce_ms: int = 200,
        rate_per_device: float = 2000.0,
        burst: int = 8192,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._topics = topics
        self._metrics = metrics
        self._publish = publish
        self._default_block_size = default_block_size
        self._window = coalesce_ms / 1000.0
        self._rate = rate_per_device
        self._burst = float(burst)
        self._queue: queue.Queue[BlockRequest | None] = queue.Queue(maxsize=10_000)
        self._pending: dict[str, _Pending] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._artifacts: dict[str, tuple[float, _Artifact | None]] = {}
        self._thread: threading.Thread | None = None
        self._rl = RateLimitedLog(log)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgefleet-blocks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def submit(self, request: BlockRequest) -> None:
        """Called from paho's thread: enqueue only."""
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            self._metrics.messages_rejected.labels("blocks_get", "overloaded").inc()
            self._rl.warning("full", "block request queue full; dropping requests (agents will re-request)")

    # -- worker --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            timeout = None
            if self._pending:
                timeout = max(0.0, min(p.due for p in self._pending.values()) - time.monotonic())
            try:
                req = self._queue.get(timeout=timeout)
            except queue.Empty:
                req = ...  # type: ignore[assignment]
            if req is None:
                return
            try:
                if isinstance(req, BlockRequest):
                    self._accept(req)
                self._flush_due()
            except Exception:  # one bad request or publish error must not stop block serving
                log.exception("block server error")

    def _accept(self, req: BlockRequest) -> None:
        art = self._artifact(req.sha256)
        if art is None:
            self._metrics.messages_rejected.labels("blocks_get", "unknown_artifact").inc()
            self._rl.warning(
                f"sha:{req.sha256}", "block request from %s for unknown artifact %s", req.device_id, req.sha256
            )
            return
        if not self._registered(req.device_id):
            self._metrics.messages_rejected.labels("blocks_get", "unknown_device").inc()
            self._rl.warning(f"dev:{req.device_id}", "block request from unregistered device %r ignored", req.device_id)
            return
        wanted: set[int] = set()
        bad = 0
        for start, end in req.ranges:
            if start >= art.count:
                bad += 1
                continue
            wanted.update(range(start, min(end, art.count)))
        if bad:
            self._metrics.messages_rejected.labels("blocks_get", "bad_range").inc()
            self._rl.warning(
                f"range:{req.device_id}",
                "block request from %s has %d range(s) beyond %d blocks",
                req.device_id,
                bad,
                art.count,
            )
        if not wanted:
            return
        wanted = self._take_tokens(req.device_id, wanted)
        if not wanted:
            self._metrics.messages_rejected.labels("blocks_get", "rate_limited").inc()
            return
        self._metrics.block_requests.inc()
        pending = self._pending.get(art.wire_sha256)
        if pending is None:
            pending = _Pending(art, due=time.monotonic() + self._window)
            self._pending[art.wire_sha256] = pending
        pending.wants.setdefault(req.device_id, set()).update(wanted)

    def _take_tokens(self, device_id: str, wanted: set[int]) -> set[int]:
        now = time.monotonic()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        allowed = int(bucket.tokens)
        if allowed >= len(wanted):
            bucket.tokens -= len(wanted)
            return wanted
        bucket.tokens -= allowed
        return set(sorted(wanted)[:allowed])

    def _flush_due(self) -> None:
        now = time.monotonic()
        for sha in [s for s, p in self._pending.items() if p.due <= now]:
            self._send(self._pending.pop(sha))

    def _send(self, pending: _Pending) -> None:
        art = pending.artifact
        demand: dict[int, int] = {}
        for indices in pending.wants.values():
            for i in indices:
                demand[i] = demand.get(i, 0) + 1
        broadcast = sorted(i for i, n in demand.items() if n >= 2)
        topic = self._topics.artifact_blocks(art.wire_sha256)
        for i in broadcast:
            frame = art.frame(i)
            self._publish(topic, frame)
            self._metrics.blocks_sent.labels("broadcast").inc()
            self._metrics.block_bytes_sent.labels("broadcast").inc(len(frame))
        for device_id, indices in pending.wants.items():
            own = sorted(i for i in indices if demand[i] == 1)
            dtopic = self._topics.blocks(device_id)
            for i in own:
                frame = art.frame(i)
                self._publish(dtopic, frame)
                self._metrics.blocks_sent.labels("unicast").inc()
                self._metrics.block_bytes_sent.labels("unicast").inc(len(frame))
        log.debug(
            "artifact %s: %d broadcast, %d unicast blocks for %d device(s)",
            art.wire_sha256[:12],
            len(broadcast),
            len(demand) - len(broadcast),
            len(pending.wants),
        )

    # -- lookups -------------------------------------------------------------
    def _registered(self, device_id: str) -> bool:
        with self._sessions() as session:
            return session.scalar(select(Device.device_id).where(Device.device_id == device_id)) is not None

    def _artifact(self, sha256: str) -> _Artifact | None:
        now = time.monotonic()
        cached = self._artifacts.get(sha256)
        if cached is not None and (cached[1] is not None or now - cached[0] < 2.0):
            return cached[1]
        art: _Artifact | None = None
        with self._sessions() as session:
            mv = find_by_wire_sha(session=session, sha256=sha256)
            if mv is not None:
                block_size = (
                    session.scalar(
                        select(Deployment.block_size)
                        .where(Deployment.model_version_id == mv.id)
                        .order_by(Deployment.created_at.desc())
                        .limit(1)
                    )
                    or self._default_block_size
                )
                try:
                    wire = self._store.read_wire(mv.sha256, mv.encoding, mv.wire_sha256)
                except ControllerError as exc:
                    log.error("cannot serve artifact %s: %s", sha256, exc)
                    wire = b""
                if wire:
                    art = _Artifact(mv.wire_sha256, wire, block_size, block_count(len(wire), block_size))
        if len(self._artifacts) > 256:
            self._artifacts.clear()
        self._artifacts[sha256] = (now, art)
        return art


__all__ = ["BlockServer"]
