"""Full updates over a real Mosquitto: onnxruntime and LiteRT, refusals, idempotence, commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zstandard

from agent.app import Agent, NoActiveModelError
from shared.blocks import encode_block
from shared.messages import CommandKind, EventKind
from tests.agent.conftest import DEVICE, self_test_for
from tests.agent.fakecontroller import FakeController
from tests.waiting import wait_until

UPDATE_STEPS = ["downloading", "verifying", "self_testing", "switching", "active"]


def deploy_and_wait(fake: FakeController, manifest, kind: EventKind = EventKind.ACTIVE, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    fake.deploy(manifest)
    return fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is kind, timeout)


def install(fake: FakeController, model: bytes, x: np.ndarray, tmp: Path, version: int = 1, **kw):  # type: ignore[no-untyped-def]
    manifest = fake.manifest(
        model, device_id=DEVICE, version=version, self_test=self_test_for(model, "onnxruntime", x, tmp), **kw
    )
    deploy_and_wait(fake, manifest)
    return manifest


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_full_update_onnxruntime(
    fake: FakeController, make_agent: Callable[..., Agent], model_files, x, tmp_path, protocol
):  # type: ignore[no-untyped-def]
    agent = make_agent(mqtt_protocol=protocol)
    with pytest.raises(NoActiveModelError):
        agent.predict(x[:1])
    manifest = install(fake, model_files["v1"], x, tmp_path)
    assert fake.kinds(manifest.deployment_id) == UPDATE_STEPS
    assert agent.predict(x[:1]).shape == (1, 4)
    assert agent.status()["active_model"]["sha256"] == manifest.model.sha256
    assert agent.status()["phase"] == "active"


def test_full_update_litert(fake, make_agent, model_files, tflite_samples, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent(profile="smart-lock")
    data = model_files["tflite"]
    vectors = self_test_for(data, "litert", tflite_samples, tmp_path, top1=True)
    manifest = fake.manifest(
        data, device_id=DEVICE, runtime="litert", profile="smart-lock", block_size=2048, self_test=vectors
    )
    deploy_and_wait(fake, manifest)
    y = agent.predict(tflite_samples[:1])
    assert y.dtype == np.float32 and int(np.argmax(y)) == vectors[0].expected_top1


def test_zstd_encoded_update_with_broadcast_blocks(fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    fake.broadcast = True
    data = model_files["v1"]
    wire = zstandard.ZstdCompressor().compress(data)
    manifest = fake.manifest(
        data,
        device_id=DEVICE,
        encoding="zstd",
        wire=wire,
        block_size=512,
        self_test=self_test_for(data, "onnxruntime", x, tmp_path),
    )
    deploy_and_wait(fake, manifest)
    assert agent.status()["active_model"]["sha256"] == manifest.model.sha256


@pytest.mark.parametrize(
    "case",
    ["wrong_hash", "wrong_size", "bad_signature", "expired", "not_newer", "over_budget", "wrong_profile", "self_test"],
)
def test_refused_update_keeps_old_model_serving(case, fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    old = install(fake, model_files["v1"], x, tmp_path, version=5)
    before = agent.predict(x[:1])
    data = model_files["v2"]
    kw: dict = {"version": 6}
    expect_kind, expect_reason = EventKind.FAILED, None
    if case == "wrong_hash":
        # The controller serves different bytes than the ones it signed.
        manifest = fake.manifest(data, device_id=DEVICE, serve=False, **kw)
        fake.serve(manifest.wire_sha256, model_files["v3"], manifest.block_size)
        expect_reason = "hash_mismatch"
    elif case == "wrong_size":
        wire = zstandard.ZstdCompressor().compress(data + b"\0" * 100)
        manifest = fake.manifest(data, device_id=DEVICE, encoding="zstd", wire=wire, **kw)
        expect_reason = "size_mismatch"
    elif case == "bad_signature":
        good = fake.manifest(data, device_id=DEVICE, **kw)
        manifest = good.model_copy(update={"size": good.size + 1, "wire_size": good.size + 1})
        expect_kind, expect_reason = EventKind.REJECTED, "bad_signature"
    elif case == "expired":
        manifest = fake.manifest(data, device_id=DEVICE, expires_at=1.0, **kw)
        expect_kind, expect_reason = EventKind.REJECTED, "expired"
    elif case == "not_newer":
        manifest = fake.manifest(data, device_id=DEVICE, version=5)
        expect_kind, expect_reason = EventKind.REJECTED, "version_not_newer"
    elif case == "over_budget":
        manifest = fake.manifest(data + b"\0" * (3 << 20), device_id=DEVICE, serve=False, **kw)
        expect_kind, expect_reason = EventKind.REJECTED, "over_budget"
    elif case == "wrong_profile":
        manifest = fake.manifest(data, device_id=DEVICE, profile="medical-monitor", **kw)
        expect_kind, expect_reason = EventKind.REJECTED, "incompatible"
    else:
        vectors = self_test_for(model_files["v3"], "onnxruntime", x, tmp_path)  # answers of another model
        manifest = fake.manifest(data, device_id=DEVICE, self_test=vectors, **kw)
        expect_reason = "self_test_failed"
    event = deploy_and_wait(fake, manifest, expect_kind)
    assert event.reason == expect_reason
    assert agent.status()["active_model"]["sha256"] == old.model.sha256
    np.testing.assert_array_equal(agent.predict(x[:1]), before)
    if expect_kind is EventKind.REJECTED:
        assert fake.kinds(manifest.deployment_id) == ["rejected"]  # refused before any download


def test_retained_desired_for_active_model_is_idempotent(fake, make_agent, live_broker, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    manifest = install(fake, model_files["v1"], x, tmp_path)
    requests = len(fake.requests)
    live_broker.restart()  # the agent reconnects and receives the retained manifest again
    wait_until(lambda: agent.status()["connected"], 10, "reconnect")
    fake.command(DEVICE, CommandKind.PING)  # a round-trip proves the desired message was processed first
    fake.wait_event(lambda e: e.kind is EventKind.COMMAND_ACK)
    assert fake.kinds(manifest.deployment_id) == UPDATE_STEPS
    assert len(fake.requests) == requests


def test_agent_restart_serves_active_slot(make_agent, fake, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    manifest = install(fake, model_files["v1"], x, tmp_path)
    y = agent.predict(x[:1])
    agent.stop()
    again = make_agent(start=False)
    again.start()
    np.testing.assert_array_equal(again.predict(x[:1]), y)
    assert again.status()["active_model"]["version"] == manifest.model.version


def test_commands_ping_interval_rollback(fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    v1 = install(fake, model_files["v1"], x, tmp_path, version=1)
    y1 = agent.predict(x[:1])
    install(fake, model_files["v2"], x, tmp_path, version=2)
    assert not np.array_equal(agent.predict(x[:1]), y1)

    ping = fake.command(DEVICE, CommandKind.PING)
    fake.wait_event(lambda e: e.command_id == ping.command_id and e.kind is EventKind.COMMAND_ACK)
    interval = fake.command(DEVICE, CommandKind.SET_INTERVAL, interval_s=0.2)
    fake.wait_event(lambda e: e.command_id == interval.command_id and e.kind is EventKind.COMMAND_ACK)
    bad = fake.command(DEVICE, CommandKind.SET_INTERVAL, interval_s=-1)
    assert fake.wait_event(lambda e: e.command_id == bad.command_id).kind is EventKind.REJECTED
    unsigned = fake.command(DEVICE, CommandKind.ROLLBACK, sign=False)
    assert fake.wait_event(lambda e: e.command_id == unsigned.command_id).reason == "bad_signature"

    rollback = fake.command(DEVICE, CommandKind.ROLLBACK)
    fake.wait_event(lambda e: e.command_id == rollback.command_id and e.kind is EventKind.COMMAND_ACK)
    np.testing.assert_array_equal(agent.predict(x[:1]), y1)
    assert agent.status()["active_model"]["version"] == v1.model.version


def test_block_crc_is_checked(fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    """A damaged block is dropped and re-requested; the update still completes."""
    agent = make_agent()
    data = model_files["v1"]
    manifest = fake.manifest(data, device_id=DEVICE, serve=False)
    frame = bytearray(
        encode_block(manifest.wire_sha256, 0, manifest.block_count, manifest.wire_size, data[: manifest.block_size])
    )
    frame[-1] ^= 0xFF
    fake.deploy(manifest)
    fake.publish(fake.topics.blocks(DEVICE), bytes(frame))
    fake.serve(manifest.wire_sha256, data, manifest.block_size)
    fake.wait_event(lambda e: e.deployment_id == manifest.deployment_id and e.kind is EventKind.ACTIVE)
    assert agent.status()["dropped"].get("blocks:malformed", 0) >= 1


def test_newer_manifest_supersedes_a_running_download(fake, make_agent, model_files, x, tmp_path):  # type: ignore[no-untyped-def]
    agent = make_agent()
    first = fake.manifest(model_files["v1"], device_id=DEVICE, version=1, serve=False)  # never answered
    fake.deploy(first)
    fake.wait_event(lambda e: e.deployment_id == first.deployment_id and e.kind is EventKind.DOWNLOADING)
    second = install(fake, model_files["v2"], x, tmp_path, version=2)
    event = fake.wait_event(lambda e: e.deployment_id == first.deployment_id and e.kind is EventKind.FAILED)
    assert event.reason == "superseded"
    assert agent.status()["active_model"]["version"] == second.model.version
