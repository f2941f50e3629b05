"""Controller fixtures: tiny real models, settings on tmp dirs, an in-process controller, a paho probe."""

from __future__ import annotations

import io
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from controller.main import create_app
from controller.settings import Settings
from controller.testing import RunningController, start_controller
from simulators.broker import MosquittoProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "simulators" / "examples"


def make_onnx(n_in: int = 8, n_out: int = 4, hidden: int = 0, seed: int = 0, compressible: bool = False) -> bytes:
    """A real ONNX MLP built with onnx.helper; ``compressible`` makes weights zstd-friendly."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = []
    inits = []
    prev, width = "x", n_in
    layers = [hidden, n_out] if hidden else [n_out]
    for i, units in enumerate(layers):
        w = rng.standard_normal((width, units)).astype(np.float32)
        if compressible:
            w = np.round(w, 1)
            w[:, units // 2 :] = 0.0
        b = rng.standard_normal(units).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        prev, width = f"a{i}", units
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["y"], axis=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def make_samples(n: int = 6, n_in: int = 8, seed: int = 1) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.random.default_rng(seed).standard_normal((n, n_in)).astype(np.float32))
    return buf.getvalue()


@pytest.fixture(scope="session")
def onnx_model() -> bytes:
    return make_onnx()


@pytest.fixture(scope="session")
def tflite_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The committed example int8 .tflite, or one converted with tensorflow once per session."""
    example = EXAMPLES / "digits_mlp_int8.tflite"
    if example.is_file():
        return example.read_bytes()
    tf = pytest.importorskip("tensorflow")
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(4, activation="softmax")])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    data: bytes = conv.convert()
    return data




@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """REST-only settings (MQTT off) on a fresh SQLite file."""
    return Settings(data_dir=tmp_path / "ctl", mqtt_enabled=False)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def mqtt_settings(tmp_path: Path, live_broker: MosquittoProcess, topic_root: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "ctl",
        broker_host=live_broker.host,
        broker_port=live_broker.port,
        topic_root=topic_root,
        coalesce_ms=300,
        controller_id=f"test-{uuid.uuid4().hex[:6]}",
    )


@pytest.fixture
def controller(mqtt_settings: Settings) -> Iterator[RunningController]:
    ctl = start_controller(mqtt_settings)
    yield ctl
    ctl.stop()


class Probe:
    """A real paho client standing in for devices: publishes and records what it receives."""

    def __init__(self, broker: MosquittoProcess, client_id: str = "") -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}")
        self._subscribed: queue.Queue[Any] = queue.Queue()
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload), bool(m.retain)))
        self.client.on_subscribe = lambda *_a: self._subscribed.put(True)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def subscribe(self, *topics: str) -> None:
        for t in topics:
            self.client.subscribe(t, qos=1)
            self._subscribed.get(timeout=5)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def collect(
        self, timeout: float, until: Callable[[list[tuple[str, bytes, bool]]], bool] | None = None
    ) -> list[tuple[str, bytes, bool]]:
        got: list[tuple[str, bytes, bool]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got.append(self.messages.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
            if until is not None and until(got):
                break
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probe(live_broker: MosquittoProcess) -> Iterator[Probe]:
    p = Probe(live_broker)
    yield p
    p.close()
