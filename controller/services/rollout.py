"""Wave-based rollouts with health gates: the database side of the rollout engine.

A rollout belongs to one deployment. Its target devices, sorted by id, are split into cumulative
waves (``plan``: device counts) at creation; every device starts ``queued`` (nothing published).
``advance`` (called by the scheduler thread in controller.rollout, under the scheduler lease)
moves each in-progress rollout one step:

1. start the next wave: record each device's active model (for abort), mark it ``pending`` and
   hand its stored manifest to the publisher, at most ``rate_per_minute`` devices a minute;
2. wait until every device of the wave is terminal and its active devices have soaked
   ``min_soak_s``;
3. evaluate the gates over the devices started so far (failure %, p95 of the new model from
   telemetry since activation vs ``max_p95_ms`` or the profile budget, p95 ratio vs the previous
   model on the same device), then start the next wave, complete, or halt (pause / abort).

Everything lives in the ``rollouts`` and ``rollout_devices`` tables, so a restarted controller
resumes where it stopped.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from controller.db.models import (
    Deployment,
    DeploymentDevice,
    Device,
    ModelVersion,
    Rollout,
    RolloutDevice,
    TelemetryRow,
)
from controller.errors import ConflictError, InvalidRequestError, NotFoundError
from controller.services.deployments import FAILED, QUEUED, TERMINAL, build_manifest
from shared import codec
from shared.profiles import BUILTIN_PROFILES

log = logging.getLogger("edgefleet.controller.rollout")

STATUSES = ("in_progress", "paused", "aborted", "completed", "superseded")
#: Device states after the switch to the new model (what abort rolls back).
SWITCHED = frozenset({"switching", "watching", "active"})
#: Halt reason labels (metric label values).
HALT_KINDS = ("failure", "p95", "p95_regression", "manual")

#: (device_id, payload) pairs to publish after the transaction committed.
Payloads = list[tuple[str, bytes]]


@dataclass
class Gates:
    max_failure_pct: float = 0.0
    max_p95_ms: float | None = None
    max_p95_regression: float | None = None
    min_soak_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_failure_pct": self.max_failure_pct,
            "max_p95_ms": self.max_p95_ms,
            "max_p95_regression": self.max_p95_regression,
            "min_soak_s": self.min_soak_s,
        }


@dataclass
class RolloutSpec:
    waves: list[float] = field(default_factory=lambda: [100.0])
    min_wave_size: int = 1
    rate_per_minute: float | None = None
    gates: Gates = field(default_factory=Gates)
    on_breach: str = "pause"

    def validate(self, n_devices: int) -> None:
        if not self.waves:
            raise InvalidRequestError("waves: give at least one cumulative percentage, e.g. [1, 10, 100]")
        for p in self.waves:
            if not 0 < p <= 100:
                raise InvalidRequestError(f"waves: {p} is not a percentage in (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(self.waves)):
            raise InvalidRequestError(f"waves: cumulative percentages must increase strictly, got {self.waves}")
        if self.waves[-1] != 100:
            raise InvalidRequestError(f"waves: the last wave must be 100 (all targets), got {self.waves[-1]}")
        if self.min_wave_size < 1:
            raise InvalidRequestError("min_wave_size must be >= 1")
        if self.on_breach not in ("pause", "abort"):
            raise InvalidRequestError(f"on_breach must be 'pause' or 'abort', got {self.on_breach!r}")
        if n_devices < 1:
            raise InvalidRequestError("target matches no registered device")

    def attach(self, *, session: Session, deployment: Deployment, device_ids: Sequence[str], now: float) -> Rollout:
        plan = plan_waves(self.waves, len(device_ids), self.min_wave_size)
        rollout = Rollout(
            deployment_id=deployment.id,
            waves=list(self.waves),
            plan=plan,
            min_wave_size=self.min_wave_size,
            rate_per_minute=self.rate_per_minute,
            gates=self.gates.as_dict(),
            on_breach=self.on_breach,
            status="in_progress",
            current_wave=-1,
            readings={},
            acknowledged=[],
            updated_at=now,
        )
        session.add(rollout)
        session.flush()
        start = 0
        for wave, end in enumerate(plan):
            for device_id in sorted(device_ids)[start:end]:
                session.add(RolloutDevice(deployment_id=deployment.id, device_id=device_id, wave=wave))
            start = end
        return rollout


def plan_waves(waves: Sequence[float], n: int, min_wave_size: int = 1) -> list[int]:
    """Cumulative device counts per wave: floor(pct * n / 100), at least ``min_wave_size`` new devices
    per wave, capped at ``n``; waves that would add nobody are dropped.

    >>> plan_waves([34, 100], 3)
    [1, 3]
    >>> plan_waves([1, 10, 100], 50)
    [1, 5, 50]
    """
    counts: list[int] = []
    prev = 0
    for pct in waves:
        k = min(n, max(math.floor(pct * n / 100 + 1e-9), prev + min_wave_size))
        if k > prev:
            counts.append(k)
            prev = k
    if not counts or counts[-1] != n:
        counts.append(n)
    return counts


# -- the engine step ---------------------------------------------------------------------------


@dataclass
class StepResult:
    payloads: Payloads = field(default_factory=list)
    halts: list[str] = field(default_factory=list)  # halt kinds, for the metric


def advance(*, session: Session, key: Ed25519PrivateKey, now: float | None = None) -> StepResult:
    """One step for every in-progress rollout; commits, returns what to publish."""
    now = time.time() if now is None else now
    result = StepResult()
    ids = session.scalars(
        select(Rollout.deployment_id).where(Rollout.status == "in_progress").order_by(Rollout.updated_at)
    ).all()
    for dep_id in ids:
        rollout = session.get(Rollout, dep_id)
        if rollout is None or rollout.status != "in_progress":
            continue
        step = StepResult()
        try:
            _advance_one(session, key, rollout, now, step)
            session.commit()
        except StaleDataError:  # an operator resumed or aborted it meanwhile
            session.rollback()
            log.info("rollout %s changed during the step; next tick", dep_id)
            continue
        except Exception:
            session.rollback()
            log.exception("rollout %s: step failed; retrying on the next tick", dep_id)
            continue
        # Publish only what was committed: a failed step publishes nothing.
        result.payloads.extend(step.payloads)
        result.halts.extend(step.halts)
    return result


def _rows(session: Session, dep_id: str) -> tuple[dict[str, DeploymentDevice], list[RolloutDevice]]:
    dd = {
        r.device_id: r
        for r in session.scalars(select(DeploymentDevice).where(DeploymentDevice.deployment_id == dep_id)).all()
    }
    rd = list(
        session.scalars(
            select(RolloutDevice).where(RolloutDevice.deployment_id == dep_id).order_by(RolloutDevice.device_id)
        ).all()
    )
    return dd, rd


def _advance_one(session: Session, key: Ed25519PrivateKey, r: Rollout, now: float, result: StepResult) -> None:
    dd, rds = _rows(session, r.deployment_id)
    if dd and all(row.state == "superseded" for row in dd.values()):
        _set_status(r, "superseded", now, "every device was taken over by a newer deployment")
        return
    if r.current_wave < 0:
        _start_wave(session, r, 0, dd, rds, now, result)
        return
    wave = [rd for rd in rds if rd.wave == r.current_wave]
    waiting = [rd for rd in wave if rd.started_at is None and dd[rd.device_id].state == QUEUED]
    if waiting:
        _publish_some(session, r, waiting, dd, rds, now, result)
        return
    if any(dd[rd.device_id].state not in TERMINAL for rd in wave):
        return  # the wave is still moving
    soak = float(r.gates.get("min_soak_s") or 0.0)
    active = [dd[rd.device_id] for rd in wave if dd[rd.device_id].state == "active"]
    if soak > 0 and any(now - row.updated_at < soak for row in active):
        return
    readings = evaluate_gates(session=session, rollout=r, dd=dd, rds=rds)
    r.readings = readings
    r.updated_at = now
    breaches: list[dict[str, str]] = readings["breaches"]
    if breaches:
        reason = f"wave {r.current_wave + 1}/{len(r.plan)}: " + "; ".join(b["message"] for b in breaches)
        kind = breaches[0]["kind"]
        result.halts.append(kind)
        if r.on_breach == "abort":
            log.warning("rollout %s aborted: %s", r.deployment_id, reason)
            result.payloads.extend(_abort(session, key, r, dd, rds, reason, now))
        else:
            log.warning("rollout %s paused: %s", r.deployment_id, reason)
            _set_status(r, "paused", now, reason)
        return
    if r.current_wave + 1 >= len(r.plan):
        _set_status(r, "completed", now, None)
        log.info("rollout %s completed", r.deployment_id)
        return
    _start_wave(session, r, r.current_wave + 1, dd, rds, now, result)


def _set_status(r: Rollout, status: str, now: float, reason: str | None) -> None:
    r.status = status
    r.halt_reason = reason
    r.halted_at = now if status in ("paused", "aborted") else None
    r.updated_at = now


def _start_wave(
    session: Session,
    r: Rollout,
    wave: int,
    dd: dict[str, DeploymentDevice],
    rds: list[RolloutDevice],
    now: float,
    result: StepResult,
) -> None:
    r.current_wave = wave
    r.wave_started_at = now
    r.updated_at = now
    log.info("rollout %s: wave %d/%d starts", r.deployment_id, wave + 1, len(r.plan))
    todo = [rd for rd in rds if rd.wave == wave and rd.started_at is None and dd[rd.device_id].state == QUEUED]
    _publish_some(session, r, todo, dd, rds, now, result)


def _publish_some(
    session: Session,
    r: Rollout,
    todo: list[RolloutDevice],
    dd: dict[str, DeploymentDevice],
    rds: list[RolloutDevice],
    now: float,
    result: StepResult,
) -> None:
    """Start devices of the current wave, within ``rate_per_minute`` (sliding window)."""
    allowed = len(todo)
    if r.rate_per_minute:
        window = 60.0 if r.rate_per_minute >= 1 else 60.0 / r.rate_per_minute
        cap = max(1, math.floor(r.rate_per_minute))
        recent = sum(1 for rd in rds if rd.started_at is not None and rd.started_at > now - window)
        allowed = max(0, min(allowed, cap - recent))
    devices = {
        d.device_id: d
        for d in session.scalars(select(Device).where(Device.device_id.in_([rd.device_id for rd in todo[:allowed]])))
    }
    for rd in todo[:allowed]:
        row = dd[rd.device_id]
        rd.started_at = now
        device = devices.get(rd.device_id)
        active = (device.state or {}).get("active_model") if device is not None else None
        rd.previous_model = dict(active) if isinstance(active, dict) else None
        row.state = "pending"
        row.updated_at = now
        result.payloads.append((rd.device_id, row.manifest.encode()))


# -- gates ---------------------------------------------------------------------------------------


def evaluate_gates(
    *, session: Session, rollout: Rollout, dd: dict[str, DeploymentDevice], rds: list[RolloutDevice]
) -> dict[str, Any]:
    """Gate readings over the devices started so far (acknowledged devices excepted)."""
    gates = rollout.gates
    dep = session.get(Deployment, rollout.deployment_id)
    assert dep is not None
    mv = session.get(ModelVersion, dep.model_version_id)
    assert mv is not None
    acked = set(rollout.acknowledged or [])
    started = [rd for rd in rds if rd.started_at is not None and dd[rd.device_id].state != "superseded"]
    failed = [rd for rd in started if dd[rd.device_id].state in FAILED and rd.device_id not in acked]
    pct = 100.0 * len(failed) / len(started) if started else 0.0
    max_pct = float(gates.get("max_failure_pct") or 0.0)
    breaches: list[dict[str, str]] = []
    if failed and pct > max_pct:
        which = ", ".join(
            f"{rd.device_id} {dd[rd.device_id].state}"
            + (f" ({dd[rd.device_id].reason})" if dd[rd.device_id].reason else "")
            for rd in failed[:5]
        )
        breaches.append(
            {
                "kind": "failure",
                "message": f"{len(failed)}/{len(started)} device(s) failed ({pct:.1f}% > {max_pct:g}%): {which}",
            }
        )
    profiles = dict(
        session.execute(
            select(Device.device_id, Device.profile).where(Device.device_id.in_([rd.device_id for rd in started]))
        ).all()
    )
    p95: dict[str, float] = {}
    regression: dict[str, float] = {}
    for rd in started:
        row = dd[rd.device_id]
        if row.state != "active" or rd.device_id in acked:
            continue
        new = _median_p95(session, rd.device_id, mv.name, mv.version, since=row.updated_at)
        if new is None:
            continue
        p95[rd.device_id] = new
        profile = BUILTIN_PROFILES.get(profiles.get(rd.device_id, ""))
        limit = gates.get("max_p95_ms")
        if limit is None and profile is not None:
            limit = profile.p95_latency_ms
        if limit is not None and new > float(limit):
            breaches.append({"kind": "p95", "message": f"{rd.device_id} p95 {new:.3g} ms > {float(limit):g} ms"})
        max_ratio = gates.get("max_p95_regression")
        prev = rd.previous_model
        if max_ratio is not None and prev and prev.get("name") and prev.get("version") is not None:
            old = _median_p95(session, rd.device_id, str(prev["name"]), int(prev["version"]), until=rd.started_at)
            if old is not None and old > 0:
                ratio = new / old
                regression[rd.device_id] = round(ratio, 4)
                if ratio > float(max_ratio):
                    breaches.append(
                        {
                            "kind": "p95_regression",
                            "message": f"{rd.device_id} p95 {new:.3g} ms is {ratio:.2f}x v{prev['version']}'s "
                            f"{old:.3g} ms > {float(max_ratio):g}x",
                        }
                    )
    return {
        "wave": rollout.current_wave,
        "started": len(started),
        "failed": len(failed),
        "failure_pct": round(pct, 3),
        "p95_ms": p95,
        "p95_regression": regression,
        "breaches": breaches,
    }


def _median_p95(
    session: Session, device_id: str, name: str, version: int, *, since: float | None = None, until: float | None = None
) -> float | None:
    stmt = select(TelemetryRow.p95_ms).where(
        TelemetryRow.device_id == device_id,
        TelemetryRow.model_name == name,
        TelemetryRow.model_version == version,
        TelemetryRow.p95_ms.is_not(None),
    )
    if since is not None:
        stmt = stmt.where(TelemetryRow.received_at >= since)
    if until is not None:
        stmt = stmt.where(TelemetryRow.received_at < until)
    values = [v for v in session.scalars(stmt.order_by(TelemetryRow.id.desc()).limit(200)).all() if v is not None]
    return float(statistics.median(values)) if values else None


# -- operator actions ----------------------------------------------------------------------------


def get_rollout(*, session: Session, deployment_id: str) -> Rollout:
    if session.get(Deployment, deployment_id) is None:
        raise NotFoundError(f"unknown deployment {deployment_id!r}")
    r = session.get(Rollout, deployment_id)
    if r is None:
        raise ConflictError(f"deployment {deployment_id} was published at once: it has no rollout to control")
    return r


def resume(*, session: Session, deployment_id: str, now: float | None = None) -> Rollout:
    """Continue a paused rollout. The devices started so far count as reviewed: their failures and
    latency no longer halt it; the gates apply to the devices started from now on."""
    now = time.time() if now is None else now
    r = get_rollout(session=session, deployment_id=deployment_id)
    if r.status == "in_progress":
        return r
    if r.status != "paused":
        raise ConflictError(f"rollout of {deployment_id} is {r.status}: only a paused rollout can resume")
    started = session.scalars(
        select(RolloutDevice.device_id).where(
            RolloutDevice.deployment_id == deployment_id, RolloutDevice.started_at.is_not(None)
        )
    ).all()
    r.acknowledged = sorted(set(r.acknowledged or []) | set(started))
    _set_status(r, "in_progress", now, None)
    _commit(session, deployment_id)
    log.info("rollout %s resumed", deployment_id)
    return r


def abort(
    *, session: Session, key: Ed25519PrivateKey, deployment_id: str, reason: str = "aborted by operator"
) -> Payloads:
    """Stop the rollout and roll back the devices that switched; commits, returns what to publish."""
    now = time.time()
    r = get_rollout(session=session, deployment_id=deployment_id)
    if r.status in ("aborted", "completed", "superseded"):
        raise ConflictError(f"rollout of {deployment_id} is already {r.status}")
    dd, rds = _rows(session, deployment_id)
    payloads = _abort(session, key, r, dd, rds, reason, now)
    _commit(session, deployment_id)
    return payloads


def _commit(session: Session, deployment_id: str) -> None:
    try:
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise ConflictError(f"rollout of {deployment_id} changed meanwhile (the scheduler moved it): retry") from exc


def _abort(
    session: Session,
    key: Ed25519PrivateKey,
    r: Rollout,
    dd: dict[str, DeploymentDevice],
    rds: list[RolloutDevice],
    reason: str,
    now: float,
) -> Payloads:
    _set_status(r, "aborted", now, reason)
    dep = session.get(Deployment, r.deployment_id)
    assert dep is not None
    by_model: dict[int, list[RolloutDevice]] = {}
    for rd in rds:
        row = dd[rd.device_id]
        if row.state == QUEUED:
            row.state, row.reason, row.updated_at = "superseded", "rollout_aborted", now
            continue
        if rd.started_at is None or row.state in FAILED or row.state == "superseded":
            continue
        prev = rd.previous_model
        mv = _previous_version(session, prev)
        if mv is None:
            rd.rollback = "no previous model known: left as is"
            continue
        if mv.id == dep.model_version_id:
            rd.rollback = "previous model is this deployment's: nothing to roll back"
            continue
        by_model.setdefault(mv.id, []).append(rd)
    payloads: Payloads = []
    for mv_id, group in by_model.items():
        mv = session.get(ModelVersion, mv_id)
        assert mv is not None
        back = Deployment(
            id=uuid.uuid4().hex,
            model_version_id=mv_id,
            target={"device_ids": [rd.device_id for rd in group], "rollback_of": dep.id},
            block_size=dep.block_size,
            created_at=now,
            expires_at=now + max(60.0, dep.expires_at - dep.created_at),
        )
        session.add(back)
        session.flush()
        devices = {
            d.device_id: d
            for d in session.scalars(select(Device).where(Device.device_id.in_([rd.device_id for rd in group])))
        }
        for rd in group:
            manifest = codec.encode(
                build_manifest(mv=mv, device=devices[rd.device_id], deployment=back, key=key, allow_downgrade=True)
            )
            session.add(
                DeploymentDevice(
                    deployment_id=back.id, device_id=rd.device_id, manifest=manifest.decode(), updated_at=now
                )
            )
            row = dd[rd.device_id]
            row.state = "rolled_back" if row.state in TERMINAL else "superseded"
            row.reason, row.detail, row.updated_at = "rollout_aborted", f"rolled back by {back.id}", now
            rd.rollback = f"{mv.name} v{mv.version} via deployment {back.id}"
            payloads.append((rd.device_id, manifest))
        log.warning(
            "rollout %s: rolling %d device(s) back to %s v%d (deployment %s)",
            dep.id,
            len(group),
            mv.name,
            mv.version,
            back.id,
        )
    return payloads


def _previous_version(session: Session, prev: dict[str, Any] | None) -> ModelVersion | None:
    if not prev or not prev.get("name") or prev.get("version") is None:
        return None
    mv = session.scalars(
        select(ModelVersion).where(ModelVersion.name == str(prev["name"]), ModelVersion.version == int(prev["version"]))
    ).first()
    if mv is None or (prev.get("sha256") and prev["sha256"] != mv.sha256):
        return None
    return mv


# -- views ---------------------------------------------------------------------------------------


def rollout_summary(*, session: Session, deployment_id: str) -> dict[str, Any] | None:
    r = session.get(Rollout, deployment_id)
    if r is None:
        return None
    rds = session.scalars(
        select(RolloutDevice).where(RolloutDevice.deployment_id == deployment_id).order_by(RolloutDevice.device_id)
    ).all()
    waves: list[dict[str, Any]] = []
    for i, pct in enumerate(_planned_pcts(r)):
        members = [rd for rd in rds if rd.wave == i]
        waves.append(
            {
                "index": i,
                "percent": pct,
                "devices": [rd.device_id for rd in members],
                "started": sum(1 for rd in members if rd.started_at is not None),
            }
        )
    return {
        "status": r.status,
        "waves": waves,
        "current_wave": r.current_wave,
        "wave_started_at": r.wave_started_at,
        "min_wave_size": r.min_wave_size,
        "rate_per_minute": r.rate_per_minute,
        "gates": dict(r.gates or {}),
        "on_breach": r.on_breach,
        "halt_reason": r.halt_reason,
        "halted_at": r.halted_at,
        "readings": dict(r.readings or {}),
        "acknowledged": list(r.acknowledged or []),
        "rollbacks": {rd.device_id: rd.rollback for rd in rds if rd.rollback},
    }


def _planned_pcts(r: Rollout) -> list[float]:
    """The requested percentage per planned wave (the plan may have merged or dropped some)."""
    total = r.plan[-1] if r.plan else 0
    return [round(100.0 * n / total, 2) if total else 100.0 for n in r.plan]


__all__ = [
    "HALT_KINDS",
    "STATUSES",
    "Gates",
    "Payloads",
    "RolloutSpec",
    "StepResult",
    "abort",
    "advance",
    "evaluate_gates",
    "get_rollout",
    "plan_waves",
    "resume",
    "rollout_summary",
]
