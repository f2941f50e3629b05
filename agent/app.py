"""The agent: assembles settings, MQTT session, updater and telemetry, and serves predictions.

Threads: paho's network thread (callbacks only enqueue), one worker thread
(``edgefleet-agent``) that owns the updater, downloads and telemetry, and the
application's own threads calling :meth:`Agent.predict`.  ``predict`` reads
the current model from one attribute, so a switch is a single reference
assignment and needs no lock on the hot path.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from agent import verifier
from agent.config import AgentSettings, load_settings
from agent.counters import DropCounters
from agent.hardware import Hardware, HostHardware
from agent.mqtt import Connected, Disconnected, Inbound, InboxItem, MqttSession
from agent.runtimes import Model, map_runtime_error
from agent.slots import Slots
from agent.storage import next_session
from agent.telemetry import LatencyRecorder, Mark, build_telemetry, window_since
from agent.updater import Updater
from shared import codec
from shared.errors import EdgefleetError, ProtocolError
from shared.messages import BlockRequest, DeviceState, Event, ModelRef
from shared.topics import Channel, Topics
from shared.version import AGENT_VERSION

log = logging.getLogger("edgefleet.agent")

_TICK_S = 0.05


class NoActiveModelError(EdgefleetError):
    """predict() was called before any model was installed (or after a failed first install)."""


class _MqttLink:
    """Adapts the session to what the updater needs; topics are built here only."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    @property
    def connected(self) -> bool:
        return self._agent._session.connected

    def publish_event(self, event: Event) -> None:
        a = self._agent
        a._session.publish(a._topics.events(a.device_id), codec.encode(event), qos=1)

    def request_blocks(self, request: BlockRequest) -> None:
        a = self._agent
        a._session.publish(a._topics.blocks_get(a.device_id), codec.encode(request), qos=1)

    def subscribe_artifact(self, wire_sha256: str) -> None:
        self._agent._session.subscribe([self._agent._topics.artifact_blocks(wire_sha256)])

    def unsubscribe_artifact(self, wire_sha256: str) -> None:
        self._agent._session.unsubscribe(self._agent._topics.artifact_blocks(wire_sha256))

    def publish_state(self) -> None:
        self._agent._publish_state(online=True)


