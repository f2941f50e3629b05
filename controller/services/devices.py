"""Device registry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.db.models import Device, EventRow, TelemetryRow
from controller.errors import ConflictError, InvalidRequestError, NotFoundError
from shared.profiles import BUILTIN_PROFILES
from shared.topics import DEVICE_ID_RE


def check_profile(profile: str) -> str:
    if profile not in BUILTIN_PROFILES:
        raise InvalidRequestError(f"unknown profile {profile!r}; known: {', '.join(sorted(BUILTIN_PROFILES))}")
    return profile


def create_device(
    *, session: Session, device_id: str, profile: str, group: str | None = None, tags: Sequence[str] = ()
) -> Device:
    if not DEVICE_ID_RE.match(device_id):
        raise InvalidRequestError(f"invalid device id {device_id!r}: must match {DEVICE_ID_RE.pattern}")
    check_profile(profile)
    if session.get(Device, device_id) is not None:
        raise ConflictError(f"device {device_id!r} already exists")
    device = Device(device_id=device_id, profile=profile, group=group, tags=list(tags))
    session.add(device)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"device {device_id!r} already exists") from exc
    return device


def get_device(*, session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFoundError(f"unknown device {device_id!r}")
    return device


def list_devices(
    *,
    session: Session,
    profile: str | None = None,
    group: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Sequence[Device]:
    stmt = select(Device).order_by(Device.device_id).offset(offset).limit(limit)
    if profile is not None:
        stmt = stmt.where(Device.profile == profile)
    if group is not None:
        stmt = stmt.where(Device.group == group)
    return session.scalars(stmt).all()


def recent_telemetry(*, session: Session, device_id: str, limit: int = 100) -> Sequence[TelemetryRow]:
    get_device(session=session, device_id=device_id)
    stmt = select(TelemetryRow).where(TelemetryRow.device_id == device_id).order_by(TelemetryRow.id.desc()).limit(limit)
    return session.scalars(stmt).all()


def recent_events(*, session: Session, device_id: str, limit: int = 100) -> Sequence[EventRow]:
    get_device(session=session, device_id=device_id)
    stmt = select(EventRow).where(EventRow.device_id == device_id).order_by(EventRow.id.desc()).limit(limit)
    return session.scalars(stmt).all()


__all__ = ["check_profile", "create_device", "get_device", "list_devices", "recent_events", "recent_telemetry"]
