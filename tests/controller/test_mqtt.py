"""The controller's MQTT side against a real Mosquitto: desired state, block server, ingest, robustness."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import pytest
import zstandard
from prometheus_client.parser import text_string_to_metric_families

from controller.settings import Settings
from controller.testing import RunningController, start_controller
from shared import codec, signing
from shared.blocks import decode_block
from shared.messages import (
    BlockRequest,
    Command,
    CommandKind,
    ControllerState,
    DesiredState,
    DeviceState,
    Event,
    EventKind,
    LatencyStats,
    ModelRef,
    Telemetry,
)
from shared.topics import Topics
from simulators.broker import MosquittoProcess
from tests.waiting import wait_until

from .conftest import Probe, make_onnx, make_samples

API = "/api/v1"


def metric(ctl: RunningController, name: str, **labels: str) -> float:
    text = httpx.get(ctl.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def register(ctl: RunningController, *devices: tuple[str, str]) -> None:
    for device_id, profile in devices:
        r = httpx.post(ctl.url + f"{API}/devices", json={"device_id": device_id, "profile": profile})
        assert r.status_code == 201, r.text


def upload(ctl: RunningController, data: bytes, name: str = "tiny", samples: bytes | None = None) -> dict[str, Any]:
    files: dict[str, Any] = {"file": ("m.onnx", data)}
    if samples is not None:
        files["samples"] = ("s.npz", samples)
    r = httpx.post(ctl.url + f"{API}/models", files=files, data={"name": name})
    assert r.status_code == 201, r.text
    return r.json()


def deploy(ctl: RunningController, name: str, version: int, device_ids: list[str]) -> str:
    r = httpx.post(
        ctl.url + f"{API}/deployments", json={"model": name, "version": version, "target": {"device_ids": device_ids}}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_deployment_publishes_signed_retained_desired(controller: RunningController, probe: Probe) -> None:
    topics = Topics(controller.settings.topic_root)
    register(controller, ("car-1", "car-ecu"), ("car-2", "car-ecu"))
    model = make_onnx(seed=11)
    meta = upload(controller, model, samples=make_samples())
    dep_id = deploy(controller, "tiny", meta["version"], ["car-1", "car-2"])
    # subscribe only afterwards: the manifest must be retained
    probe.subscribe(topics.desired("car-1"), topics.controller_state())
    got = probe.collect(5, until=lambda g: len(g) >= 2)
    by_topic = {t: (p, r) for t, p, r in got}
    payload, retained = by_topic[topics.desired("car-1")]
    assert retained
    desired = codec.decode(payload, DesiredState)
    pem = httpx.get(controller.url + f"{API}/keys/public").json()["public_key_pem"]
    signing.verify(desired, signing.load_public_key(pem))
    assert desired.device_id == "car-1" and desired.deployment_id == dep_id
    assert desired.model == ModelRef(name="tiny", version=1, sha256=hashlib.sha256(model).hexdigest())
    assert desired.runtime == "onnxruntime" and desired.profile == "car-ecu" and desired.size == len(model)
    assert desired.block_size == 16 * 1024 and desired.block_count >= 1
    assert desired.wire_sha256 == meta["wire_sha256"] and desired.wire_size == meta["wire_size"]
    assert len(desired.self_test) == 4 and all(v.expected_top1 is not None for v in desired.self_test)
    assert desired.expires_at is not None and desired.expires_at - desired.issued_at == pytest.approx(7 * 86400)
    ctl_state, ctl_retained = by_topic[topics.controller_state()]
    assert ctl_retained and codec.decode(ctl_state, ControllerState).online
    tampered = desired.model_copy(update={"size": desired.size + 1})
    with pytest.raises(Exception, match="signature"):
        signing.verify(tampered, signing.load_public_key(pem))


def _frames(got: list[tuple[str, bytes, bool]], topic: str) -> list[Any]:
    return [decode_block(p) for t, p, _ in got if t == topic]


def test_block_server_coalesces_and_reassembles(mqtt_settings: Settings, probe: Probe) -> None:
    ctl = start_controller(mqtt_settings.model_copy(update={"block_size": 1024}))
    try:
        topics = Topics(ctl.settings.topic_root)
        register(ctl, ("a1", "car-ecu"), ("a2", "car-ecu"))
        model = make_onnx(n_in=64, n_out=64, hidden=64, compressible=True)
        meta = upload(ctl, model)
        assert meta["encoding"] == "zstd" and meta["wire_size"] < meta["size"]
        deploy(ctl, "tiny", 1, ["a1", "a2"])
        desired = codec.decode(probe_retained(probe, topics.desired("a1")), DesiredState)
        wire_sha, count = desired.wire_sha256, desired.block_count
        assert count > 4
        probe.subscribe(topics.artifact_blocks(wire_sha), topics.blocks("a1"), topics.blocks("a2"))
        for dev in ("a1", "a2"):
            req = BlockRequest(device_id=dev, sha256=wire_sha, ranges=[(0, count)])
            probe.publish(topics.blocks_get(dev), codec.encode(req))
        got = probe.collect(10, until=lambda g: len(g) >= count)
        probe.collect(0.8)  # nothing else may arrive
        broadcast = _frames(got, topics.artifact_blocks(wire_sha))
        assert sorted(b.index for b in broadcast) == list(range(count))
        assert _frames(got, topics.blocks("a1")) == [] and _frames(got, topics.blocks("a2")) == []
        wire = b"".join(b.data for b in sorted(broadcast, key=lambda b: b.index))
        assert hashlib.sha256(wire).hexdigest() == wire_sha and all(b.sha256 == wire_sha for b in broadcast)
        assert hashlib.sha256(zstandard.ZstdDecompressor().decompress(wire)).hexdigest() == meta["sha256"]

        # one device repairing a few blocks: unicast on its own topic; out-of-range part is dropped
        req = BlockRequest(
            device_id="a2", sha256=wire_sha, ranges=[(1, 3), (count - 1, count + 50), (count + 5, count + 9)]
        )
        probe.publish(topics.blocks_get("a2"), codec.encode(req))
        got = probe.collect(5, until=lambda g: len(g) >= 3)
        assert sorted(b.index for b in _frames(got, topics.blocks("a2"))) == [1, 2, count - 1]
        assert metric(ctl, "edgefleet_controller_blocks_sent_total", mode="broadcast") == count
        assert metric(ctl, "edgefleet_controller_blocks_sent_total", mode="unicast") == 3
        assert metric(ctl, "edgefleet_controller_messages_rejected_total", kind="blocks_get", reason="bad_range") == 1

        unknown = BlockRequest(device_id="a1", sha256="ab" * 32, ranges=[(0, 1)])
        probe.publish(topics.blocks_get("a1"), codec.encode(unknown))
        stranger = BlockRequest(device_id="zz", sha256=wire_sha, ranges=[(0, 1)])
        probe.publish(topics.blocks_get("zz"), codec.encode(stranger))
        wait_until(
            lambda: (
                metric(
                    ctl, "edgefleet_controller_messages_rejected_total", kind="blocks_get", reason="unknown_artifact"
                )
                == 1
                and metric(
                    ctl, "edgefleet_controller_messages_rejected_total", kind="blocks_get", reason="unknown_device"
                )
                == 1
            ),
            what="unknown artifact/device counted",
        )
        assert metric(ctl, "edgefleet_controller_block_requests_total") == 3
    finally:
        ctl.stop()


def probe_retained(probe: Probe, topic: str) -> bytes:
    probe.subscribe(topic)
    got = probe.collect(5, until=lambda g: any(t == topic for t, _, _ in g))
    payloads = [p for t, p, _ in got if t == topic]
    assert payloads, f"nothing retained on {topic}"
    return payloads[-1]


def _state(device_id: str, online: bool = True, session: int = 1, model: ModelRef | None = None) -> DeviceState:
    return DeviceState(
        device_id=device_id,
        online=online,
        session=session,
        agent_version="0.1.0",
        profile="car-ecu",
        runtimes=["onnxruntime"],
        active_model=model,
        update_state="idle",
    )


def _telemetry(device_id: str, seq: int, p95: float) -> Telemetry:
    return Telemetry(
        device_id=device_id,
        seq=seq,
        interval_s=1.0,
        count=100,
        errors=1,
        latency=LatencyStats(p50_ms=p95 / 2, p95_ms=p95, p99_ms=p95 * 1.2, max_ms=p95 * 2, mean_ms=p95 / 2),
        cpu_percent=12.5,
        rss_bytes=10_000_000,
        temperature_c=41.0,
        battery_pct=80.0,
    )


def test_ingest_state_telemetry_events(controller: RunningController, probe: Probe) -> None:
    topics = Topics(controller.settings.topic_root)
    register(controller, ("car-1", "car-ecu"))
    meta = upload(controller, make_onnx())
    dep_id = deploy(controller, "tiny", 1, ["car-1"])
    ref = ModelRef(name="tiny", version=1, sha256=meta["sha256"])
    probe.publish(topics.state("car-1"), codec.encode(_state("car-1")), retain=True)
    for seq, p95 in enumerate([0.5, 0.7, 0.6]):
        probe.publish(topics.telemetry("car-1"), codec.encode(_telemetry("car-1", seq, p95)))
    for kind in (EventKind.DOWNLOADING, EventKind.VERIFYING, EventKind.SELF_TESTING, EventKind.ACTIVE):
        ev = Event(device_id="car-1", kind=kind, deployment_id=dep_id, model=ref, progress=1.0)
        probe.publish(topics.events("car-1"), codec.encode(ev))

    def deployed() -> dict[str, Any] | None:
        dep = httpx.get(controller.url + f"{API}/deployments/{dep_id}").json()
        return dep if dep["state"] == "completed" else None

    dep = wait_until(deployed, what="deployment completed")
    assert dep["devices"][0]["state"] == "active" and dep["counts"] == {"active": 1}
    tel = wait_until(lambda: httpx.get(controller.url + f"{API}/devices/car-1/telemetry").json(), what="telemetry")
    wait_until(lambda: len(httpx.get(controller.url + f"{API}/devices/car-1/telemetry").json()) == 3, what="3 rows")
    tel = httpx.get(controller.url + f"{API}/devices/car-1/telemetry", params={"limit": 2}).json()
    assert [t["seq"] for t in tel] == [2, 1] and tel[0]["p95_ms"] == 0.6 and tel[0]["rss_bytes"] == 10_000_000
    events = httpx.get(controller.url + f"{API}/devices/car-1/events").json()
    assert [e["kind"] for e in events] == ["active", "self_testing", "verifying", "downloading"]
    dev = httpx.get(controller.url + f"{API}/devices/car-1").json()
    assert dev["online"] is True and dev["session"] == 1 and dev["last_p95_ms"] == 0.6
    assert dev["state"]["agent_version"] == "0.1.0" and dev["last_telemetry"]["seq"] == 2
    assert metric(controller, "edgefleet_controller_devices_online") == 1
    assert metric(controller, "edgefleet_controller_deployment_devices", state="active") == 1
    assert metric(controller, "edgefleet_controller_messages_ingested_total", kind="telemetry") == 3
    assert metric(controller, "edgefleet_controller_messages_ingested_total", kind="events") == 4
    assert metric(controller, "edgefleet_controller_telemetry_p95_latency_ms_count") == 3

    # the Will of an older session must not take the newer session offline
    probe.publish(topics.state("car-1"), codec.encode(_state("car-1", session=2)), retain=True)
    probe.publish(topics.state("car-1"), codec.encode(_state("car-1", online=False, session=1)), retain=True)
    probe.publish(topics.telemetry("car-1"), codec.encode(_telemetry("car-1", 9, 0.5)))
    wait_until(lambda: httpx.get(controller.url + f"{API}/devices/car-1").json()["last_telemetry"]["seq"] == 9)
    dev = httpx.get(controller.url + f"{API}/devices/car-1").json()
    assert dev["online"] is True and dev["session"] == 2
    # a rollback after active is recorded
    rb = Event(device_id="car-1", kind=EventKind.ROLLED_BACK, deployment_id=dep_id, reason="p95_over_budget")
    probe.publish(topics.events("car-1"), codec.encode(rb))
    dep = wait_until(
        lambda: (d := httpx.get(controller.url + f"{API}/deployments/{dep_id}").json())["state"] == "failed" and d
    )
    assert dep["devices"][0]["reason"] == "p95_over_budget"


def test_malformed_payloads_counted_and_ingest_survives(controller: RunningController, probe: Probe) -> None:
    topics = Topics(controller.settings.topic_root)
    register(controller, ("m-1", "car-ecu"))
    valid = {
        "state": codec.encode(_state("m-1")),
        "telemetry": codec.encode(_telemetry("m-1", 1, 0.4)),
        "events": codec.encode(Event(device_id="m-1", kind=EventKind.DOWNLOADING)),
        "blocks_get": codec.encode(BlockRequest(device_id="m-1", sha256="cd" * 32, ranges=[(0, 1)])),
    }
    topic_of = {
        "state": topics.state("m-1"),
        "telemetry": topics.telemetry("m-1"),
        "events": topics.events("m-1"),
        "blocks_get": topics.blocks_get("m-1"),
    }
    bad = {
        "bad_json": [b"\xff\xfe garbage", b"{not json", valid["telemetry"][: len(valid["telemetry"]) // 2]],
        "oversized": [b"{" + b" " * (codec.MAX_JSON_PAYLOAD + 10) + b"}"],
        "schema": [json.dumps({"device_id": "m-1", "hello": 1}).encode(), b"[1, 2, 3]"],
        "schema_version": [json.dumps({**json.loads(valid["telemetry"]), "schema_version": 99}).encode()],
        "device_mismatch": [],
    }
    for kind, topic in topic_of.items():
        for payloads in bad.values():
            for payload in payloads:
                probe.publish(topic, payload)
        other = json.loads(valid[kind])
        other["device_id"] = "m-2"
        probe.publish(topic, json.dumps(other).encode())
        probe.publish(topic, valid[kind])
    probe.publish(f"{topics.root}/devices/bad id/telemetry", valid["telemetry"])
    probe.publish(topics.events("m-1"), codec.encode(Event(device_id="m-1", kind=EventKind.VERIFYING)))

    wait_until(lambda: len(httpx.get(controller.url + f"{API}/devices/m-1/events").json()) == 2, what="valid events")
    for kind in topic_of:
        counts = {
            r: metric(controller, "edgefleet_controller_messages_rejected_total", kind=kind, reason=r)
            for r in ("bad_json", "oversized", "schema", "schema_version", "device_mismatch")
        }
        assert counts == {"bad_json": 3, "oversized": 1, "schema": 2, "schema_version": 1, "device_mismatch": 1}, kind
    assert metric(controller, "edgefleet_controller_messages_rejected_total", kind="unknown", reason="bad_topic") == 1
    dev = httpx.get(controller.url + f"{API}/devices/m-1").json()
    assert dev["online"] and dev["last_telemetry"]["seq"] == 1
    assert httpx.get(controller.url + "/healthz").json()["mqtt_connected"] is True


def test_unknown_device_counted_not_stored(controller: RunningController, probe: Probe) -> None:
    topics = Topics(controller.settings.topic_root)
    register(controller, ("known", "car-ecu"))
    probe.publish(topics.telemetry("ghost"), codec.encode(_telemetry("ghost", 1, 0.3)))
    probe.publish(topics.state("ghost"), codec.encode(_state("ghost")))
    probe.publish(topics.telemetry("known"), codec.encode(_telemetry("known", 1, 0.3)))
    wait_until(lambda: httpx.get(controller.url + f"{API}/devices/known/telemetry").json(), what="known telemetry")
    wait_until(
        lambda: (
            metric(
                controller, "edgefleet_controller_messages_rejected_total", kind="telemetry", reason="unknown_device"
            )
            == 1
        )
    )
    assert (
        metric(controller, "edgefleet_controller_messages_rejected_total", kind="state", reason="unknown_device") == 1
    )
    assert httpx.get(controller.url + f"{API}/devices/ghost").status_code == 404
    assert [d["device_id"] for d in httpx.get(controller.url + f"{API}/devices").json()] == ["known"]


def test_restart_keeps_state_and_republishes(mqtt_settings: Settings, probe: Probe) -> None:
    topics = Topics(mqtt_settings.topic_root)
    ctl = start_controller(mqtt_settings)
    try:
        register(ctl, ("r-1", "car-ecu"))
        meta = upload(ctl, make_onnx(seed=4))
        dep_id = deploy(ctl, "tiny", 1, ["r-1"])
        probe.publish(topics.telemetry("r-1"), codec.encode(_telemetry("r-1", 5, 0.9)))
        probe.publish(
            topics.events("r-1"), codec.encode(Event(device_id="r-1", kind=EventKind.DOWNLOADING, deployment_id=dep_id))
        )
        wait_until(lambda: httpx.get(ctl.url + f"{API}/devices/r-1/events").json(), what="event stored")
        wait_until(lambda: httpx.get(ctl.url + f"{API}/devices/r-1/telemetry").json(), what="telemetry stored")
        key = httpx.get(ctl.url + f"{API}/keys/public").json()
    finally:
        ctl.stop()
    probe.subscribe(topics.controller_state())
    offline = probe.collect(3, until=lambda g: any(t == topics.controller_state() for t, _, _ in g))
    assert not codec.decode([p for t, p, _ in offline if t == topics.controller_state()][-1], ControllerState).online
    # the broker loses the retained manifest; the restarted controller republishes it from the database
    probe.publish(topics.desired("r-1"), b"", retain=True)

    ctl = start_controller(mqtt_settings)
    try:
        assert httpx.get(ctl.url + f"{API}/keys/public").json() == key
        assert httpx.get(ctl.url + f"{API}/models/tiny/versions/1").json()["sha256"] == meta["sha256"]
        dep = httpx.get(ctl.url + f"{API}/deployments/{dep_id}").json()
        assert dep["devices"][0]["state"] == "downloading"
        assert httpx.get(ctl.url + f"{API}/devices/r-1/telemetry").json()[0]["seq"] == 5
        assert httpx.get(ctl.url + f"{API}/models/tiny/versions/1/artifact").content == make_onnx(seed=4)
        desired = codec.decode(probe_retained(probe, topics.desired("r-1")), DesiredState)
        assert desired.deployment_id == dep_id
        # the next upload continues the version sequence
        assert upload(ctl, make_onnx(seed=5))["version"] == 2
    finally:
        ctl.stop()
    time.sleep(0.1)


def test_broker_restart_reconnects_and_ingests(
    controller: RunningController, live_broker: MosquittoProcess, probe: Probe
) -> None:
    topics = Topics(controller.settings.topic_root)
    register(controller, ("b-1", "car-ecu"))
    bridge = controller.app.state.bridge
    live_broker.restart(kill=True)
    wait_until(lambda: not bridge.connected, timeout=10, what="disconnect noticed")
    assert bridge.wait_connected(30)
    fresh = Probe(live_broker)
    try:
        fresh.publish(topics.telemetry("b-1"), codec.encode(_telemetry("b-1", 7, 0.2)))
        wait_until(
            lambda: httpx.get(controller.url + f"{API}/devices/b-1/telemetry").json(), what="telemetry after restart"
        )
        fresh.subscribe(topics.controller_state())
        got = fresh.collect(5, until=lambda g: bool(g))
        assert codec.decode(got[-1][1], ControllerState).online
    finally:
        fresh.close()


def test_signed_command_published(controller: RunningController, probe: Probe) -> None:
    topics = Topics(controller.settings.topic_root)
    register(controller, ("cmd-1", "car-ecu"))
    probe.subscribe(topics.commands("cmd-1"))
    url = controller.url + f"{API}/devices/cmd-1/commands"
    bad = httpx.post(url, json={"kind": "set_interval", "args": {}})
    assert bad.status_code == 422 and "interval_s" in bad.json()["detail"]
    r = httpx.post(url, json={"kind": "set_interval", "args": {"interval_s": 2.5}})
    assert r.status_code == 202, r.text
    got = probe.collect(5, until=lambda g: bool(g))
    assert got and got[0][0] == topics.commands("cmd-1") and not got[0][2]
    command = codec.decode(got[0][1], Command)
    pem = httpx.get(controller.url + f"{API}/keys/public").json()["public_key_pem"]
    signing.verify(command, signing.load_public_key(pem))
    assert command.command_id == r.json()["command_id"] and command.args == {"interval_s": 2.5}
    assert command.kind is CommandKind.SET_INTERVAL and command.expires_at is not None
