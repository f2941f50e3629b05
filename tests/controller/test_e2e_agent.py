"""The controller with real agents over a real Mosquitto: deploy, blocks, self-test, active, telemetry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from controller.testing import RunningController
from simulators.broker import MosquittoProcess
from tests.waiting import wait_until

from .conftest import make_onnx, make_samples

API = "/api/v1"


def test_two_agents_take_a_deployment(
    controller: RunningController, live_broker: MosquittoProcess, tmp_path: Path
) -> None:
    agent_app = pytest.importorskip("agent.app")
    agent_config = pytest.importorskip("agent.config")
    url = controller.url
    pem = httpx.get(url + f"{API}/keys/public").json()["public_key_pem"]
    ids = ["e2e-1", "e2e-2"]
    for d in ids:
        assert httpx.post(url + f"{API}/devices", json={"device_id": d, "profile": "car-ecu"}).status_code == 201
    model = make_onnx(n_in=64, n_out=10, hidden=256, compressible=True)
    files = {"file": ("m.onnx", model), "samples": ("s.npz", make_samples(n_in=64))}
    meta = httpx.post(url + f"{API}/models", files=files, data={"name": "e2e"}).json()
    agents: list[Any] = []
    try:
        for d in ids:
            settings = agent_config.AgentSettings(
                device_id=d,
                profile="car-ecu",
                broker_host=live_broker.host,
                broker_port=live_broker.port,
                topic_root=controller.settings.topic_root,
                data_dir=tmp_path / d,
                controller_public_key=pem,
                telemetry_interval_s=0.5,
                watch_seconds=0.5,
                p95_latency_ms=1000.0,
            )
            agent = agent_app.Agent(settings, hardware=None)
            agent.start()
            agents.append(agent)
        wait_until(lambda: all(httpx.get(url + f"{API}/devices/{d}").json()["online"] for d in ids), what="births")
        r = httpx.post(url + f"{API}/deployments", json={"model": "e2e", "version": 1, "target": {"device_ids": ids}})
        assert r.status_code == 201, r.text
        dep_id = r.json()["id"]

        def done() -> dict[str, Any] | None:
            dep: dict[str, Any] = httpx.get(url + f"{API}/deployments/{dep_id}").json()
            return dep if dep["state"] not in ("in_progress",) else None

        dep = wait_until(done, timeout=60, what="deployment outcome")
        assert dep["state"] == "completed", dep
        x = np.zeros((1, 64), dtype=np.float32)
        for agent in agents:
            agent.predict(x)
        for d in ids:
            dev = wait_until(
                lambda d=d: (v := httpx.get(url + f"{API}/devices/{d}").json())["active_model"] and v,
                timeout=20,
                what="active model reported",
            )
            assert dev["active_model"]["sha256"] == meta["sha256"]
        kinds = [e["kind"] for e in httpx.get(url + f"{API}/devices/e2e-1/events").json()]
        assert "active" in kinds and "downloading" in kinds
        wait_until(lambda: httpx.get(url + f"{API}/devices/e2e-1/telemetry").json(), timeout=20, what="telemetry")
        cmd = httpx.post(url + f"{API}/devices/e2e-2/commands", json={"kind": "ping"})
        assert cmd.status_code == 202, cmd.text

        def acked() -> bool:
            events = httpx.get(url + f"{API}/devices/e2e-2/events").json()
            return any(e["kind"] == "command_ack" and e["command_id"] == cmd.json()["command_id"] for e in events)

        wait_until(acked, timeout=20, what="command_ack from the agent")
    finally:
        for agent in agents:
            agent.stop()
