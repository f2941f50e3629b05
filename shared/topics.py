"""The one place that builds and parses MQTT topic names.

Every other module goes through :class:`Topics`, so a change of layout or
root prefix is a change here only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from shared.errors import ProtocolError

DEFAULT_ROOT = "edgefleet/v1"
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class Channel(str, Enum):
    """What a topic carries; the value is the topic's last segment(s)."""

    STATE = "state"
    TELEMETRY = "telemetry"
    EVENTS = "events"
    DESIRED = "desired"
    COMMANDS = "commands"
    BLOCKS = "blocks"  # per-device repair replies, controller -> device
    BLOCKS_GET = "blocks/get"  # repair requests, device -> controller
    ARTIFACT_BLOCKS = "artifact-blocks"  # broadcast, one topic per artifact
    CONTROLLER_STATE = "controller-state"


@dataclass(frozen=True)
class ParsedTopic:
    channel: Channel
    device_id: str | None = None
    sha256: str | None = None


def validate_device_id(device_id: str) -> str:
    if not DEVICE_ID_RE.match(device_id):
        raise ProtocolError(f"invalid device id {device_id!r}: must match {DEVICE_ID_RE.pattern}")
    return device_id


def validate_sha256(sha256: str) -> str:
    if not SHA256_RE.match(sha256):
        raise ProtocolError(f"invalid sha256 {sha256!r}: must be 64 lowercase hex digits")
    return sha256


_DEVICE_CHANNELS = {c.value: c for c in (
    Channel.STATE, Channel.TELEMETRY, Channel.EVENTS, Channel.DESIRED,
    Channel.COMMANDS, Channel.BLOCKS, Channel.BLOCKS_GET,
)}


@dataclass(frozen=True)
class Topics:
    """Topic builders and the parser for one root prefix."""

    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        if not self.root or self.root.endswith("/") or any(c in self.root for c in "+#"):
            raise ValueError(f"invalid topic root {self.root!r}")

    # -- builders -------------------------------------------------------
    def device(self, device_id: str, channel: Channel) -> str:
        if channel not in _DEVICE_CHANNELS.values():
            raise ValueError(f"{channel} is not a per-device channel")
        return f"{self.root}/devices/{validate_device_id(device_id)}/{channel.value}"

    def state(self, device_id: str) -> str:
        return self.device(device_id, Channel.STATE)

    def telemetry(self, device_id: str) -> str:
        return self.device(device_id, Channel.TELEMETRY)

    def events(self, device_id: str) -> str:
        return self.device(device_id, Channel.EVENTS)

    def desired(self, device_id: str) -> str:
        return self.device(device_id, Channel.DESIRED)

    def commands(self, device_id: str) -> str:
        return self.device(device_id, Channel.COMMANDS)

    def blocks(self, device_id: str) -> str:
        return self.device(device_id, Channel.BLOCKS)

    def blocks_get(self, device_id: str) -> str:
        return self.device(device_id, Channel.BLOCKS_GET)

    def artifact_blocks(self, sha256: str) -> str:
        return f"{self.root}/artifacts/{validate_sha256(sha256)}/blocks"

    def controller_state(self) -> str:
        return f"{self.root}/controller/state"

    # -- subscription filters ------------------------------------------
    def all_devices(self, channel: Channel) -> str:
        """Wildcard filter over every device for one channel (controller side)."""
        return f"{self.root}/devices/+/{channel.value}"

    def shared(self, filter_: str, group: str = "controllers") -> str:
        """MQTT 5 shared subscription, so controller replicas split the load."""
        return f"$share/{group}/{filter_}"

    # -- parser -----------------------------------------------------------
    def parse(self, topic: str) -> ParsedTopic:
        """Parse a concrete topic; raises ProtocolError for anything else."""
        prefix = self.root + "/"
        if not topic.startswith(prefix):
            raise ProtocolError(f"topic {topic!r} is outside root {self.root!r}")
        parts = topic[len(prefix):].split("/")
        if parts == ["controller", "state"]:
            return ParsedTopic(Channel.CONTROLLER_STATE)
        if len(parts) == 3 and parts[0] == "artifacts" and parts[2] == "blocks":
            return ParsedTopic(Channel.ARTIFACT_BLOCKS, sha256=validate_sha256(parts[1]))
        if len(parts) in (3, 4) and parts[0] == "devices":
            channel = _DEVICE_CHANNELS.get("/".join(parts[2:]))
            if channel is not None:
                return ParsedTopic(channel, device_id=validate_device_id(parts[1]))
        raise ProtocolError(f"unknown topic {topic!r}")


__all__ = ["DEFAULT_ROOT", "Channel", "ParsedTopic", "Topics", "validate_device_id", "validate_sha256"]
