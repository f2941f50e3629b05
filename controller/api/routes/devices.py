from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from controller.api.deps import AdminAuth, BridgeDep, ReadAuth, SessionDep, SigningKeyDep
from controller.api.schemas import CommandCreate, CommandOut, DeviceCreate, DeviceOut, EventOut, TelemetryOut
from controller.services import devices as svc
from controller.services.commands import send_command

router = APIRouter(prefix="/devices", tags=["devices"])

Limit = Annotated[int, Query(ge=1, le=10_000)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DeviceOut, dependencies=[AdminAuth])
def create_device(body: DeviceCreate, session: SessionDep) -> DeviceOut:
    device = svc.create_device(
        session=session, device_id=body.device_id, profile=body.profile, group=body.group, tags=body.tags
    )
    return DeviceOut.of(device)


@router.get("", response_model=list[DeviceOut], dependencies=[ReadAuth])
def list_devices(
    session: SessionDep,
    profile: str | None = None,
    group: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DeviceOut]:
    """Devices ordered by id; ``limit``/``offset`` page through large fleets (default: all)."""
    found = svc.list_devices(session=session, profile=profile, group=group, limit=limit, offset=offset)
    return [DeviceOut.of(d) for d in found]


@router.get("/{device_id}", response_model=DeviceOut, dependencies=[ReadAuth])
def get_device(device_id: str, session: SessionDep) -> DeviceOut:
    return DeviceOut.of(svc.get_device(session=session, device_id=device_id))


@router.get("/{device_id}/telemetry", response_model=list[TelemetryOut], dependencies=[ReadAuth])
def device_telemetry(device_id: str, session: SessionDep, limit: Limit = 100) -> list[TelemetryOut]:
    return [TelemetryOut.of(r) for r in svc.recent_telemetry(session=session, device_id=device_id, limit=limit)]


@router.get("/{device_id}/events", response_model=list[EventOut], dependencies=[ReadAuth])
def device_events(device_id: str, session: SessionDep, limit: Limit = 100) -> list[EventOut]:
    return [EventOut.of(r) for r in svc.recent_events(session=session, device_id=device_id, limit=limit)]


@router.post(
    "/{device_id}/commands",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CommandOut,
    dependencies=[AdminAuth],
)
def device_command(
    device_id: str, body: CommandCreate, session: SessionDep, key: SigningKeyDep, bridge: BridgeDep
) -> CommandOut:
    """Send a signed command; the agent answers with a command_ack (or rejected) event carrying command_id."""
    command = send_command(
        session=session,
        key=key,
        device_id=device_id,
        kind=body.kind,
        args=body.args,
        ttl_s=body.ttl_s,
        publish=bridge.publish_command if bridge is not None else None,
    )
    return CommandOut(
        command_id=command.command_id,
        device_id=command.device_id,
        kind=command.kind,
        args=command.args,
        issued_at=command.issued_at,
        expires_at=command.expires_at,
    )
