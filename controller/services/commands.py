"""Signed ad-hoc commands (rollback, set_interval, reload_model, ping) to one device."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from controller.errors import InvalidRequestError, UnavailableError
from controller.services.devices import get_device
from shared import codec, signing
from shared.messages import Command, CommandKind

log = logging.getLogger("edgefleet.controller.commands")

#: publish(device_id, payload): QoS 1, not retained (a stale command must not run at the next boot).
CommandPublisher = Callable[[str, bytes], None]


def send_command(
    *,
    session: Session,
    key: Ed25519PrivateKey,
    device_id: str,
    kind: CommandKind,
    args: dict[str, Any] | None = None,
    ttl_s: float = 300.0,
    publish: CommandPublisher | None,
) -> Command:
    get_device(session=session, device_id=device_id)
    if publish is None:
        raise UnavailableError("cannot send commands: the controller's MQTT side is disabled")
    if kind is CommandKind.SET_INTERVAL:
        interval = (args or {}).get("interval_s")
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            raise InvalidRequestError("set_interval needs args.interval_s > 0")
    now = time.time()
    command = signing.sign(
        Command(
            device_id=device_id,
            command_id=uuid.uuid4().hex[:16],
            kind=kind,
            args=dict(args or {}),
            issued_at=now,
            expires_at=now + ttl_s,
        ),
        key,
    )
    payload = codec.encode(command)
    if len(payload) > codec.MAX_JSON_PAYLOAD:
        raise InvalidRequestError("command arguments are too large")
    publish(device_id, payload)
    log.info("command %s (%s) sent to %s", command.command_id, kind.value, device_id)
    return command


__all__ = ["CommandPublisher", "send_command"]
