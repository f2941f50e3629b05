"""Request and response bodies of the REST API."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.db.models import Device, EventRow, ModelVersion, TelemetryRow
from shared.messages import CommandKind

DeviceIdStr = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["lock-0001"])]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: DeviceIdStr
    profile: Annotated[str, Field(min_length=1, max_length=64, examples=["smart-lock"])]
    group: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    tags: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = Field(default_factory=list)


class DeviceOut(BaseModel):
    device_id: str
    profile: str
    group: str | None
    tags: list[str]
    created_at: float
    online: bool
    session: int
    agent_version: str
    update_state: str
    active_model: dict[str, Any] | None
    last_seen: float | None
    last_p95_ms: float | None
    state: dict[str, Any] | None
    last_telemetry: dict[str, Any] | None

    @classmethod
    def of(cls, d: Device) -> DeviceOut:
        return cls(
            device_id=d.device_id,
            profile=d.profile,
            group=d.group,
            tags=list(d.tags or []),
            created_at=d.created_at,
            online=bool(d.online),
            session=d.session,
            agent_version=d.agent_version,
            update_state=d.update_state,
            active_model=(d.state or {}).get("active_model"),
            last_seen=d.last_seen,
            last_p95_ms=d.last_p95_ms,
            state=d.state,
            last_telemetry=d.last_telemetry,
        )


class TelemetryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    ts: float
    received_at: float
    interval_s: float
    count: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    cpu_percent: float | None
    rss_bytes: int | None
    temperature_c: float | None
    battery_pct: float | None
    model_name: str | None
    model_version: int | None

    @classmethod
    def of(cls, row: TelemetryRow) -> TelemetryOut:
        return cls.model_validate(row)


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    deployment_id: str | None
    command_id: str | None
    model: dict[str, Any] | None
    reason: str | None
    detail: str | None
    progress: float | None
    ts: float
    received_at: float

    @classmethod
    def of(cls, row: EventRow) -> EventOut:
        return cls.model_validate(row)


class ModelVersionOut(BaseModel):
    name: str
    version: int
    sha256: str
    size: int
    runtime: str
    profile: str | None
    encoding: str
    wire_sha256: str
    wire_size: int
    filename: str
    created_at: float
    self_test_vectors: int
    card: dict[str, Any]

    @classmethod
    def of(cls, mv: ModelVersion) -> ModelVersionOut:
        return cls(
            name=mv.name,
            version=mv.version,
            sha256=mv.sha256,
            size=mv.size,
            runtime=mv.runtime,
            profile=mv.profile,
            encoding=mv.encoding,
            wire_sha256=mv.wire_sha256,
            wire_size=mv.wire_size,
            filename=mv.filename,
            created_at=mv.created_at,
            self_test_vectors=len(mv.self_test or []),
            card=dict(mv.card or {}),
        )


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_ids: Annotated[list[DeviceIdStr], Field(max_length=100_000)] = Field(default_factory=list)
    group: str | None = None
    profile: str | None = None


class GatesIn(BaseModel):
    """Health gates checked after each wave (see docs/adr/0006-rollout-engine.md)."""

    model_config = ConfigDict(extra="forbid")

    #: Failed/rolled_back/rejected devices, in % of the devices started so far, above which it halts.
    max_failure_pct: Annotated[float, Field(ge=0, le=100)] = 0.0
    #: p95 budget (ms) of the new model in the field; default: each device's profile budget.
    max_p95_ms: Annotated[float, Field(gt=0)] | None = None
    #: Highest allowed ratio of new p95 to the previous model's p95 on the same device (e.g. 1.2).
    max_p95_regression: Annotated[float, Field(gt=0)] | None = None
    #: Seconds every active device of a wave must have run the new model before the next wave.
    min_soak_s: Annotated[float, Field(ge=0, le=30 * 24 * 3600)] = 0.0


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=128)]
    version: Annotated[int, Field(ge=1)]
    target: TargetIn
    #: Cumulative percentages of the targets per wave, e.g. [1, 10, 100]. Omit all rollout fields
    #: to publish to every target at once.
    waves: Annotated[list[Annotated[float, Field(gt=0, le=100)]], Field(min_length=1, max_length=100)] | None = None
    min_wave_size: Annotated[int, Field(ge=1)] | None = None
    rate_per_minute: Annotated[float, Field(gt=0)] | None = None
    gates: GatesIn | None = None
    on_breach: Literal["pause", "abort"] | None = None

    @field_validator("waves")
    @classmethod
    def _waves_increase(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"cumulative percentages must increase strictly, got {v}")
        if v[-1] != 100:
            raise ValueError(f"the last wave must be 100 (every target), got {v[-1]:g}")
        return v

    @property
    def is_rollout(self) -> bool:
        return any(
            x is not None for x in (self.waves, self.min_wave_size, self.rate_per_minute, self.gates, self.on_breach)
        )


class DeploymentDeviceOut(BaseModel):
    device_id: str
    state: str
    reason: str | None
    detail: str | None
    progress: float | None
    updated_at: float


class WaveOut(BaseModel):
    index: int
    percent: float
    devices: list[str]
    started: int


class RolloutOut(BaseModel):
    status: Literal["in_progress", "paused", "aborted", "completed", "superseded"]
    waves: list[WaveOut]
    #: Index of the wave started last (0-based); -1 before the first.
    current_wave: int
    wave_started_at: float | None
    min_wave_size: int
    rate_per_minute: float | None
    gates: dict[str, Any]
    on_breach: str
    halt_reason: str | None
    halted_at: float | None
    #: Last gate evaluation: started, failed, failure_pct, p95_ms per device, p95_regression, breaches.
    readings: dict[str, Any]
    acknowledged: list[str]
    #: What abort did per device.
    rollbacks: dict[str, str]


class DeploymentOut(BaseModel):
    id: str
    model: str
    version: int
    sha256: str
    target: dict[str, Any]
    created_at: float
    expires_at: float
    state: str
    counts: dict[str, int]
    devices: list[DeploymentDeviceOut]
    #: Present for a wave-based rollout, ``null`` for a deployment published at once.
    rollout: RolloutOut | None = None


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: CommandKind
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 300.0


class CommandOut(BaseModel):
    command_id: str
    device_id: str
    kind: CommandKind
    args: dict[str, Any]
    issued_at: float
    expires_at: float | None


class PublicKeyOut(BaseModel):
    key_id: str
    public_key_pem: str


class Health(BaseModel):
    status: str
    mqtt_connected: bool | None = None
