"""Apply decoded device messages to the store, a batch per transaction.

Runs on the ingest worker thread only. Messages from devices that are not
registered are returned as unknown (the caller counts and logs them) and never
stored: a stranger must not be able to grow the database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from controller.db.models import DeploymentDevice, Device, EventRow, TelemetryRow
from controller.services.deployments import TERMINAL
from shared.messages import DeviceState, Event, EventKind, Telemetry

#: Event kinds that move a device's state within a deployment.
PROGRESS_KINDS = frozenset(k.value for k in EventKind) - {EventKind.COMMAND_ACK.value}


@dataclass(frozen=True)
class Incoming:
    kind: str  # "state" | "telemetry" | "events"
    message: DeviceState | Telemetry | Event
    received_at: float


@dataclass
class BatchResult:
    stored: dict[str, int]
    unknown: list[Incoming]
    p95s: list[float]


def apply_batch(*, session: Session, items: Sequence[Incoming]) -> BatchResult:
    result = BatchResult(stored={}, unknown=[], p95s=[])
    ids = {i.message.device_id for i in items}
    devices = {d.device_id: d for d in session.scalars(select(Device).where(Device.device_id.in_(ids))).all()}
    for item in items:
        device = devices.get(item.message.device_id)
        if device is None:
            result.unknown.append(item)
            continue
        msg = item.message
        if isinstance(msg, DeviceState):
            _apply_state(device, msg, item.received_at)
        elif isinstance(msg, Telemetry):
            p95 = _apply_telemetry(session, device, msg, item.received_at)
            if p95 is not None:
                result.p95s.append(p95)
        else:
            _apply_event(session, device, msg, item.received_at)
        result.stored[item.kind] = result.stored.get(item.kind, 0) + 1
    session.commit()
    return result


def _apply_state(device: Device, msg: DeviceState, received_at: float) -> None:
    # The Will of an older session can arrive after the next session's birth; it must not
    # mark the live device offline. Births are always taken (an agent may reset its counter).
    if not msg.online and device.online and msg.session < device.session:
        return
    device.online = msg.online
    device.session = msg.session
    device.agent_version = msg.agent_version[:64]
    device.update_state = msg.update_state[:32]
    device.state = msg.model_dump(mode="json")
    device.last_seen = received_at


def _apply_telemetry(session: Session, device: Device, msg: Telemetry, received_at: float) -> float | None:
    lat = msg.latency
    session.add(
        TelemetryRow(
            device_id=device.device_id,
            seq=msg.seq,
            ts=msg.ts,
            received_at=received_at,
            interval_s=msg.interval_s,
            count=msg.count,
            errors=msg.errors,
            p50_ms=lat.p50_ms if lat else None,
            p95_ms=lat.p95_ms if lat else None,
            p99_ms=lat.p99_ms if lat else None,
            max_ms=lat.max_ms if lat else None,
            mean_ms=lat.mean_ms if lat else None,
            cpu_percent=msg.cpu_percent,
            rss_bytes=msg.rss_bytes,
            temperature_c=msg.temperature_c,
            battery_pct=msg.battery_pct,
            model_name=msg.model.name if msg.model else None,
            model_version=msg.model.version if msg.model else None,
        )
    )
    device.last_telemetry = msg.model_dump(mode="json")
    device.last_seen = received_at
    if lat is not None:
        device.last_p95_ms = lat.p95_ms
        return lat.p95_ms
    return None


def _apply_event(session: Session, device: Device, msg: Event, received_at: float) -> None:
    session.add(
        EventRow(
            device_id=device.device_id,
            kind=msg.kind.value,
            deployment_id=msg.deployment_id,
            command_id=msg.command_id,
            model=msg.model.model_dump(mode="json") if msg.model else None,
            reason=msg.reason[:256] if msg.reason else None,
            detail=msg.detail,
            progress=msg.progress,
            ts=msg.ts,
            received_at=received_at,
        )
    )
    device.last_seen = received_at
    if msg.deployment_id is None or msg.kind.value not in PROGRESS_KINDS:
        return
    row = session.get(DeploymentDevice, (msg.deployment_id[:32], device.device_id))
    if row is None or row.state == "superseded":
        return
    if row.state in TERMINAL and msg.kind.value not in ("rolled_back", "failed"):
        # Late or duplicated progress after the outcome; only a rollback can follow "active".
        return
    row.state = msg.kind.value
    row.reason = msg.reason[:256] if msg.reason else None
    row.detail = msg.detail
    row.progress = msg.progress
    row.updated_at = time.time()


def prune(*, session: Session, older_than: float) -> int:
    """Delete telemetry and events received before ``older_than`` (epoch s); returns rows removed."""
    removed = 0
    for table in (TelemetryRow, EventRow):
        result = session.execute(delete(table).where(table.received_at < older_than))
        removed += int(getattr(result, "rowcount", 0) or 0)
    session.commit()
    return removed


__all__ = ["BatchResult", "Incoming", "apply_batch", "prune"]
