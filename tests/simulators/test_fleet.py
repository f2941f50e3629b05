"""Fleet: real agents against a real Mosquitto publish their birth, serve, and register over HTTP."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from shared.codec import decode
from shared.messages import DeviceState, Telemetry
from shared.signing import generate_private_key, public_key_pem
from shared.topics import Channel, Topics
from simulators.broker import MosquittoProcess
from simulators.fleet import (
    DeviceSpec,
    Fleet,
    FleetError,
    assign_profiles,
    device_specs,
    parse_mix,
    split_host_port,
)

MIX = "smart-lock=1,car-ecu=1,medical-monitor=1"


# -- pure helpers ---------------------------------------------------------------------
def test_parse_mix() -> None:
    assert parse_mix("smart-lock=2, car-ecu=1") == {"smart-lock": 2.0, "car-ecu": 1.0}
    assert parse_mix("car-ecu") == {"car-ecu": 1.0}
    for bad in ("toaster=1", "car-ecu=x", "car-ecu=0", "", "car-ecu=-1"):
        with pytest.raises(FleetError):
            parse_mix(bad)


def test_profiles_are_interleaved_in_proportion() -> None:
    profiles = assign_profiles(30, {"smart-lock": 2, "car-ecu": 1, "medical-monitor": 1})
    assert profiles.count("smart-lock") == 15
    assert profiles.count("car-ecu") in (7, 8) and profiles.count("medical-monitor") in (7, 8)
    assert len(set(profiles[:4])) == 3  # spread out, not in blocks


def test_device_ids() -> None:
    specs = device_specs(3, parse_mix(MIX), prefix="sim", group="g")
    assert [s.device_id for s in specs] == ["sim-lock-001", "sim-car-002", "sim-med-003"]
    assert {s.group for s in specs} == {"g"}
    with pytest.raises(FleetError):
        DeviceSpec("sim-x-1", "toaster")


def test_split_host_port() -> None:
    assert split_host_port("broker:1884") == ("broker", 1884)
    assert split_host_port("broker") == ("broker", 1883)


# -- with a real broker and the real agent -------------------------------------------
class Collector:
    """A paho client that records decoded messages on one channel for every device."""

    def __init__(self, broker: MosquittoProcess, topics: Topics, channel: Channel, model: type[Any]) -> None:
        self.messages: list[Any] = []
        self._lock = threading.Lock()
        self._model = model
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"col-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *a: c.subscribe(topics.all_devices(channel), qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            with self._lock:
                self.messages.append(decode(msg.payload, self._model))

    def wait_for(self, pred: Callable[[list[Any]], bool], timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.messages)
            if pred(snapshot):
                return snapshot
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout}s; got {snapshot}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def states(live_broker: MosquittoProcess, topic_root: str) -> Iterator[Collector]:
    col = Collector(live_broker, Topics(topic_root), Channel.STATE, DeviceState)
    yield col
    col.close()


@pytest.fixture
def key_pem() -> str:
    """Also the guard for tests that start agents: skipped until agent.app exists."""
    pytest.importorskip("agent.app")
    return public_key_pem(generate_private_key().public_key())


def _online(msgs: list[DeviceState]) -> dict[str, DeviceState]:
    latest: dict[str, DeviceState] = {}
    for m in msgs:
        latest[m.device_id] = m
    return {k: v for k, v in latest.items() if v.online}


def test_fleet_agents_publish_birth_and_death(
    live_broker: MosquittoProcess, topic_root: str, states: Collector, key_pem: str, tmp_path: Path
) -> None:
    fleet = Fleet.from_mix(
        3,
        MIX,
        broker_host=live_broker.host,
        broker_port=live_broker.port,
        topic_root=topic_root,
        data_dir=tmp_path,
        public_key_pem=key_pem,
        rate_hz=0,
    )
    with fleet:
        msgs = states.wait_for(lambda m: len(_online(m)) == 3)
        online = _online(msgs)
        assert {d: s.profile for d, s in online.items()} == {
            "sim-lock-001": "smart-lock",
            "sim-car-002": "car-ecu",
            "sim-med-003": "medical-monitor",
        }
        assert all((tmp_path / d).is_dir() for d in online)
        assert "3 devices" in fleet.summary()
    states.wait_for(lambda m: not _online(m))


def test_preinstalled_fleet_serves_with_slowdown_and_reports_telemetry(
    live_broker: MosquittoProcess, topic_root: str, key_pem: str, tmp_path: Path
) -> None:
    telemetry = Collector(live_broker, Topics(topic_root), Channel.TELEMETRY, Telemetry)
    fleet = Fleet.from_mix(
        3,
        MIX,
        broker_host=live_broker.host,
        broker_port=live_broker.port,
        topic_root=topic_root,
        data_dir=tmp_path,
        public_key_pem=key_pem,
        rate_hz=20,
        preinstall=True,
        agent_overrides={"telemetry_interval_s": 0.5},
    )
    try:
        fleet.start()
        reports = telemetry.wait_for(
            lambda m: {t.device_id for t in m if t.count > 0 and t.model is not None} == set(fleet_ids(fleet))
        )
        for dev in fleet:
            assert dev.hardware.inferences > 0
            assert dev.hardware.slept_s > 0  # the compute slowdown was applied to real inferences
        lock = [t for t in reports if t.device_id == "sim-lock-001" and t.count > 0]
        assert lock[-1].battery_pct is not None
        assert lock[-1].model is not None and lock[-1].model.version == 0
        assert "inferences" in fleet.summary()
    finally:
        fleet.stop()
        telemetry.close()


def fleet_ids(fleet: Fleet) -> list[str]:
    return [d.device_id for d in fleet]


class FakeController(BaseHTTPRequestHandler):
    """Just the two endpoints a fleet calls; records what it was sent."""

    registered: list[dict[str, Any]] = []
    auth: list[str | None] = []
    pem = ""

    def do_GET(self) -> None:
        self._reply(200, {"key_id": "k1", "public_key_pem": self.pem})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.auth.append(self.headers.get("Authorization"))
        status = 409 if body in self.registered else 201
        self.registered.append(body)
        self._reply(status, body)

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_fleet_registers_over_http_and_pins_the_controller_key(
    live_broker: MosquittoProcess, topic_root: str, states: Collector, key_pem: str, tmp_path: Path
) -> None:
    FakeController.registered, FakeController.auth, FakeController.pem = [], [], key_pem
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeController)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        kwargs: dict[str, Any] = dict(
            broker_host=live_broker.host,
            broker_port=live_broker.port,
            topic_root=topic_root,
            controller_url=url,
            token="t0k",
            rate_hz=0,
            prefix="reg",
            group="lab",
        )
        with Fleet.from_mix(3, MIX, data_dir=tmp_path, **kwargs) as fleet:
            assert fleet.public_key_pem == key_pem
            states.wait_for(lambda m: len(_online(m)) == 3)
        assert FakeController.registered == [
            {"device_id": "reg-lock-001", "profile": "smart-lock", "group": "lab"},
            {"device_id": "reg-car-002", "profile": "car-ecu", "group": "lab"},
            {"device_id": "reg-med-003", "profile": "medical-monitor", "group": "lab"},
        ]
        assert FakeController.auth == ["Bearer t0k"] * 3
        # A restart re-registers; 409 (already there) is not an error.
        with Fleet.from_mix(3, MIX, data_dir=tmp_path, **kwargs):
            pass
    finally:
        server.shutdown()


def test_unreachable_controller_is_a_fleet_error(live_broker: MosquittoProcess, tmp_path: Path) -> None:
    fleet = Fleet.from_mix(
        1,
        "car-ecu",
        broker_host=live_broker.host,
        broker_port=live_broker.port,
        controller_url="http://127.0.0.1:9",
        data_dir=tmp_path,
    )
    with pytest.raises(FleetError, match="unreachable"):
        fleet.start()


def test_flaky_links_drop_and_recover(
    live_broker: MosquittoProcess, topic_root: str, states: Collector, key_pem: str, tmp_path: Path
) -> None:
    """Through the link proxy the broker sees outages (the Will: online=False) and devices come back."""
    fleet = Fleet.from_mix(
        3,
        MIX,
        broker_host=live_broker.host,
        broker_port=live_broker.port,
        topic_root=topic_root,
        data_dir=tmp_path,
        public_key_pem=key_pem,
        rate_hz=0,
        flaky=0.4,
        mean_outage_s=0.5,
        seed=1,
        agent_overrides={"reconnect_min_delay_s": 0.1, "reconnect_max_delay_s": 0.5, "keepalive": 5},
    )
    with fleet:

        def dropped_and_back(msgs: list[DeviceState]) -> bool:
            seen: dict[str, list[bool]] = {}
            for m in msgs:
                seen.setdefault(m.device_id, []).append(m.online)
            return any(v.count(True) >= 2 and False in v for v in seen.values())

        states.wait_for(dropped_and_back, timeout=30)


def test_a_fleet_beyond_the_select_limit_is_refused() -> None:
    with pytest.raises(FleetError, match="select"):
        Fleet.from_mix(400, MIX, broker_host="127.0.0.1", broker_port=1883)
    Fleet.from_mix(250, MIX, broker_host="127.0.0.1", broker_port=1883)  # fine, nothing started


@pytest.mark.parametrize("kill", [False, True])
def test_restart_device_starts_a_new_session_on_the_same_data_dir(
    live_broker: MosquittoProcess, topic_root: str, states: Collector, key_pem: str, tmp_path: Path, kill: bool
) -> None:
    fleet = Fleet.from_mix(
        2,
        MIX,
        broker_host=live_broker.host,
        broker_port=live_broker.port,
        topic_root=topic_root,
        data_dir=tmp_path,
        public_key_pem=key_pem,
        rate_hz=10,
        preinstall=True,
    )
    with fleet:
        first = _online(states.wait_for(lambda m: len(_online(m)) == 2))["sim-car-002"]
        old_hw = fleet.device("sim-car-002").hardware
        dev = fleet.restart_device("sim-car-002", kill=kill)
        assert dev.hardware is old_hw and dev.data_dir == tmp_path / "sim-car-002"

        def restarted(msgs: list[DeviceState]) -> bool:
            mine = [m for m in msgs if m.device_id == "sim-car-002"]
            return any(not m.online for m in mine) and mine[-1].online and mine[-1].session > first.session

        msgs = states.wait_for(restarted)
        assert [m for m in msgs if m.device_id == "sim-car-002"][-1].active_model is not None
        assert len(fleet) == 2
