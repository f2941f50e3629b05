from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from controller.api.deps import AdminAuth, BridgeDep, ReadAuth, SessionDep, SettingsDep, SigningKeyDep
from controller.api.schemas import DeploymentCreate, DeploymentOut
from controller.services import deployments as svc

router = APIRouter(prefix="/deployments", tags=["deployments"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DeploymentOut, dependencies=[AdminAuth])
def create_deployment(
    body: DeploymentCreate, session: SessionDep, settings: SettingsDep, key: SigningKeyDep, bridge: BridgeDep
) -> DeploymentOut:
    dep = svc.create_deployment(
        session=session,
        key=key,
        model=body.model,
        version=body.version,
        target=svc.Target(device_ids=body.target.device_ids, group=body.target.group, profile=body.target.profile),
        block_size=settings.block_size,
        ttl_s=settings.manifest_ttl_s,
        publish=bridge.publish_desired if bridge is not None else None,
    )
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
