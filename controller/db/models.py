"""SQLAlchemy 2.0 typed tables.

Timestamps are float epoch seconds, as on the wire, so no timezone conversions
sneak in between agents, the store and the REST API.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def _now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class Device(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    profile: Mapped[str] = mapped_column(String(64), index=True)
    group: Mapped[str | None] = mapped_column("device_group", String(128), index=True, default=None)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=_now)

    online: Mapped[bool] = mapped_column(Boolean, default=False)
    session: Mapped[int] = mapped_column(BigInteger, default=0)
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    update_state: Mapped[str] = mapped_column(String(32), default="unknown")
    #: Last DeviceState as received (JSON), ``None`` until the first birth message.
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    last_seen: Mapped[float | None] = mapped_column(Float, default=None)
    last_telemetry: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    last_p95_ms: Mapped[float | None] = mapped_column(Float, default=None)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    runtime: Mapped[str] = mapped_column(String(32))
    #: Profile the artifact was compressed for; ``None`` for a plain upload.
    profile: Mapped[str | None] = mapped_column(String(64), default=None)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    encoding: Mapped[str] = mapped_column(String(16), default="identity")
    wire_sha256: Mapped[str] = mapped_column(String(64), index=True)
    wire_size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(256), default="")
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Self-test vectors (list of shared.messages.SelfTestVector dumps).
    self_test: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=_now)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    block_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float, default=_now)
    expires_at: Mapped[float] = mapped_column(Float)


class DeploymentDevice(Base):
    __tablename__ = "deployment_devices"

    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True)
    #: pending, then the agent's event kinds (downloading ... active / failed / rolled_back / rejected),
    #: or superseded when a newer deployment replaced this one on the device.
    state: Mapped[str] = mapped_column(String(32), default="pending", index=True)
    reason: Mapped[str | None] = mapped_column(String(256), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[float | None] = mapped_column(Float, default=None)
    #: The exact signed manifest published, so a reconnect republishes identical bytes.
    manifest: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float, default=_now)


class Rollout(Base):
    """Wave-based rollout of one deployment (absent for a plain all-at-once deployment).

    A separate table rather than columns on ``deployments``: ``create_all`` adds it to an existing
    store without a migration, and plain deployments stay exactly as they were.
    """

    __tablename__ = "rollouts"

    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    #: Cumulative percentages as requested, e.g. [1, 10, 100].
    waves: Mapped[list[float]] = mapped_column(JSON, default=list)
    #: Cumulative device counts per wave, fixed at creation (devices sorted by id).
    plan: Mapped[list[int]] = mapped_column(JSON, default=list)
    min_wave_size: Mapped[int] = mapped_column(Integer, default=1)
    rate_per_minute: Mapped[float | None] = mapped_column(Float, default=None)
    gates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    on_breach: Mapped[str] = mapped_column(String(16), default="pause")
    #: in_progress, paused, aborted, completed, superseded.
    status: Mapped[str] = mapped_column(String(16), default="in_progress", index=True)
    #: Index of the wave started last; -1 before the first.
    current_wave: Mapped[int] = mapped_column(Integer, default=-1)
    wave_started_at: Mapped[float | None] = mapped_column(Float, default=None)
    halt_reason: Mapped[str | None] = mapped_column(Text, default=None)
    halted_at: Mapped[float | None] = mapped_column(Float, default=None)
    #: Last gate evaluation (failure %, p95 per device, regression ratios).
    readings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Devices an operator accepted by resuming; their failures no longer halt the rollout.
    acknowledged: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[float] = mapped_column(Float, default=_now)
    #: Optimistic lock: the scheduler and an operator's resume/abort never overwrite each other.
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": row_version}


class RolloutDevice(Base):
    __tablename__ = "rollout_devices"

    deployment_id: Mapped[str] = mapped_column(
        ForeignKey("rollouts.deployment_id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id", ondelete="CASCADE"), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer, index=True)
    #: When its desired state was published; ``None`` while it waits for its wave.
    started_at: Mapped[float | None] = mapped_column(Float, default=None)
    #: The model the device reported active when its wave started (ModelRef dump), for abort.
    previous_model: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: What abort did for this device: rolled back to vN, or why not.
    rollback: Mapped[str | None] = mapped_column(String(256), default=None)


class SchedulerLease(Base):
    """One row per singleton job; the holder advances rollouts until ``expires_at``."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Float)


class TelemetryRow(Base):
    __tablename__ = "telemetry"
    __table_args__ = (Index("ix_telemetry_device_id_id", "device_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float, default=_now, index=True)
    interval_s: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    p50_ms: Mapped[float | None] = mapped_column(Float, default=None)
    p95_ms: Mapped[float | None] = mapped_column(Float, default=None)
    p99_ms: Mapped[float | None] = mapped_column(Float, default=None)
    max_ms: Mapped[float | None] = mapped_column(Float, default=None)
    mean_ms: Mapped[float | None] = mapped_column(Float, default=None)
    cpu_percent: Mapped[float | None] = mapped_column(Float, default=None)
    rss_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    temperature_c: Mapped[float | None] = mapped_column(Float, default=None)
    battery_pct: Mapped[float | None] = mapped_column(Float, default=None)
    model_name: Mapped[str | None] = mapped_column(String(128), default=None)
    model_version: Mapped[int | None] = mapped_column(BigInteger, default=None)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_device_id_id", "device_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    deployment_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    command_id: Mapped[str | None] = mapped_column(String(64), default=None)
    model: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    reason: Mapped[str | None] = mapped_column(String(256), default=None)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[float | None] = mapped_column(Float, default=None)
    ts: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float, default=_now, index=True)


__all__ = [
    "Base",
    "Deployment",
    "DeploymentDevice",
    "Device",
    "EventRow",
    "ModelVersion",
    "Rollout",
    "RolloutDevice",
    "SchedulerLease",
    "TelemetryRow",
]
