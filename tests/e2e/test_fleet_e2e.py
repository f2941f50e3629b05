"""End to end on real parts: controller + Mosquitto + simulated devices running the real agent.

register -> upload -> deploy per profile (LiteRT for locks, onnxruntime for the rest) ->
every device reports the new version active -> telemetry with plausible latency is in the
SQLite store and served over REST.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.settings import Settings
from controller.testing import RunningController, run_controller
from shared.profiles import get_profile
from simulators.broker import MosquittoProcess
from simulators.demo import DEMO_MODELS, upload_and_deploy
from simulators.fleet import Fleet
from tests.waiting import wait_until

TOKEN = "e2e-admin-token"




@pytest.fixture
def controller(live_broker: MosquittoProcess, topic_root: str, tmp_path: Path) -> Iterator[RunningController]:
    settings = Settings(data_dir=tmp_path / "ctl", broker_port=live_broker.port, topic_root=topic_root,
                        admin_token=TOKEN)
    with run_controller(settings) as ctl:
        yield ctl


@pytest.fixture
def fleet(controller: RunningController, live_broker: MosquittoProcess, topic_root: str,
          tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet.from_mix(
        6, {"smart-lock": 1, "car-ecu": 1, "medical-monitor": 1}, prefix="e2e", controller_url=controller.url,
        token=TOKEN, broker_host=live_broker.host, broker_port=live_broker.port, topic_root=topic_root,
        data_dir=tmp_path / "fleet", rate_hz=20.0,
        agent_overrides={"telemetry_interval_s": 0.5, "watch_seconds": 1.0},
    )
    f.start()
    yield f
    f.stop()


def test_model_travels_to_every_device_and_telemetry_comes_back(
    controller: RunningController, fleet: Fleet
) -> None:
    client = httpx.Client(base_url=controller.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    ids = [d.device_id for d in fleet]
    profiles = {d.device_id: d.spec.profile for d in fleet}
    assert {get_profile(p).runtime for p in profiles.values()} == {"litert", "onnxruntime"}

    wait_until(lambda: all(client.get(f"/api/v1/devices/{i}").json()["online"] for i in ids), 20, "births")
    deployment_ids = upload_and_deploy(client, sorted(set(profiles.values())))

    def all_active() -> list[dict[str, Any]] | None:
        deps = [client.get(f"/api/v1/deployments/{d}").json() for d in deployment_ids]
        return deps if all(dev["state"] == "active" for dep in deps for dev in dep["devices"]) else None

    deployments = wait_until(all_active, 60, "every device active")
    assert sorted(dev["device_id"] for dep in deployments for dev in dep["devices"]) == sorted(ids)

    for device_id, profile in profiles.items():
        name = DEMO_MODELS[profile][0]
        detail = client.get(f"/api/v1/devices/{device_id}").json()
        assert detail["state"]["active_model"]["name"] == name
        assert detail["state"]["active_model"]["version"] == 1
        # The agent itself says it serves the model and has run it.
        status = fleet.device(device_id).agent.status()
        assert status["active_model"]["name"] == name

    def telemetry_with_model(device_id: str) -> list[dict[str, Any]] | None:
        rows = client.get(f"/api/v1/devices/{device_id}/telemetry", params={"limit": 20}).json()
        rows = rows.get("items", rows) if isinstance(rows, dict) else rows
        good = [r for r in rows if r.get("model_version") == 1 and (r.get("count") or 0) > 0]
        return good or None

    for device_id, profile in profiles.items():
        rows = wait_until(lambda d=device_id: telemetry_with_model(d), 20, f"telemetry from {device_id}")
        budget = get_profile(profile).p95_latency_ms
        slowdown = get_profile(profile).compute_slowdown
        for r in rows:
            assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"] + 1e-9
            assert r["p95_ms"] < budget, (device_id, r)
            # A device with a 20x slower CPU cannot answer in a few microseconds.
            assert r["p50_ms"] > 0.001 * slowdown

    # The same telemetry is in the SQLite store the controller writes.
    db = sqlite3.connect(controller.settings.data_dir / "controller.db")
    try:
        stored = dict(db.execute(
            "select device_id, count(*) from telemetry where model_version = 1 and p95_ms > 0 group by device_id"
        ).fetchall())
    finally:
        db.close()
    assert set(stored) == set(ids)
