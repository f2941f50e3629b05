"""Nothing devices send while the controller restarts is lost: the broker holds its session."""

from __future__ import annotations

from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from controller.settings import Settings
from controller.testing import run_controller
from shared import codec
from shared.messages import Event, EventKind, LatencyStats, Telemetry
from shared.topics import Topics
from simulators.broker import MosquittoProcess
from tests.waiting import wait_until


def test_events_and_telemetry_sent_while_controller_is_down_arrive_after_restart(
    live_broker: MosquittoProcess, topic_root: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "ctl", broker_port=live_broker.port, topic_root=topic_root)
    with run_controller(settings) as ctl:
        r = httpx.post(ctl.url + "/api/v1/devices", json={"device_id": "d-1", "profile": "car-ecu"})
        assert r.status_code == 201

    # Controller stopped. A device keeps reporting.
    topics = Topics(topic_root)
    dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="d-1-test")
    dev.connect(live_broker.host, live_broker.port)
    dev.loop_start()
    lat = LatencyStats(p50_ms=1, p95_ms=2, p99_ms=3, max_ms=4, mean_ms=1.5)
    for seq in range(5):
        tel = Telemetry(device_id="d-1", seq=seq, interval_s=1, count=10, latency=lat)
        dev.publish(topics.telemetry("d-1"), codec.encode(tel), qos=1).wait_for_publish(5)
    ev = Event(device_id="d-1", kind=EventKind.FAILED, reason="hash_mismatch", detail="while controller was down")
    dev.publish(topics.events("d-1"), codec.encode(ev), qos=1).wait_for_publish(5)
    dev.loop_stop()
    dev.disconnect()

    with run_controller(settings) as ctl:
        def arrived() -> bool:
            tel = httpx.get(ctl.url + "/api/v1/devices/d-1/telemetry", params={"limit": 50}).json()
            evs = httpx.get(ctl.url + "/api/v1/devices/d-1/events", params={"limit": 50}).json()
            tel = tel.get("items", tel) if isinstance(tel, dict) else tel
            evs = evs.get("items", evs) if isinstance(evs, dict) else evs
            return len(tel) == 5 and any(e.get("reason") == "hash_mismatch" for e in evs)

        wait_until(arrived, 15, "queued telemetry and event delivered after restart")
