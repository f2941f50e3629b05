from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from controller.api.deps import (
    AdminAuth,
    BridgeDep,
    MetricsDep,
    ReadAuth,
    RolloutsDep,
    SessionDep,
    SettingsDep,
    SigningKeyDep,
)
from controller.api.schemas import DeploymentCreate, DeploymentOut
from controller.services import deployments as svc
from controller.services import rollout as rollout_svc

router = APIRouter(prefix="/deployments", tags=["deployments"])


def _spec(body: DeploymentCreate) -> rollout_svc.RolloutSpec | None:
    if not body.is_rollout:
        return None
    gates = body.gates
    return rollout_svc.RolloutSpec(
        waves=list(body.waves or [100.0]),
        min_wave_size=body.min_wave_size or 1,
        rate_per_minute=body.rate_per_minute,
        gates=rollout_svc.Gates(
            max_failure_pct=gates.max_failure_pct,
            max_p95_ms=gates.max_p95_ms,
            max_p95_regression=gates.max_p95_regression,
            min_soak_s=gates.min_soak_s,
        )
        if gates is not None
        else rollout_svc.Gates(),
        on_breach=body.on_breach or "pause",
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DeploymentOut, dependencies=[AdminAuth])
def create_deployment(
    body: DeploymentCreate,
    session: SessionDep,
    settings: SettingsDep,
    key: SigningKeyDep,
    bridge: BridgeDep,
    rollouts: RolloutsDep,
) -> DeploymentOut:
    spec = _spec(body)
    dep = svc.create_deployment(
        session=session,
        key=key,
        model=body.model,
        version=body.version,
        target=svc.Target(device_ids=body.target.device_ids, group=body.target.group, profile=body.target.profile),
        block_size=settings.block_size,
        ttl_s=settings.manifest_ttl_s,
        publish=bridge.publish_desired if bridge is not None else None,
        rollout=spec,
    )
    if spec is not None:
        rollouts.wake()
    return DeploymentOut.model_validate(svc.deployment_summary(session=session, dep=dep))


@router.get("", response_model=list[DeploymentOut], dependencies=[ReadAuth])
def list_deployments(session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DeploymentOut]:
    return [
        DeploymentOut.model_validate(svc.deployment_summary(session=session, dep=d))
        for d in svc.list_deployments(session=session, limit=limit)
    ]


@router.get("/{deployment_id}", response_model=DeploymentOut, dependencies=[ReadAuth])
def get_deployment(deployment_id: str, session: SessionDep) -> DeploymentOut:
    dep = svc.get_deployment(session=session, deployment_id=deployment_id)
    return DeploymentOut.model_validate(svc.deployment_summary(session=session, dep=dep))


@router.post("/{deployment_id}/resume", response_model=DeploymentOut, dependencies=[AdminAuth])
def resume_rollout(deployment_id: str, session: SessionDep, rollouts: RolloutsDep) -> DeploymentOut:
    """Continue a paused rollout; the devices started so far count as reviewed."""
    rollout_svc.resume(session=session, deployment_id=deployment_id)
    rollouts.wake()
    dep = svc.get_deployment(session=session, deployment_id=deployment_id)
    return DeploymentOut.model_validate(svc.deployment_summary(session=session, dep=dep))


@router.post("/{deployment_id}/abort", response_model=DeploymentOut, dependencies=[AdminAuth])
def abort_rollout(
    deployment_id: str, session: SessionDep, key: SigningKeyDep, rollouts: RolloutsDep, metrics: MetricsDep
) -> DeploymentOut:
    """Stop the rollout; devices that switched get their previous model back (signed, allow_downgrade)."""
    payloads = rollout_svc.abort(session=session, key=key, deployment_id=deployment_id)
    metrics.rollout_halts.labels("manual").inc()
    rollouts.publish(payloads)
    dep = svc.get_deployment(session=session, deployment_id=deployment_id)
    return DeploymentOut.model_validate(svc.deployment_summary(session=session, dep=dep))
