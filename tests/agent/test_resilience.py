"""Broker crash and agent restart mid-download, malformed input on every topic, watch-phase rollback."""

from __future__ import annotations

import time

import numpy as np

from agent.inference import InferenceLoop
from agent.sources import ReplaySource
from shared import codec
from shared.blocks import encode_block
from shared.codec import MAX_JSON_PAYLOAD
from shared.messages import EventKind
from tests.agent import models
from tests.agent.conftest import DEVICE, self_test_for
from tests.waiting import wait_until

BIG_IN = 512  # ~33 KB model -> ~130 blocks of 256 bytes


def _big_manifest(fake, tmp_path, **kw):  # type: ignore[no-untyped-def]
    data = models.onnx_mlp(11, n_in=BIG_IN)
    x = np.random.default_rng(0).random((3, BIG_IN), dtype=np.float32)
    return fake.manifest(
        data, device_id=DEVICE, block_size=256, self_test=self_test_for(data, "onnxruntime", x, tmp_path), **kw
    )


def _received(agent) -> int:  # type: ignore[no-untyped-def]
    dl = agent.status()["download"]
    return dl["received"] if dl else 0


def _blocks_in(requests) -> int:  # type: ignore[no-untyped-def]
    return sum(end - start for r in requests for start, end in r.ranges)


def test_broker_killed_mid_download_resumes(fake, make_agent, live_broker, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    fake.blocks_per_s = 400
    manifest = _big_manifest(fake, tmp_path)
    total = manifest.block_count
    fake.deploy(manifest)
    wait_until(lambda: _received(agent) >= 30, 10, "first blocks")
    fake.serving = False
    live_broker.stop(kill=True)
    have = _received(agent)
    assert 0 < have < total
    before = len(fake.requests)
    wait_until(lambda: not agent.status()["connected"], 10, "agent notices the crash")
    fake.serving, fake.blocks_per_s = True, None
    restarted = time.monotonic()
    live_broker.start()
    fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is EventKind.ACTIVE, 20)
    # What the agent asked for once it was back: only the blocks it still missed.
    after = [asked for ts, asked in agent.updater.request_log if ts >= restarted]
    assert after, "agent re-requested after reconnect"
    assert max(after) <= total - have < total
    assert all(_blocks_in([r]) < total for r in fake.requests[before:])
    assert agent.status()["active_model"]["sha256"] == manifest.model.sha256


def test_agent_restart_mid_download_resumes_from_have(fake, make_agent, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    fake.blocks_per_s = 400
    manifest = _big_manifest(fake, tmp_path)
    total = manifest.block_count
    fake.deploy(manifest)
    wait_until(lambda: _received(agent) >= 30, 10, "first blocks")
    fake.serving = False
    agent.stop()
    have_file = tmp_path / DEVICE / "downloads" / f"{manifest.wire_sha256}.have"
    assert have_file.exists()
    before = len(fake.requests)
    fake.serving, fake.blocks_per_s = True, None
    again = make_agent()  # same data_dir; the retained manifest arrives again
    resumed = fake.wait_event(
        lambda e: (
            e.deployment_id == manifest.deployment_id
            and e.kind is EventKind.DOWNLOADING
            and (e.detail or "").startswith("resuming")
        )
    )
    fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is EventKind.ACTIVE, 20)
    assert again.updater.request_log[0][1] < total  # the new process asked only for what .have lacked
    assert all(_blocks_in([r]) < total for r in fake.requests[before:])
    assert resumed.progress and resumed.progress > 0
    assert again.status()["active_model"]["sha256"] == manifest.model.sha256


GARBAGE = [
    b"\xff\xfe\x00garbage",
    b'{"device_id": "dev-1", "kind":',
    b'{"unexpected": 1}',
    b"[]",
    b"x" * (MAX_JSON_PAYLOAD + 10),
]
BAD_BLOCKS = [
    b"\x00" * 10,
    b"EFB1" + b"\x00" * 20,
    b"NOPE" + b"\x00" * 60,
    b"EFB1" + b"\x01" * (1 << 20) + b"\x00" * 100,
]


def test_malformed_payloads_on_every_topic_are_counted(fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    t = fake.topics
    for payload in GARBAGE:
        fake.publish(t.desired(DEVICE), payload)
        fake.publish(t.commands(DEVICE), payload)
    fake.publish(t.desired(DEVICE), b"")  # empty = cleared desired state, not an error
    for payload in BAD_BLOCKS:
        fake.publish(t.blocks(DEVICE), payload)
    wait_until(lambda: agent.status()["dropped"].get("blocks:malformed", 0) >= len(BAD_BLOCKS), 10, "blocks counted")
    dropped = agent.status()["dropped"]
    assert dropped["desired:malformed"] == len(GARBAGE)
    assert dropped["commands:malformed"] == len(GARBAGE)

    # Garbage on the artifact's broadcast topic while a download waits for its blocks.
    data = model_files["v1"]
    fake.serving = False
    manifest = fake.manifest(data, device_id=DEVICE, self_test=self_test_for(data, "onnxruntime", x, tmp_path))
    fake.deploy(manifest)
    fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is EventKind.DOWNLOADING)
    time.sleep(0.2)  # the agent subscribes to the artifact topic after the event
    for payload in BAD_BLOCKS:
        fake.publish(t.artifact_blocks(manifest.wire_sha256), payload)
    wrong_count = encode_block(manifest.wire_sha256, 0, manifest.block_count + 1, manifest.wire_size, data[:1024])
    fake.publish(t.artifact_blocks(manifest.wire_sha256), wrong_count)
    wait_until(lambda: agent.status()["dropped"].get("artifact_blocks:malformed", 0) >= len(BAD_BLOCKS), 10, "art")
    fake.serving = True
    fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is EventKind.ACTIVE, 10)
    dropped = agent.status()["dropped"]
    assert dropped["artifact_blocks:mismatch"] == 1
    assert agent.predict(x[:1]).shape == (1, 4)


