from __future__ import annotations

from fastapi import APIRouter, Request

from controller.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz(request: Request) -> Health:
    bridge = request.app.state.bridge
    return Health(status="ok", mqtt_connected=bridge.connected if bridge is not None else None)
