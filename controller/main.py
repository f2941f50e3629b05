"""Assembles the FastAPI app; the parts live in api/, services/, mqtt/, db/."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from controller.api.routes import deployments, devices, health, keys, models, profiles
from controller.artifacts import ArtifactStore
from controller.db import DeploymentDevice, Device, make_engine, make_sessionmaker
from controller.db.models import Rollout
from controller.errors import ControllerError
from controller.keys import load_or_create_key
from controller.metrics import ControllerMetrics
from controller.mqtt.bridge import MqttBridge
from controller.rollout import RolloutScheduler
from controller.settings import Settings

log = logging.getLogger("edgefleet.controller")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bridge = app.state.bridge
        if bridge is not None:
            bridge.start()
        app.state.rollouts.start()
        try:
            yield
        finally:
            app.state.rollouts.stop()
            if bridge is not None:
                bridge.stop()
            app.state.engine.dispose()
            log.info("controller stopped")

    # FastAPIOffline serves the Swagger UI / ReDoc assets itself: /docs works on an
    # air-gapped operator network, where FastAPI's default CDN links leave a blank page.
    app: FastAPI = FastAPIOffline(
        title="edgefleet controller",
        version="0.1.0",
        description="Device registry, model registry, deployments over MQTT, telemetry. See docs/protocol.md.",
        lifespan=lifespan,
    )
    _init_state(app, settings)
    api = APIRouter(prefix="/api/v1")
    for module in (profiles, devices, models, deployments, keys):
        api.include_router(module.router)
    app.include_router(health.router)
    app.include_router(api)
    _mount_compression(app)
    _add_handlers(app)
    _add_misc_routes(app)
    return app


def _init_state(app: FastAPI, settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_db_url())
    sessions = make_sessionmaker(engine)
    store = ArtifactStore(settings.artifacts_dir, zstd=settings.zstd, zstd_level=settings.zstd_level)
    metrics = ControllerMetrics()
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.store = store
    app.state.metrics = metrics
    app.state.signing_key = load_or_create_key(settings.key_path)
    app.state.bridge = (
        MqttBridge(settings=settings, sessions=sessions, store=store, metrics=metrics)
        if settings.mqtt_enabled
        else None
    )
    app.state.rollouts = RolloutScheduler(
        sessions=sessions,
        key=app.state.signing_key,
        publish=app.state.bridge.publish_desired if app.state.bridge is not None else None,
        metrics=metrics,
        controller_id=settings.controller_id,
        interval_s=settings.rollout_interval_s,
        lease_s=settings.rollout_lease_s,
    )
    if settings.admin_token is None and settings.read_token is None:
        log.warning("no admin_token/read_token configured: the REST API is open to anyone who can reach it")


def _mount_compression(app: FastAPI) -> None:
    try:
        from controller.compression.router import router as compression_router
    except ImportError as exc:
        log.debug("compression router not mounted: %s", exc)
        return
    app.include_router(compression_router)


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(ControllerError)
    async def controller_error(_request: Request, exc: ControllerError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("request failed: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_body(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse({"detail": f"{where}: {first['msg']}", "errors": errors}, status_code=422)

    @app.middleware("http")
    async def count_requests(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        route = _route_label(request)
        request.app.state.metrics.http_requests.labels(request.method, route, str(response.status_code)).inc()
        return response


def _route_label(request: Request) -> str:
    """The route template (bounded label set), with the prefix of routers included into the app."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    actual = request.url.path.rstrip("/").split("/")
    depth = len(template.rstrip("/").split("/"))
    prefix = "/".join(actual[: max(0, len(actual) - depth) + 1]) if len(actual) > depth else ""
    return prefix + template


def _add_misc_routes(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint(request: Request) -> Response:
        m: ControllerMetrics = request.app.state.metrics
        with request.app.state.sessions() as session:
            m.devices_online.set(session.scalar(select(func.count()).where(Device.online.is_(True))) or 0)
            m.devices_registered.set(session.scalar(select(func.count()).select_from(Device)) or 0)
            m.deployment_devices.clear()
            for state, n in session.execute(
                select(DeploymentDevice.state, func.count()).group_by(DeploymentDevice.state)
            ).all():
                m.deployment_devices.labels(state).set(n)
            m.rollouts.clear()
            for status, n in session.execute(select(Rollout.status, func.count()).group_by(Rollout.status)).all():
                m.rollouts.labels(status).set(n)
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    dashboard = (Path(__file__).parent / "static" / "dashboard.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(dashboard)


__all__ = ["create_app"]