class SlowHardware:
    """Host-like hardware whose CPU can be made slower than the profile's budget."""

    def __init__(self) -> None:
        self.delay_s = 0.0

    def after_inference(self, elapsed_s: float) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)

    def cpu_percent(self) -> float | None:
        return 12.5

    def rss_bytes(self) -> int | None:
        return 1 << 20

    def temperature_c(self) -> float | None:
        return None

    def battery_pct(self) -> float | None:
        return 80.0


def test_watch_phase_rolls_back_on_latency(fake, make_agent, model_files, x, tmp_path, live_broker):  # type: ignore[no-untyped-def]
    hw = SlowHardware()
    agent = make_agent(hardware=hw, watch_seconds=1.0, p95_latency_ms=5.0)
    loop = InferenceLoop(agent, ReplaySource(x, rate_hz=200))
    loop.start()
    try:
        v1 = fake.manifest(
            model_files["v1"],
            device_id=DEVICE,
            version=1,
            self_test=self_test_for(model_files["v1"], "onnxruntime", x, tmp_path),
        )
        fake.deploy(v1)
        fake.wait_event(lambda e: e.deployment_id == v1.deployment_id and e.kind is EventKind.ACTIVE)
        assert fake.kinds(v1.deployment_id) == [
            "downloading",
            "verifying",
            "self_testing",
            "switching",
            "watching",
            "active",
        ]
        y1 = agent.predict(x[:1])
        hw.delay_s = 0.02  # 20 ms per inference on a 5 ms p95 budget
        v2 = fake.manifest(
            model_files["v2"],
            device_id=DEVICE,
            version=2,
            self_test=self_test_for(model_files["v2"], "onnxruntime", x, tmp_path),
        )
        fake.deploy(v2)
        event = fake.wait_event(lambda e: e.deployment_id == v2.deployment_id and e.kind is EventKind.ROLLED_BACK)
        assert event.reason == "p95_latency"
        hw.delay_s = 0.0
        np.testing.assert_array_equal(agent.predict(x[:1]), y1)
        assert agent.status()["active_model"]["version"] == 1
        assert loop.calls > 0 and agent.status()["skipped_no_model"] >= 0
        # The retained (bad) manifest is not installed again after a reconnect.
        live_broker.restart()
        wait_until(lambda: agent.status()["connected"], 10, "reconnect")
        time.sleep(0.5)
        assert fake.kinds(v2.deployment_id).count("downloading") == 1
        assert agent.status()["active_model"]["version"] == 1
    finally:
        loop.stop()


def test_telemetry_reports_latency(fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    import threading

    from shared.messages import Telemetry

    got: list[Telemetry] = []
    seen = threading.Event()
    agent = make_agent(hardware=SlowHardware(), telemetry_interval_s=0.3)
    fake.manifest  # noqa: B018
    fake._client.message_callback_add(
        fake.topics.telemetry(DEVICE),
        lambda c, u, m: (got.append(codec.decode(m.payload, Telemetry)), seen.set() if got[-1].count else None),
    )
    fake._client.subscribe(fake.topics.telemetry(DEVICE), qos=1)
    data = model_files["v1"]
    manifest = fake.manifest(data, device_id=DEVICE, self_test=self_test_for(data, "onnxruntime", x, tmp_path))
    fake.deploy(manifest)
    fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is EventKind.ACTIVE)
    for _ in range(50):
        agent.predict(x[:1])
    assert seen.wait(5)
    report = next(r for r in got if r.count)
    assert report.count == 50 and report.latency is not None and report.latency.p95_ms > 0
    assert report.battery_pct == 80.0 and report.model == manifest.model
    assert [r.seq for r in got] == list(range(got[0].seq, got[0].seq + len(got)))


def test_watch_phase_rolls_back_on_error_rate(fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    """A model that passes its self-test but fails on the device's real inputs is rolled back."""
    agent = make_agent(watch_seconds=1.5)
    loop = InferenceLoop(agent, ReplaySource(x, rate_hz=200))
    loop.start()
    try:
        v1 = fake.manifest(model_files["v1"], device_id=DEVICE, version=1,
                           self_test=self_test_for(model_files["v1"], "onnxruntime", x, tmp_path))
        fake.deploy(v1)
        fake.wait_event(lambda e: e.deployment_id == v1.deployment_id and e.kind is EventKind.ACTIVE)
        y1 = agent.predict(x[:1])
        # v2 expects 16 features: its own self-test vectors pass, the application's 8-feature rows fail.
        wide = models.onnx_mlp(12, n_in=16)
        x16 = np.random.default_rng(1).random((3, 16), dtype=np.float32)
        vectors = self_test_for(wide, "onnxruntime", x16, tmp_path)
        v2 = fake.manifest(wide, device_id=DEVICE, version=2, self_test=vectors)
        fake.deploy(v2)
        event = fake.wait_event(lambda e: e.deployment_id == v2.deployment_id and e.kind is EventKind.ROLLED_BACK)
        assert event.reason == "error_rate"
        assert "watching" in fake.kinds(v2.deployment_id)
        assert agent.status()["active_model"]["version"] == 1
        np.testing.assert_array_equal(agent.predict(x[:1]), y1)
    finally:
        loop.stop()
