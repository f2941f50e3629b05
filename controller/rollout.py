"""The rollout scheduler thread: advances wave-based rollouts every ``rollout_interval_s``.

Only one controller instance advances rollouts at a time: the holder of the ``scheduler_lease``
row named ``rollouts`` (holder id + expiry, renewed once half of it has passed, released at stop). Another
replica on the same database waits and takes over when the lease expires (``rollout_lease_s``).
The logic itself is in controller.services.rollout; this module only runs it and publishes.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from controller.db.models import SchedulerLease
from controller.metrics import ControllerMetrics
from controller.services import rollout as svc

log = logging.getLogger("edgefleet.controller.rollout")

LEASE_NAME = "rollouts"


def acquire_lease(*, session: Session, holder: str, ttl_s: float, now: float | None = None) -> bool:
    """Take or renew the lease; True when ``holder`` holds it until now + ttl_s."""
    now = time.time() if now is None else now
    result = session.execute(
        update(SchedulerLease)
        .where(
            SchedulerLease.name == LEASE_NAME,
            (SchedulerLease.holder == holder) | (SchedulerLease.expires_at < now),
        )
        .values(holder=holder, expires_at=now + ttl_s)
    )
    if int(getattr(result, "rowcount", 0) or 0) == 1:
        session.commit()
        return True
    if session.scalar(select(SchedulerLease.name).where(SchedulerLease.name == LEASE_NAME)) is not None:
        session.rollback()
        return False
    try:
        session.add(SchedulerLease(name=LEASE_NAME, holder=holder, expires_at=now + ttl_s))
        session.commit()
        return True
    except IntegrityError:  # another instance inserted it first
        session.rollback()
        return False


def release_lease(*, session: Session, holder: str) -> None:
    session.execute(
        update(SchedulerLease)
        .where(SchedulerLease.name == LEASE_NAME, SchedulerLease.holder == holder)
        .values(expires_at=0.0)
    )
    session.commit()


def lease_holder(*, session: Session) -> tuple[str, float] | None:
    row = session.get(SchedulerLease, LEASE_NAME)
    return (row.holder, row.expires_at) if row is not None else None


class RolloutScheduler:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        key: Ed25519PrivateKey,
        publish: Callable[[str, bytes], None] | None,
        metrics: ControllerMetrics,
        controller_id: str = "controller",
        interval_s: float = 0.5,
        lease_s: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._key = key
        self._publish = publish
        self._metrics = metrics
        self.holder = f"{controller_id}-{uuid.uuid4().hex[:8]}"
        self.interval_s = interval_s
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.has_lease = False
        self._lease_until = 0.0
        self._warned_unpublished = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgefleet-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.has_lease:
            try:
                with self._sessions() as session:
                    release_lease(session=session, holder=self.holder)
            except Exception:
                log.debug("could not release the scheduler lease", exc_info=True)
            self.has_lease = False

    def wake(self) -> None:
        """Run a step now (after a create, resume or abort) instead of at the next tick."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except OperationalError as exc:  # e.g. SQLite busy beyond busy_timeout: next tick
                log.warning("rollout step: database busy (%s)", exc.__class__.__name__)
            except Exception:
                log.exception("rollout step failed")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def tick(self) -> bool:
        """One step if this instance holds the lease; returns whether it did."""
        with self._sessions() as session:
            now = time.time()
            if self.has_lease and self._lease_until - now > self.lease_s / 2:
                held = True  # renewed recently: save a write per tick
            else:
                held = acquire_lease(session=session, holder=self.holder, ttl_s=self.lease_s, now=now)
                if held:
                    self._lease_until = now + self.lease_s
            if held != self.has_lease:
                log.info("rollout scheduler lease %s by %s", "taken" if held else "lost", self.holder)
            self.has_lease = held
            if not held:
                return False
            result = svc.advance(session=session, key=self._key)
        for kind in result.halts:
            self._metrics.rollout_halts.labels(kind).inc()
        self.publish(result.payloads)
        return True

    def publish(self, payloads: svc.Payloads) -> None:
        if not payloads:
            return
        if self._publish is None:
            if not self._warned_unpublished:
                log.warning("rollout manifests recorded but not published: MQTT is disabled")
                self._warned_unpublished = True
            return
        for device_id, payload in payloads:
            self._publish(device_id, payload)


__all__ = ["LEASE_NAME", "RolloutScheduler", "acquire_lease", "lease_holder", "release_lease"]