class Agent:
    def __init__(self, settings: AgentSettings, hardware: Hardware | None = None) -> None:
        self.settings = settings
        self.device_id = settings.device_id
        self.hardware: Hardware = hardware if hardware is not None else HostHardware()
        # Host hardware has nothing to emulate: skip the call on the hot path.
        self._after_inference = None if isinstance(self.hardware, HostHardware) else self.hardware.after_inference
        self.recorder = LatencyRecorder()
        self.drops = DropCounters()
        self._model: Model | None = None
        self._model_ref: ModelRef | None = None
        self.skipped_no_model = 0
        self._topics = Topics(settings.topic_root)
        self._data_dir = Path(settings.data_dir)
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._inbox: queue.Queue[InboxItem] = queue.Queue()
        self._session_no = 0
        self._mqtt: MqttSession | None = None
        self._telemetry_interval = settings.telemetry_interval_s
        self._telemetry_seq = 0
        self._telemetry_mark = Mark()
        self._next_telemetry = 0.0
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # guards status() snapshots of the updater, not predict
        ctx = verifier.TrustContext(
            device_id=settings.device_id,
            profile=settings.device_profile(),
            runtimes=frozenset(settings.runtimes),
            public_key=settings.public_key(),
        )
        self.updater = Updater(
            settings=settings,
            ctx=ctx,
            slots=Slots(self._data_dir),
            link=_MqttLink(self),
            serving=self,
            drops=self.drops,
        )

    @property
    def _session(self) -> MqttSession:
        if self._mqtt is None:
            raise RuntimeError("agent not started")
        return self._mqtt

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Load the active slot, connect, and start the worker; returns immediately."""
        if self._worker is not None:
            raise RuntimeError("agent already started")
        self.updater.restore()
        self._session_no = next_session(self._data_dir)
        will = codec.encode(self._state(online=False))
        self._mqtt = MqttSession(
            self.settings, will_topic=self._topics.state(self.device_id), will_payload=will, inbox=self._inbox
        )
        self._stop.clear()
        self._next_telemetry = time.monotonic() + self._telemetry_interval
        self._worker = threading.Thread(target=self._run, name=f"edgefleet-agent-{self.device_id}", daemon=True)
        self._worker.start()
        self._mqtt.start()

    def stop(self) -> None:
        """Publish offline state, disconnect and stop the worker; download progress is saved."""
        if self._worker is None:
            return
        self._stop.set()
        self._worker.join(timeout=10)
        self._worker = None
        self._session.stop(self._topics.state(self.device_id), codec.encode(self._state(online=False)))
        self.updater.close()

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inference (hot path) ----------------------------------------------------------------
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run the active model; latency (including the hardware hook) and errors go to telemetry."""
        model = self._model
        if model is None:
            raise NoActiveModelError(f"device {self.device_id} has no active model yet")
        if self._after_inference is not None:
            return self._predict_emulated(model, x, self._after_inference)
        t0 = time.perf_counter()
        try:
            y = model.run(x)
        except Exception as exc:
            self.recorder.errors += 1
            raise map_runtime_error(exc) from exc
        self.recorder.record(time.perf_counter() - t0)
        return y

    def _predict_emulated(
        self, model: Model, x: np.ndarray, after: Callable[[float], float | None]
    ) -> np.ndarray:
        # Thread CPU time, not wall time: runtimes run on this thread (one intra-op
        # thread), and waits for the GIL or a busy host are not the device's compute.
        c0, t0 = time.thread_time(), time.perf_counter()
        try:
            y = model.run(x)
        except Exception as exc:
            self.recorder.errors += 1
            raise map_runtime_error(exc) from exc
        device_latency = after(time.thread_time() - c0)
        self.recorder.record(time.perf_counter() - t0 if device_latency is None else device_latency)
        return y

    @property
    def has_model(self) -> bool:
        return self._model is not None

    # -- Serving protocol (called by the updater on the worker thread) -------------------------
    def current_model(self) -> Model | None:
        return self._model

    def swap_model(self, model: Model | None, ref: ModelRef | None) -> None:
        self._model, self._model_ref = model, ref

    def set_telemetry_interval(self, seconds: float) -> None:
        self._telemetry_interval = seconds
        self._next_telemetry = min(self._next_telemetry, time.monotonic() + seconds)

    # -- status ------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            updater = self.updater.status()
        return {
            "device_id": self.device_id,
            "connected": bool(self._mqtt and self._mqtt.connected),
            "session": self._session_no,
            "active_model": self._model_ref.model_dump(mode="json") if self._model_ref else None,
            "inferences": self.recorder.count,
            "errors": self.recorder.errors,
            "skipped_no_model": self.skipped_no_model,
            "dropped": self.drops.snapshot(),
            **updater,
        }

    # -- worker ------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item: InboxItem | None = self._inbox.get(timeout=_TICK_S)
            except queue.Empty:
                item = None
            try:
                with self._lock:
                    if item is not None:
                        self._dispatch(item)
                    self.updater.tick()
                self._maybe_publish_telemetry()
            except Exception:  # the worker must survive anything a peer can make it do
                log.exception("agent worker: unexpected error (continuing)")

    def _dispatch(self, item: InboxItem) -> None:
        if isinstance(item, Inbound):
            self._on_message(item.topic, item.payload)
        elif isinstance(item, Connected):
            self._on_connected()
        elif isinstance(item, Disconnected):
            log.info("disconnected: %s", item.error or "clean")
            if not item.refused:  # a fresh outage starts a fresh (re-jittered) back-off
                self._session.set_reconnect_delay(self.settings.jittered_reconnect_delay())

    def _on_connected(self) -> None:
        t, d = self._topics, self.device_id
        self._session.subscribe([t.desired(d), t.commands(d), t.blocks(d)])
        self._publish_state(online=True)
        self.updater.on_connected()

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            parsed = self._topics.parse(topic)
        except ProtocolError as exc:
            self.drops.drop("topic", "unknown", exc)
            return
        if parsed.channel is Channel.DESIRED:
            self.updater.on_desired(payload)
        elif parsed.channel is Channel.COMMANDS:
            self.updater.on_command(payload)
        elif parsed.channel is Channel.BLOCKS:
            self.updater.on_block(payload, "blocks")
        elif parsed.channel is Channel.ARTIFACT_BLOCKS:
            self.updater.on_block(payload, "artifact_blocks", topic_sha=parsed.sha256)
        else:
            self.drops.drop("topic", "unexpected", topic)

    def _maybe_publish_telemetry(self) -> None:
        now = time.monotonic()
        if now < self._next_telemetry:
            return
        interval = self._telemetry_interval
        self._next_telemetry = now + interval
        window = window_since(self.recorder, self._telemetry_mark)
        self._telemetry_mark = Mark.now(self.recorder)
        report = build_telemetry(
            device_id=self.device_id,
            seq=self._telemetry_seq,
            interval_s=interval,
            window=window,
            hardware=self.hardware,
            model=self._model_ref,
        )
        self._telemetry_seq += 1
        self._session.publish(
            self._topics.telemetry(self.device_id), codec.encode(report), qos=self.settings.telemetry_qos
        )

    def _state(self, *, online: bool) -> DeviceState:
        previous = self.updater._slots.previous()
        return DeviceState(
            device_id=self.device_id,
            online=online,
            session=self._session_no,
            agent_version=AGENT_VERSION,
            profile=self.settings.profile,
            runtimes=list(self.settings.runtimes),
            active_model=self._model_ref,
            previous_model=previous.model if previous else None,
            update_state=self.updater.phase.value,
        )

    def _publish_state(self, *, online: bool) -> None:
        self._session.publish(
            self._topics.state(self.device_id), codec.encode(self._state(online=online)), qos=1, retain=True
        )


def run_command(args: argparse.Namespace) -> int:
    """``edgefleet agent run``: serve until SIGINT/SIGTERM, then publish the offline state."""
    overrides: dict[str, Any] = {}
    if getattr(args, "device_id", None):
        overrides["device_id"] = args.device_id
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "broker", None):
        host, _, port = str(args.broker).rpartition(":")
        overrides["broker_host"], overrides["broker_port"] = (host, int(port)) if host else (port, 1883)
    settings = load_settings(getattr(args, "config", None), **overrides)
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    agent = Agent(settings)
    agent.start()
    log.info(
        "agent %s running (profile %s, broker %s:%d)",
        settings.device_id,
        settings.profile,
        settings.broker_host,
        settings.broker_port,
    )
    try:
        while not done.wait(1.0):
            pass
    finally:
        agent.stop()
    return 0


__all__ = ["Agent", "NoActiveModelError", "run_command"]
