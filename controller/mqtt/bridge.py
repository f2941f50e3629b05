"""The single paho-mqtt 2.x client of the controller.

Threading model (see STYLE.md, the aiomqtt habit): paho's network thread runs
the callbacks, which only parse the topic, decode the payload and hand the
message to a queue. DB writes happen on the ingest worker, block publishing on
the block server thread. Every failure to decode is counted by topic kind and
reason and logged at a bounded rate; nothing a peer sends can raise out of a
callback.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from controller.artifacts import ArtifactStore
from controller.metrics import ControllerMetrics, RateLimitedLog
from controller.mqtt.blockserver import BlockServer
from controller.mqtt.ingest import IngestWorker, Task
from controller.services.deployments import current_manifests
from controller.services.ingest import Incoming, prune
from controller.settings import Settings
from shared import codec
from shared.errors import ProtocolError
from shared.messages import BlockRequest, ControllerState, DeviceState, Event, Telemetry
from shared.topics import Channel, Topics

log = logging.getLogger("edgefleet.controller.mqtt")

_MODELS: dict[Channel, tuple[str, type[BaseModel]]] = {
    Channel.STATE: ("state", DeviceState),
    Channel.TELEMETRY: ("telemetry", Telemetry),
    Channel.EVENTS: ("events", Event),
    Channel.BLOCKS_GET: ("blocks_get", BlockRequest),
}


def classify(payload: bytes, exc: ProtocolError) -> str:
    """A short reason label for a payload codec.decode refused."""
    if len(payload) > codec.MAX_JSON_PAYLOAD:
        return "oversized"
    if not payload:
        return "empty"
    cause = exc.__cause__
    if isinstance(cause, ValidationError):
        errors = cause.errors(include_url=False)
        kind = errors[0].get("type", "") if errors else ""
        if kind == "json_invalid" or kind == "json_type":
            return "bad_json"
        if any(e.get("loc") == ("schema_version",) for e in errors):
            return "schema_version"
        return "schema"
    return "bad_json"



def session_client_id(settings: Settings) -> str:
    """Stable per controller instance, topic root and store, so a restart resumes its broker session.

    Two controllers sharing one id would take the session from each other; replicas differ in
    ``controller_id``, and the hash keeps test runs on other roots or stores apart.
    """
    where = f"{settings.topic_root}|{settings.db_url or settings.data_dir.resolve()}"
    return f"edgefleet-{settings.controller_id}-{hashlib.sha256(where.encode()).hexdigest()[:10]}"

class MqttBridge:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        metrics: ControllerMetrics,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_root)
        self._sessions = sessions
        self._metrics = metrics
        self._rl = RateLimitedLog(log)
        self._connected = threading.Event()
        self._stopping = False
        self._subscribe_mid: int | None = None
        self._prune_timer_stop = threading.Event()
        self.client_id = session_client_id(settings)
        self.ingest = IngestWorker(
            sessions=sessions,
            metrics=metrics,
            batch_size=settings.ingest_batch_size,
            maxsize=settings.ingest_queue_size,
        )
        self.blocks = BlockServer(
            sessions=sessions,
            store=store,
            topics=self.topics,
            metrics=metrics,
            publish=self._publish_block,
            default_block_size=settings.block_size,
            coalesce_ms=settings.coalesce_ms,
            rate_per_device=settings.max_blocks_per_s_per_device,
            burst=settings.max_block_burst,
        )
        # A persistent session: while this controller restarts, the broker queues the QoS 1
        # events and telemetry devices send, and delivers them when it is back.
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False)
        if settings.broker_username:
            c.username_pw_set(settings.broker_username, settings.broker_password)
        c.will_set(
            self.topics.controller_state(),
            codec.encode(ControllerState(online=False, controller_id=settings.controller_id)),
            qos=1,
            retain=True,
        )
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_inflight_messages_set(100)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        self.ingest.start()
        self.blocks.start()
        if self.settings.retention_s > 0:
            threading.Thread(target=self._prune_loop, name="edgefleet-retention", daemon=True).start()
        log.info(
            "connecting to MQTT broker %s:%d (root %s)",
            self.settings.broker_host,
            self.settings.broker_port,
            self.topics.root,
        )
        # connect_async: a broker that is down at start is retried by paho's loop, not fatal.
        self.client.connect_async(self.settings.broker_host, self.settings.broker_port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._prune_timer_stop.set()
        try:
            if self._connected.is_set():
                info = self.client.publish(
                    self.topics.controller_state(),
                    codec.encode(ControllerState(online=False, controller_id=self.settings.controller_id)),
                    qos=1,
                    retain=True,
                )
                info.wait_for_publish(timeout=2.0)
            self.client.disconnect()
        except Exception:  # shutting down anyway
            log.debug("error while disconnecting", exc_info=True)
        finally:
            self.client.loop_stop()
            self.blocks.stop()
            self.ingest.stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- publishing (thread-safe; paho queues while disconnected) ---------------
    def publish_desired(self, device_id: str, payload: bytes) -> None:
        self.client.publish(self.topics.desired(device_id), payload, qos=1, retain=True)
        self._metrics.desired_published.inc()

    def publish_command(self, device_id: str, payload: bytes) -> None:
        self.client.publish(self.topics.commands(device_id), payload, qos=1, retain=False)

    def clear_desired(self, device_id: str) -> None:
        self.client.publish(self.topics.desired(device_id), b"", qos=1, retain=True)

    def _publish_block(self, topic: str, frame: bytes) -> None:
        self.client.publish(topic, frame, qos=1)

    def _republish_desired(self) -> None:
        with self._sessions() as session:
            manifests = current_manifests(session=session)
        for device_id, payload in manifests:
            self.publish_desired(device_id, payload)
        if manifests:
            log.info("republished desired state for %d device(s)", len(manifests))

    def _prune_loop(self, interval_s: float = 3600.0) -> None:
        # The deletion itself runs on the ingest worker, so SQLite sees one writer.
        while not self._prune_timer_stop.wait(interval_s if self._pruned_once else 5.0):
            self._pruned_once = True
            self.ingest.put(Task("retention", self._prune))

    _pruned_once = False

    def _prune(self) -> None:
        with self._sessions() as session:
            removed = prune(session=session, older_than=time.time() - self.settings.retention_s)
        if removed:
            log.info("retention: removed %d telemetry/event rows older than %.0f s", removed, self.settings.retention_s)

    # -- paho callbacks: decode and hand over, nothing else ---------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            log.error("broker refused connection: %s", reason_code)
            return
        client.publish(
            self.topics.controller_state(),
            codec.encode(ControllerState(online=True, controller_id=self.settings.controller_id)),
            qos=1,
            retain=True,
        )
        _rc, mid = client.subscribe([(self.topics.all_devices(ch), 1) for ch in _MODELS])
        self._subscribe_mid = mid
        self.ingest.put(Task("republish-desired", self._republish_desired))
        log.info("connected to MQTT broker as %s", self.client_id)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, mid: int, reason_codes: Any, _props: Any) -> None:
        # "connected" means ready to receive: the broker has acknowledged our subscriptions.
        if mid != self._subscribe_mid:
            return
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("broker refused subscriptions: %s", failed)
            return
        self._connected.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        self._connected.clear()
        if self._stopping:
            log.info("disconnected from MQTT broker")
        else:
            log.warning("disconnected from MQTT broker (%s); reconnecting", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg.topic, bytes(msg.payload))
        except Exception:  # last line of defence: never let a message kill paho's thread
            self._metrics.messages_rejected.labels("unknown", "internal_error").inc()
            log.exception("error handling message on %s", msg.topic)

    def _handle(self, topic: str, payload: bytes) -> None:
        try:
            parsed = self.topics.parse(topic)
        except ProtocolError as exc:
            self._reject("unknown", "bad_topic", f"{exc}")
            return
        entry = _MODELS.get(parsed.channel)
        if entry is None:
            self._reject(parsed.channel.value, "unexpected_topic", topic)
            return
        kind, model = entry
        if not payload and parsed.channel is Channel.STATE:
            return  # a cleared retained state (device deleted) is not an error
        try:
            message: Any = codec.decode(payload, model)
        except ProtocolError as exc:
            self._reject(kind, classify(payload, exc), f"{parsed.device_id}: {exc}")
            return
        if message.device_id != parsed.device_id:
            self._reject(kind, "device_mismatch", f"topic device {parsed.device_id!r} vs payload {message.device_id!r}")
            return
        if isinstance(message, BlockRequest):
            self._metrics.messages_ingested.labels(kind).inc()
            self.blocks.submit(message)
        else:
            self.ingest.put(Incoming(kind, message, time.time()))

    def _reject(self, kind: str, reason: str, detail: str) -> None:
        self._metrics.messages_rejected.labels(kind, reason).inc()
        self._rl.warning(f"{kind}:{reason}", "rejected %s message (%s): %s", kind, reason, detail[:300])


__all__ = ["MqttBridge", "classify"]
