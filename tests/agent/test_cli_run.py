"""``edgefleet agent run`` as a real process: birth on connect, offline state on SIGTERM, Will on SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from shared import codec
from shared.messages import DeviceState
from shared.topics import Topics
from simulators.broker import MosquittoProcess

ROOT = Path(__file__).resolve().parents[2]


class StateWatcher:
    def __init__(self, broker: MosquittoProcess, topic: str) -> None:
        self.states: list[DeviceState] = []
        self.changed = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, message: paho.MQTTMessage) -> None:
        with self.changed:
            self.states.append(codec.decode(message.payload, DeviceState))
            self.changed.notify_all()

    def wait(self, online: bool, timeout: float = 15) -> DeviceState:
        with self.changed:
            assert self.changed.wait_for(lambda: self.states and self.states[-1].online is online, timeout), self.states
            return self.states[-1]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _start(tmp_path: Path, broker: MosquittoProcess, topic_root: str, pem: str) -> subprocess.Popen[bytes]:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "cli-1"\nprofile = "car-ecu"\ntopic_root = "{topic_root}"\ncontroller_public_key = """{pem}"""\n'
    )
    env = {**os.environ, "EDGEFLEET_AGENT_TELEMETRY_INTERVAL_S": "0.5"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgefleet_cli",
            "agent",
            "run",
            "--config",
            str(config),
            "--broker",
            f"{broker.host}:{broker.port}",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_run_publishes_birth_and_clean_death(live_broker, topic_root, public_pem, tmp_path) -> None:  # type: ignore[no-untyped-def]
    watcher = StateWatcher(live_broker, Topics(topic_root).state("cli-1"))
    proc = _start(tmp_path, live_broker, topic_root, public_pem)
    try:
        birth = watcher.wait(online=True)
        assert birth.session == 1 and birth.profile == "car-ecu" and "onnxruntime" in birth.runtimes
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.stderr.read() if proc.stderr else ""
        death = watcher.wait(online=False)
        assert death.session == 1
        # A second run is a new session; killing it leaves the Will behind.
        proc = _start(tmp_path, live_broker, topic_root, public_pem)
        assert watcher.wait(online=True).session == 2
        proc.kill()
        proc.wait(5)
        assert watcher.wait(online=False, timeout=60).session == 2
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.close()
