"""Deployments: resolve targets, check compatibility, sign one DesiredState per device."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controller.db.models import Deployment, DeploymentDevice, Device, ModelVersion
from controller.errors import InvalidRequestError, NotFoundError
from controller.services.models import get_model_version
from shared import codec, signing
from shared.blocks import block_count
from shared.messages import DesiredState, ModelRef, SelfTestVector
from shared.profiles import BUILTIN_PROFILES

if TYPE_CHECKING:
    from controller.services.rollout import RolloutSpec

log = logging.getLogger("edgefleet.controller.deployments")

#: Per-device states after which a device no longer changes for this deployment.
TERMINAL = frozenset({"active", "failed", "rolled_back", "rejected", "superseded"})
FAILED = frozenset({"failed", "rolled_back", "rejected"})

#: A device of a wave-based rollout whose wave has not started: nothing published yet.
QUEUED = "queued"

#: publish(device_id, payload) -> None; the MQTT bridge's retained QoS 1 publish.
Publisher = Callable[[str, bytes], None]


@dataclass
class Target:
    device_ids: list[str] = field(default_factory=list)
    group: str | None = None
    profile: str | None = None


def resolve_targets(*, session: Session, target: Target) -> list[Device]:
    if not target.device_ids and target.group is None and target.profile is None:
        raise InvalidRequestError("target is empty: give device_ids, group and/or profile")
    stmt = select(Device).order_by(Device.device_id)
    if target.device_ids:
        ids = list(dict.fromkeys(target.device_ids))
        known = set(session.scalars(select(Device.device_id).where(Device.device_id.in_(ids))).all())
        missing = [d for d in ids if d not in known]
        if missing:
            raise InvalidRequestError(f"unknown device(s) in target: {', '.join(missing[:20])}")
        stmt = stmt.where(Device.device_id.in_(ids))
    if target.group is not None:
        stmt = stmt.where(Device.group == target.group)
    if target.profile is not None:
        if target.profile not in BUILTIN_PROFILES:
            raise InvalidRequestError(f"unknown profile {target.profile!r} in target")
        stmt = stmt.where(Device.profile == target.profile)
    devices = list(session.scalars(stmt).all())
    if not devices:
        raise InvalidRequestError("target matches no registered device")
    return devices


def check_compatible(mv: ModelVersion, devices: Sequence[Device]) -> None:
    """Refuse the whole deployment if any device cannot take the artifact."""
    problems: list[str] = []
    for d in devices:
        profile = BUILTIN_PROFILES.get(d.profile)
        if profile is None:
            problems.append(f"{d.device_id}: unknown profile {d.profile!r}")
        elif profile.runtime != mv.runtime:
            problems.append(f"{d.device_id}: profile {d.profile} runs {profile.runtime}, artifact is {mv.runtime}")
        elif mv.size > profile.max_artifact_bytes:
            problems.append(
                f"{d.device_id}: artifact of {mv.size} bytes exceeds profile {d.profile} "
                f"max_artifact_bytes {profile.max_artifact_bytes}"
            )
    if problems:
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidRequestError(
            f"model {mv.name} v{mv.version} cannot be deployed to: " + "; ".join(problems[:10]) + more
        )


def build_manifest(
    *,
    mv: ModelVersion,
    device: Device,
    deployment: Deployment,
    key: Ed25519PrivateKey,
    allow_downgrade: bool = False,
) -> DesiredState:
    desired = DesiredState(
        device_id=device.device_id,
        deployment_id=deployment.id,
        model=ModelRef(name=mv.name, version=mv.version, sha256=mv.sha256),
        runtime=mv.runtime,  # type: ignore[arg-type]
        profile=device.profile,
        size=mv.size,
        encoding=mv.encoding,  # type: ignore[arg-type]
        wire_sha256=mv.wire_sha256,
        wire_size=mv.wire_size,
        block_size=deployment.block_size,
        block_count=block_count(mv.wire_size, deployment.block_size),
        self_test=[SelfTestVector.model_validate(v) for v in mv.self_test],
        allow_downgrade=allow_downgrade,
        issued_at=deployment.created_at,
        expires_at=deployment.expires_at,
    )
    return signing.sign(desired, key)


def create_deployment(
    *,
    session: Session,
    key: Ed25519PrivateKey,
    model: str,
    version: int,
    target: Target,
    block_size: int,
    ttl_s: float,
    publish: Publisher | None = None,
    rollout: RolloutSpec | None = None,
) -> Deployment:
    """Sign and store one manifest per target device.

    Without ``rollout`` every manifest is published at once. With one, the devices start ``queued``
    and the rollout scheduler (controller.rollout) publishes them wave by wave.
    """
    mv = get_model_version(session=session, name=model, version=version)
    devices = resolve_targets(session=session, target=target)
    check_compatible(mv, devices)
    if rollout is not None:
        rollout.validate(len(devices))
    now = time.time()
    dep = Deployment(
        id=uuid.uuid4().hex,
        model_version_id=mv.id,
        target={"device_ids": target.device_ids, "group": target.group, "profile": target.profile},
        block_size=block_size,
        created_at=now,
        expires_at=now + ttl_s,
    )
    session.add(dep)
    session.flush()
    ids = [d.device_id for d in devices]
    # A device follows one deployment at a time: older ones stop counting for it.
    session.execute(
        update(DeploymentDevice)
        .where(DeploymentDevice.device_id.in_(ids), DeploymentDevice.state.not_in(TERMINAL))
        .values(state="superseded", reason=f"superseded by {dep.id}", updated_at=now)
    )
    payloads: list[tuple[str, bytes]] = []
    for device in devices:
        manifest = codec.encode(build_manifest(mv=mv, device=device, deployment=dep, key=key))
        if len(manifest) > codec.MAX_JSON_PAYLOAD:
            raise InvalidRequestError(f"manifest of {len(manifest)} bytes exceeds the wire limit")
        session.add(
            DeploymentDevice(
                deployment_id=dep.id,
                device_id=device.device_id,
                manifest=manifest.decode(),
                updated_at=now,
                state="pending" if rollout is None else QUEUED,
            )
        )
        payloads.append((device.device_id, manifest))
    if rollout is not None:
        session.flush()
        rollout.attach(session=session, deployment=dep, device_ids=ids, now=now)
        session.commit()
        log.info(
            "deployment %s: %s v%d to %d device(s) in waves %s",
            dep.id,
            mv.name,
            mv.version,
            len(devices),
            rollout.waves,
        )
        return dep
    session.commit()
    log.info("deployment %s: %s v%d to %d device(s)", dep.id, mv.name, mv.version, len(devices))
    if publish is not None:
        for device_id, manifest in payloads:
            publish(device_id, manifest)
    else:
        log.warning("deployment %s recorded but not published: MQTT is disabled", dep.id)
    return dep


def get_deployment(*, session: Session, deployment_id: str) -> Deployment:
    dep = session.get(Deployment, deployment_id)
    if dep is None:
        raise NotFoundError(f"unknown deployment {deployment_id!r}")
    return dep


def deployment_devices(*, session: Session, deployment_id: str) -> Sequence[DeploymentDevice]:
    stmt = (
        select(DeploymentDevice)
        .where(DeploymentDevice.deployment_id == deployment_id)
        .order_by(DeploymentDevice.device_id)
    )
    return session.scalars(stmt).all()


def overall_state(states: Sequence[str]) -> str:
    """in_progress while any device is still moving; then completed, failed or partial."""
    if any(s not in TERMINAL for s in states):
        return "in_progress"
    live = [s for s in states if s != "superseded"]
    if not live:
        return "superseded"
    if all(s == "active" for s in live):
        return "completed"
    if all(s in FAILED for s in live):
        return "failed"
    return "partial"


def state_counts(states: Sequence[str]) -> dict[str, int]:
    return dict(Counter(states))


def list_deployments(*, session: Session, limit: int = 100) -> Sequence[Deployment]:
    return session.scalars(select(Deployment).order_by(Deployment.created_at.desc()).limit(limit)).all()


def current_manifests(*, session: Session) -> list[tuple[str, bytes]]:
    """The latest non-superseded manifest per device, for republishing after a broker reconnect."""
    rows = session.execute(
        select(DeploymentDevice.device_id, DeploymentDevice.manifest, Deployment.created_at)
        .join(Deployment, Deployment.id == DeploymentDevice.deployment_id)
        .where(DeploymentDevice.state.not_in(("superseded", QUEUED)))
        .order_by(Deployment.created_at)
    ).all()
    latest: dict[str, bytes] = {}
    for device_id, manifest, _created in rows:
        latest[device_id] = manifest.encode()
    return list(latest.items())


def model_for(*, session: Session, dep: Deployment) -> ModelVersion:
    mv = session.get(ModelVersion, dep.model_version_id)
    assert mv is not None  # foreign key
    return mv


def deployment_summary(*, session: Session, dep: Deployment) -> dict[str, Any]:
    rows = deployment_devices(session=session, deployment_id=dep.id)
    states = [r.state for r in rows]
    mv = model_for(session=session, dep=dep)
    from controller.services.rollout import rollout_summary  # rollout imports this module

    rollout = rollout_summary(session=session, deployment_id=dep.id)
    state = overall_state(states)
    if rollout is not None and rollout["status"] in ("paused", "aborted"):
        state = rollout["status"]
    return {
        "id": dep.id,
        "model": mv.name,
        "version": mv.version,
        "sha256": mv.sha256,
        "target": dep.target,
        "created_at": dep.created_at,
        "expires_at": dep.expires_at,
        "state": state,
        "rollout": rollout,
        "counts": state_counts(states),
        "devices": [
            {
                "device_id": r.device_id,
                "state": r.state,
                "reason": r.reason,
                "detail": r.detail,
                "progress": r.progress,
                "updated_at": r.updated_at,
            }
            for r in rows
        ],
    }


__all__ = [
    "FAILED",
    "QUEUED",
    "TERMINAL",
    "Publisher",
    "Target",
    "build_manifest",
    "check_compatible",
    "create_deployment",
    "current_manifests",
    "deployment_devices",
    "deployment_summary",
    "get_deployment",
    "list_deployments",
    "overall_state",
    "resolve_targets",
]
