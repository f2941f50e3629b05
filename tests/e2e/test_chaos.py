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
from tests.e2e.test_fleet_e2e import wait_for

BLOCK = 4096


def incompressible_onnx(n_in: int = 64, hidden: int = 768, n_out: int = 10) -> bytes:
    """~200 KB of random weights: ~50 blocks, and zstd cannot shrink it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((n_in, hidden)).astype(np.float32)
    w1 = rng.standard_normal((hidden, n_out)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w0"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w1"], ["logits"])],
        "chaos",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_out])],
        [numpy_helper.from_array(w0, "w0"), numpy_helper.from_array(w1, "w1")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


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
    meta = api.post("/models", data={"name": "chaos", "runtime": "onnxruntime"},
                    files={"file": ("m.onnx", incompressible_onnx())}).json()
    total = -(-meta["size"] // BLOCK)
    assert total >= 40
    agent = Agent(AgentSettings(
        device_id="chaos-1", profile="car-ecu", broker_host=live_broker.host, broker_port=live_broker.port,
        topic_root=topic_root, data_dir=tmp_path / "dev", controller_public_key=pem, repair_timeout_s=0.5,
        watch_seconds=0.2, reconnect_min_delay_s=0.2, reconnect_max_delay_s=1.0,
    ))
    agent.start()
    try:
        wait_for(lambda: agent.status()["connected"], 10, "agent connected")
        r = api.post("/deployments", json={"model": "chaos", "version": 1, "target": {"device_ids": ["chaos-1"]}})
        assert r.status_code == 201, r.text

        def received() -> int:
            dl: dict[str, Any] | None = agent.status()["download"]
            return int(dl["received"]) if dl else 0

        wait_for(lambda: received() >= 8, 20, "first blocks")
        live_broker.stop(kill=True)
        have = received()
        assert 0 < have < total, (have, total)
        wait_for(lambda: not agent.status()["connected"], 10, "agent notices the crash")
        restarted = time.monotonic()
        live_broker.start()

        wait_for(lambda: (agent.status()["active_model"] or {}).get("name") == "chaos", 60, "model active")
        asked_after = [n for ts, n in agent.updater.request_log if ts >= restarted]
        assert asked_after, "the agent asked for the rest after reconnecting"
        assert asked_after[0] <= total - have, "resumed from the blocks it had, not from zero"
        dep = api.get(f"/deployments/{r.json()['id']}").json()
        wait_for(lambda: api.get(f"/deployments/{r.json()['id']}").json()["state"] == "completed", 20,
                 "controller sees the deployment complete")
        assert dep["devices"][0]["device_id"] == "chaos-1"
        y = agent.predict(np.zeros((1, 64), np.float32))
        assert y.shape == (1, 10)
    finally:
        agent.stop()
