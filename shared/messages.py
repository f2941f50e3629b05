"""Pydantic models for every JSON message of the MQTT contract (v1).

Models are strict about shape (``extra="forbid"``) so a peer that sends
something we do not understand is told so, instead of being half-parsed.
Blocks are not here: they travel as raw bytes (see :mod:`shared.blocks`).
"""

from __future__ import annotations

import time
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.version import SCHEMA_VERSION

DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Runtime = Literal["onnxruntime", "litert"]
Encoding = Literal["identity", "zstd"]


def now() -> float:
    return time.time()


class Message(BaseModel):
    """Base of every wire message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {v} (this build speaks {SCHEMA_VERSION})")
        return v


class ModelRef(BaseModel):
    """Which model a device runs: name, monotonically increasing version, content hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=128)]
    version: Annotated[int, Field(ge=0)]
    sha256: Sha256


# --- device -> controller ------------------------------------------------


class DeviceState(Message):
    """Birth (online=True) and death (online=False, the Will) on the retained state topic."""

    device_id: DeviceId
    online: bool
    session: Annotated[int, Field(ge=0)]
    agent_version: str = ""
    profile: str = ""
    runtimes: list[Runtime] = Field(default_factory=list)
    active_model: ModelRef | None = None
    previous_model: ModelRef | None = None
    update_state: str = "idle"
    ts: float = Field(default_factory=now)


class LatencyStats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    p50_ms: Annotated[float, Field(ge=0)]
    p95_ms: Annotated[float, Field(ge=0)]
    p99_ms: Annotated[float, Field(ge=0)]
    max_ms: Annotated[float, Field(ge=0)]
    mean_ms: Annotated[float, Field(ge=0)]


class Telemetry(Message):
    """One aggregated report per interval; never one message per inference."""

    device_id: DeviceId
    seq: Annotated[int, Field(ge=0)]
    ts: float = Field(default_factory=now)
    interval_s: Annotated[float, Field(gt=0)]
    count: Annotated[int, Field(ge=0)]
    errors: Annotated[int, Field(ge=0)] = 0
    latency: LatencyStats | None = None
    cpu_percent: Annotated[float, Field(ge=0)] | None = None
    rss_bytes: Annotated[int, Field(ge=0)] | None = None
    temperature_c: float | None = None
    battery_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    model: ModelRef | None = None


class EventKind(str, Enum):
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    SELF_TESTING = "self_testing"
    SWITCHING = "switching"
    WATCHING = "watching"
    ACTIVE = "active"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"  # a message (manifest, command) refused before any work
    COMMAND_ACK = "command_ack"


class Event(Message):
    """Update progress and failures; ``reason`` is a short code (see errors.VerificationError)."""

    device_id: DeviceId
    kind: EventKind
    deployment_id: str | None = None
    command_id: str | None = None
    model: ModelRef | None = None
    reason: str | None = None
    detail: str | None = None
    progress: Annotated[float, Field(ge=0, le=1)] | None = None
    ts: float = Field(default_factory=now)


class BlockRequest(Message):
    """Per-device repair: the agent asks for the blocks it misses, as [start, end) ranges."""

    device_id: DeviceId
    sha256: Sha256
    ranges: Annotated[list[tuple[int, int]], Field(min_length=1, max_length=1024)]
    request_id: str = ""

    @field_validator("ranges")
    @classmethod
    def _valid_ranges(cls, v: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for start, end in v:
            if start < 0 or end <= start:
                raise ValueError(f"bad block range [{start}, {end})")
        return v


# --- controller -> device -------------------------------------------------


class SelfTestVector(BaseModel):
    """One input and the output the controller measured for it.

    The agent runs the input after loading and compares with ``atol``; for
    classifiers ``expected_top1`` is enough and survives quantization noise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_shape: list[int]
    input_dtype: Literal["float32", "int8", "uint8", "int64"] = "float32"
    data: list[float]
    expected: list[float] | None = None
    expected_top1: int | None = None
    atol: Annotated[float, Field(ge=0)] = 1e-3


class DesiredState(Message):
    """Signed desired-state manifest, retained per device.

    ``sha256``/``size`` describe the model file the runtime loads;
    ``wire_sha256``/``wire_size`` describe the bytes that travel in blocks
    (different only when ``encoding`` is not identity).
    """

    device_id: DeviceId
    deployment_id: str
    model: ModelRef
    runtime: Runtime
    profile: str
    size: Annotated[int, Field(gt=0)]
    encoding: Encoding = "identity"
    wire_sha256: Sha256
    wire_size: Annotated[int, Field(gt=0)]
    block_size: Annotated[int, Field(gt=0, le=1 << 20)]
    block_count: Annotated[int, Field(gt=0)]
    self_test: list[SelfTestVector] = Field(default_factory=list, max_length=64)
    allow_downgrade: bool = False
    issued_at: float = Field(default_factory=now)
    expires_at: float | None = None
    key_id: str = ""
    signature: str = ""

    @property
    def sha256(self) -> str:
        return self.model.sha256


class CommandKind(str, Enum):
    ROLLBACK = "rollback"
    SET_INTERVAL = "set_interval"
    RELOAD_MODEL = "reload_model"
    PING = "ping"


class Command(Message):
    """Ad-hoc command; signed like a manifest since rollback can downgrade a device."""

    device_id: DeviceId
    command_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: CommandKind
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: float = Field(default_factory=now)
    expires_at: float | None = None
    key_id: str = ""
    signature: str = ""


class ControllerState(Message):
    """Controller presence, retained; the controller's Will sets online=False."""

    online: bool
    controller_id: str = ""
    ts: float = Field(default_factory=now)


#: Models with a canonical signed form.
Signed = DesiredState | Command

__all__ = [
    "BlockRequest",
    "Command",
    "CommandKind",
    "ControllerState",
    "DesiredState",
    "DeviceState",
    "Encoding",
    "Event",
    "EventKind",
    "LatencyStats",
    "Message",
    "ModelRef",
    "Runtime",
    "SelfTestVector",
    "Signed",
    "Telemetry",
]
