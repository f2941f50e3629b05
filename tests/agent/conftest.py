"""Fixtures for agent tests: keys, tiny real models, a fake controller and an agent factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.app import Agent
from agent.config import AgentSettings
from agent.runtimes import load_model
from shared import signing
from shared.messages import SelfTestVector
from simulators.broker import MosquittoProcess
from tests.agent import models
from tests.agent.fakecontroller import FakeController
from tests.waiting import wait_until

DEVICE = "dev-1"


@pytest.fixture(scope="session")
def controller_key() -> Ed25519PrivateKey:
    return signing.generate_private_key()


@pytest.fixture(scope="session")
def public_pem(controller_key: Ed25519PrivateKey) -> str:
    return signing.public_key_pem(controller_key.public_key())


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("models")
    tflite, _ = models.tflite_int8(tmp)
    return {"v1": models.onnx_mlp(1), "v2": models.onnx_mlp(2), "v3": models.onnx_mlp(3), "tflite": tflite}


@pytest.fixture(scope="session")
def tflite_samples(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return models.tflite_int8(tmp_path_factory.mktemp("tfl"))[1]


def self_test_for(data: bytes, runtime: str, x: np.ndarray, tmp: Path, *, top1: bool = False) -> list[SelfTestVector]:
    """Vectors the way the controller makes them: run the real model on real inputs."""
    path = tmp / ("st.onnx" if runtime == "onnxruntime" else "st.tflite")
    path.write_bytes(data)
    model = load_model(path, runtime)  # type: ignore[arg-type]
    vectors = []
    for row in x[:3]:
        y = np.asarray(model.run(row[None, :].astype(np.float32))).ravel()
        vectors.append(
            SelfTestVector(
                input_shape=[1, row.size],
                data=row.astype(float).tolist(),
                expected=None if top1 else y.astype(float).tolist(),
                expected_top1=int(np.argmax(y)) if top1 else None,
                atol=1e-4,
            )
        )
    return vectors


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(7).random((4, models.N_IN), dtype=np.float32)


@pytest.fixture
def fake(live_broker: MosquittoProcess, topic_root: str, controller_key: Ed25519PrivateKey) -> Iterator[FakeController]:
    ctl = FakeController(live_broker.host, live_broker.port, topic_root, controller_key)
    yield ctl
    ctl.close()


@pytest.fixture
def make_agent(
    live_broker: MosquittoProcess, topic_root: str, public_pem: str, tmp_path: Path
) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def factory(device_id: str = DEVICE, hardware: Any = None, start: bool = True, **overrides: Any) -> Agent:
        values: dict[str, Any] = {
            "device_id": device_id,
            "profile": "car-ecu",
            "broker_host": live_broker.host,
            "broker_port": live_broker.port,
            "topic_root": topic_root,
            "data_dir": tmp_path / device_id,
            "controller_public_key": public_pem,
            "repair_timeout_s": 0.3,
            "reconnect_min_delay_s": 0.1,
            "reconnect_max_delay_s": 0.5,
            "watch_seconds": 0,
            "telemetry_interval_s": 0.5,
        }
        values.update(overrides)
        agent = Agent(AgentSettings(**values), hardware=hardware)
        agents.append(agent)
        if start:
            agent.start()
            wait_until(lambda: agent.status()["connected"], 10, "agent connected")
        return agent

    yield factory
    for agent in agents:
        agent.stop()


