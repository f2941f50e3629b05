"""Faults against the real controller: the broker crashes in the middle of a rollout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from agent.app import Agent
from agent.config import AgentSettings
from controller.settings import Settings
from controller.testing import RunningController, run_controller
from simulators.broker import MosquittoProcess
from tests.agent.models import wide_mlp
from tests.waiting import wait_until

BLOCK = 4096


@pytest.fixture
def slow_controller(live_broker: MosquittoProcess, topic_root: str, tmp_path: Path) -> Iterator[RunningController]:
    # A per-device block budget of 15/s stretches the download over a few seconds, so the
    # broker can be killed while it is under way.
    settings = Settings(data_dir=tmp_path / "ctl", broker_port=live_broker.port, topic_root=topic_root,
                        block_size=BLOCK, max_blocks_per_s_per_device=15, max_block_burst=4)
    with run_controller(settings) as ctl:
        yield ctl


def test_broker_crash_mid_download_resumes_with_the_real_controller(
    slow_controller: RunningController, live_broker: MosquittoProcess, topic_root: str, tmp_path: Path
) -> None:
    api = httpx.Client(base_url=slow_controller.url + "/api/v1", timeout=10)
    pem = api.get("/keys/public").json()["public_key_pem"]
    assert api.post("/devices", json={"device_id": "chaos-1", "profile": "car-ecu"}).status_code == 201
    model = wide_mlp(64, 768, 10, input_name="input", seed=7)  # ~200 KB: ~50 blocks of 4 KiB
    meta = api.post("/models", data={"name": "chaos", "runtime": "onnxruntime"},
                    files={"file": ("m.onnx", model)}).json()
    total = -(-meta["size"] // BLOCK)
    assert total >= 40
    agent = Agent(AgentSettings(
        device_id="chaos-1", profile="car-ecu", broker_host=live_broker.host, broker_port=live_broker.port,
        topic_root=topic_root, data_dir=tmp_path / "dev", controller_public_key=pem, repair_timeout_s=0.5,
        watch_seconds=0.2, reconnect_min_delay_s=0.2, reconnect_max_delay_s=1.0,
    ))
    agent.start()
    try:
        wait_until(lambda: agent.status()["connected"], 10, "agent connected")
        r = api.post("/deployments", json={"model": "chaos", "version": 1, "target": {"device_ids": ["chaos-1"]}})
        assert r.status_code == 201, r.text

        def received() -> int:
            dl: dict[str, Any] | None = agent.status()["download"]
            return int(dl["received"]) if dl else 0

        wait_until(lambda: received() >= 8, 20, "first blocks")
        live_broker.stop(kill=True)
        have = received()
        assert 0 < have < total, (have, total)
        wait_until(lambda: not agent.status()["connected"], 10, "agent notices the crash")
        restarted = time.monotonic()
        live_broker.start()

        wait_until(lambda: (agent.status()["active_model"] or {}).get("name") == "chaos", 60, "model active")
        asked_after = [n for ts, n in agent.updater.request_log if ts >= restarted]
        assert asked_after, "the agent asked for the rest after reconnecting"
        assert asked_after[0] <= total - have, "resumed from the blocks it had, not from zero"
        dep = api.get(f"/deployments/{r.json()['id']}").json()
        wait_until(lambda: api.get(f"/deployments/{r.json()['id']}").json()["state"] == "completed", 20,
                 "controller sees the deployment complete")
        assert dep["devices"][0]["device_id"] == "chaos-1"
        y = agent.predict(np.zeros((1, 64), np.float32))
        assert y.shape == (1, 10)
    finally:
        agent.stop()
