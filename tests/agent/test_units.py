"""Telemetry aggregation, MQTT error mapping, settings, storage, hardware, counters, sources."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent import app, config, download, inference, mqtt, runtimes, slots, sources, telemetry, updater, verifier
from agent.config import AgentSettings, load_settings
from agent.counters import DropCounters
from agent.hardware import Hardware, HostHardware
from agent.inference import InferenceLoop
from agent.mqtt import map_reason_code
from agent.sources import ReplaySource
from agent.storage import atomic_write_json, next_session, read_json
from agent.telemetry import LatencyRecorder, Mark, window_since
from shared import signing
from shared.errors import TransportError


def test_latency_window_and_percentiles() -> None:
    rec = LatencyRecorder(capacity=8)
    mark = Mark.now(rec)
    for ms in range(1, 11):
        rec.record(ms / 1000)
    rec.errors += 2
    w = window_since(rec, mark)
    assert w.count == 10 and w.errors == 2 and w.error_rate == pytest.approx(2 / 12)
    assert w.latency is not None and w.latency.max_ms == pytest.approx(10)  # ring keeps the newest 8: 3..10
    assert w.latency.p50_ms == pytest.approx(np.percentile(np.arange(3, 11), 50))
    assert window_since(rec, Mark.now(rec)).latency is None
    with pytest.raises(ValueError):
        LatencyRecorder(capacity=10)


def test_every_paho_error_code_is_mapped() -> None:
    for code in MQTTErrorCode:
        mapped = map_reason_code(code)
        assert (mapped is None) == (code is MQTTErrorCode.MQTT_ERR_SUCCESS), code
        assert mapped is None or isinstance(mapped, TransportError)
    assert map_reason_code(ReasonCode(PacketTypes.CONNACK, "Success")) is None
    err = map_reason_code(ReasonCode(PacketTypes.CONNACK, "Not authorized"))
    assert isinstance(err, TransportError) and "Not authorized" in str(err)
    assert isinstance(map_reason_code(7), TransportError) and map_reason_code(0) is None


@pytest.fixture
def pem() -> str:
    return signing.public_key_pem(signing.generate_private_key().public_key())


def test_settings_env_file_and_overrides(tmp_path: Path, pem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(
        f'device_id = "from-file"\nprofile = "smart-lock"\nbroker_port = 1999\ncontroller_public_key = """{pem}"""\n'
    )
    s = load_settings(toml)
    assert (s.device_id, s.profile, s.broker_port) == ("from-file", "smart-lock", 1999)
    monkeypatch.setenv("EDGEFLEET_AGENT_BROKER_PORT", "2000")
    assert load_settings(toml).broker_port == 2000  # env wins over the file
    assert load_settings(toml, broker_port=2001).broker_port == 2001
    js = tmp_path / "agent.json"
    js.write_text(json.dumps({"device_id": "j", "profile": "car-ecu", "controller_public_key": pem}))
    assert load_settings(js).device_id == "j"
    key_file = tmp_path / "ctl.pem"
    key_file.write_text(pem)
    s = AgentSettings(
        device_id="d", profile="car-ecu", controller_public_key_file=key_file, watch_seconds=0.5, max_artifact_bytes=10
    )
    assert s.public_key() is not None
    assert s.device_profile().watch_seconds == 0.5 and s.device_profile().max_artifact_bytes == 10
    assert s.telemetry_interval_s == 5 and s.telemetry_qos == 1 and s.repair_timeout_s == 2
    assert "onnxruntime" in s.runtimes


@pytest.mark.parametrize("bad", [{"profile": "toaster"}, {"controller_public_key": None}, {"device_id": "a/b"}])
def test_settings_refuse_bad_values(pem: str, bad: dict) -> None:  # type: ignore[type-arg]
    values = {"device_id": "d", "profile": "car-ecu", "controller_public_key": pem, **bad}
    with pytest.raises(ValueError):
        AgentSettings(**values)


def test_storage_atomic_and_session_counter(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert read_json(tmp_path / "x.json") == {"a": 1}
    assert read_json(tmp_path / "missing.json") is None
    assert [next_session(tmp_path) for _ in range(3)] == [1, 2, 3]


def test_host_hardware() -> None:
    hw = HostHardware()
    assert isinstance(hw, Hardware)
    sum(i * i for i in range(200_000))
    assert (hw.cpu_percent() or 0) >= 0
    assert (hw.rss_bytes() or 0) > 1 << 20
    assert hw.battery_pct() is None
    t = hw.temperature_c()
    assert t is None or -50 < t < 150
    hw.after_inference(0.001)


def test_drop_counters_log_once_per_n(caplog: pytest.LogCaptureFixture) -> None:
    drops = DropCounters(log_every=10)
    for _ in range(25):
        drops.drop("desired", "malformed", "x")
    assert drops.snapshot() == {"desired:malformed": 25} and drops.total("desired") == 25
    assert len([r for r in caplog.records if "dropped" in r.message]) == 3  # 1st, 10th, 20th


class _Counting:
    skipped_no_model = 0

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []
        self.has_model = False

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(x)
        return x


def test_replay_source_and_inference_loop_pacing() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    src = ReplaySource(x, rate_hz=200)
    it = iter(src)
    assert [next(it)[0, 0] for _ in range(4)] == [0, 4, 8, 0]
    assert [s.shape for s in ReplaySource(x, 1, loop=False)] == [(1, 4)] * 3
    fake = _Counting()
    with InferenceLoop(fake, src) as loop:  # type: ignore[arg-type]
        time.sleep(0.1)
        fake.has_model = True
        time.sleep(0.3)
    assert fake.skipped_no_model > 5
    assert 30 <= loop.calls <= 90 and len(fake.seen) == loop.calls


@pytest.mark.parametrize(
    "module", [app, config, download, inference, mqtt, runtimes, slots, sources, telemetry, updater, verifier]
)
def test_public_surface_is_declared(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert all(hasattr(module, n) for n in names)


def test_pinned_key_shape_checked_at_start_and_loaded_lazily() -> None:
    from agent.trust import PinnedKey

    key = signing.generate_private_key()
    pinned = PinnedKey(signing.public_key_pem(key.public_key()))
    assert pinned.raw == key.public_key().public_bytes_raw()
    assert pinned.key_id == signing.key_id(key.public_key())
    with pytest.raises(ValueError, match="PEM"):
        PinnedKey("not a key")
    with pytest.raises(ValueError, match="Ed25519"):
        PinnedKey("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")


@pytest.mark.parametrize("backend", ["nacl", "cryptography"])
def test_pinned_key_verifies_like_cryptography(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both backends accept what the controller signs and refuse any change to it."""
    import sys

    from agent.trust import PinnedKey
    from shared.errors import SignatureError
    from shared.messages import Command, CommandKind

    if backend == "cryptography":
        monkeypatch.setitem(sys.modules, "nacl.signing", None)  # import fails -> fallback
    key = signing.generate_private_key()
    pinned = PinnedKey(signing.public_key_pem(key.public_key()))
    cmd = signing.sign(Command(device_id="d", command_id="c", kind=CommandKind.ROLLBACK), key)
    pinned.verify(cmd)
    for bad in (cmd.model_copy(update={"kind": CommandKind.PING}), cmd.model_copy(update={"signature": "AAAA"}),
                cmd.model_copy(update={"signature": "not base64!"}), cmd.model_copy(update={"signature": ""}),
                signing.sign(cmd, signing.generate_private_key())):
        with pytest.raises(SignatureError):
            pinned.verify(bad)


def test_env_overrides_file_and_kwargs_override_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = signing.public_key_pem(signing.generate_private_key().public_key())
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"device_id": "f", "profile": "car-ecu", "controller_public_key": pem, "broker_port": 1}))
    monkeypatch.setenv("EDGEFLEET_AGENT_BROKER_PORT", "2")
    monkeypatch.setenv("EDGEFLEET_AGENT_RUNTIMES", '["litert"]')
    assert config.load_settings(f).broker_port == 2
    assert config.load_settings(f).runtimes == ["litert"]
    assert config.load_settings(f, broker_port=3).broker_port == 3
    monkeypatch.setenv("EDGEFLEET_AGENT_NOPE", "x")
    with pytest.raises(ValueError, match="unknown agent setting"):
        config.load_settings(f)
