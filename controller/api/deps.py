"""FastAPI dependencies: DB session, settings, store, signing key, bearer-token roles.

Other routers (e.g. controller.compression) mount with these::

    @router.post("/...", dependencies=[AdminAuth])
    def f(session: SessionDep, settings: SettingsDep, store: StoreDep): ...
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from controller.artifacts import ArtifactStore
from controller.metrics import ControllerMetrics
from controller.mqtt.bridge import MqttBridge
from controller.rollout import RolloutScheduler
from controller.settings import Settings

_bearer = HTTPBearer(auto_error=False)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_sessionmaker(request: Request) -> sessionmaker[Session]:
    """For work that outlives the request (background jobs): open your own sessions."""
    factory: sessionmaker[Session] = request.app.state.sessions
    return factory


def get_store(request: Request) -> ArtifactStore:
    store: ArtifactStore = request.app.state.store
    return store


def get_signing_key(request: Request) -> Ed25519PrivateKey:
    key: Ed25519PrivateKey = request.app.state.signing_key
    return key


def get_metrics(request: Request) -> ControllerMetrics:
    metrics: ControllerMetrics = request.app.state.metrics
    return metrics


def get_bridge(request: Request) -> MqttBridge | None:
    bridge: MqttBridge | None = request.app.state.bridge
    return bridge


def get_rollouts(request: Request) -> RolloutScheduler:
    scheduler: RolloutScheduler = request.app.state.rollouts
    return scheduler


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_sessionmaker)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
SigningKeyDep = Annotated[Ed25519PrivateKey, Depends(get_signing_key)]
MetricsDep = Annotated[ControllerMetrics, Depends(get_metrics)]
BridgeDep = Annotated[MqttBridge | None, Depends(get_bridge)]
RolloutsDep = Annotated[RolloutScheduler, Depends(get_rollouts)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _matches(token: str | None, expected: str | None) -> bool:
    return token is not None and expected is not None and hmac.compare_digest(token.encode(), expected.encode())


def _token(creds: HTTPAuthorizationCredentials | None) -> str | None:
    return creds.credentials if creds is not None else None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def require_read(settings: SettingsDep, creds: Credentials) -> None:
    """Read access: the read token or the admin token; open when no token is configured."""
    if settings.admin_token is None and settings.read_token is None:
        return
    token = _token(creds)
    if token is None:
        raise _unauthorized("missing bearer token")
    if not (_matches(token, settings.read_token) or _matches(token, settings.admin_token)):
        raise _unauthorized("invalid bearer token")


def require_admin(settings: SettingsDep, creds: Credentials) -> None:
    """Write access: the admin token only; open when no token is configured at all."""
    if settings.admin_token is None and settings.read_token is None:
        return
    token = _token(creds)
    if token is None:
        raise _unauthorized("missing bearer token")
    if _matches(token, settings.admin_token):
        return
    if _matches(token, settings.read_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "read-only token: this action needs the admin token")
    raise _unauthorized("invalid bearer token")


ReadAuth = Depends(require_read)
AdminAuth = Depends(require_admin)

__all__ = [
    "AdminAuth",
    "BridgeDep",
    "MetricsDep",
    "ReadAuth",
    "RolloutsDep",
    "SessionDep",
    "SessionFactoryDep",
    "SettingsDep",
    "SigningKeyDep",
    "StoreDep",
    "get_session",
    "get_sessionmaker",
    "get_settings",
    "get_store",
    "require_admin",
    "require_read",
]
