"""The agent's MQTT session (paho-mqtt 2.x, callback API v2).

Threading model: paho's network thread runs the callbacks below, and they do
nothing but wrap what arrived into an item and put it on the inbox queue; the
agent's own worker thread parses, verifies and writes files.  A slow disk or
a model load therefore never stalls keepalives or the socket.

:func:`map_reason_code` is the one place that turns paho's reason and error
codes into :class:`shared.errors.TransportError`.
"""

from __future__ import annotations

import logging
import queue
import ssl
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import AgentSettings
from shared.errors import TransportError

log = logging.getLogger("edgefleet.agent.mqtt")


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes


@dataclass(frozen=True)
class Connected:
    pass


@dataclass(frozen=True)
class Disconnected:
    error: TransportError | None
    #: The broker refused the CONNECT (bad credentials, ...): keep backing off, do not reset.
    refused: bool = False


InboxItem = Inbound | Connected | Disconnected


def map_reason_code(code: ReasonCode | MQTTErrorCode | int) -> TransportError | None:
    """None for success, otherwise a TransportError naming paho's code."""
    if isinstance(code, ReasonCode):
        return TransportError(f"mqtt: {code.getName()} ({code.value})") if code.is_failure else None
    if isinstance(code, MQTTErrorCode):
        if code is MQTTErrorCode.MQTT_ERR_SUCCESS:
            return None
        return TransportError(f"mqtt: {code.name}: {paho.error_string(code)}")
    if code == 0:
        return None
    return TransportError(f"mqtt: error {code}: {paho.error_string(code)}")


class MqttSession:
    """One broker connection with a Will, auto-reconnect and an inbox for the worker."""

    def __init__(
        self, settings: AgentSettings, *, will_topic: str, will_payload: bytes, inbox: queue.Queue[InboxItem]
    ) -> None:
        self._settings = settings
        self._inbox = inbox
        self._v5 = settings.mqtt_protocol == "5"
        protocol = MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311
        kwargs: dict[str, Any] = {} if self._v5 else {"clean_session": True}
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"edgefleet-agent-{settings.device_id}", protocol=protocol, **kwargs
        )
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls_ca_file:
            self._client.tls_set(ca_certs=str(settings.tls_ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.will_set(will_topic, will_payload, qos=1, retain=True)
        self.set_reconnect_delay(settings.jittered_reconnect_delay())
        self._client.max_queued_messages_set(10_000)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self.connected = False

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; paho's thread keeps retrying until stop()."""
        s = self._settings
        if self._v5:
            # Clean on the first connect (a restarted agent starts fresh from the retained desired
            # state), resumed on reconnects: commands and repair blocks sent during a network blip
            # wait in the broker instead of being lost.
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = int(s.session_expiry_s)
            self._client.connect_async(
                s.broker_host, s.broker_port, s.keepalive, clean_start=paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        else:
            self._client.connect_async(s.broker_host, s.broker_port, s.keepalive)
        self._client.loop_start()

    def stop(self, final_topic: str | None = None, final_payload: bytes = b"", timeout: float = 2.0) -> None:
        """Publish the clean-exit state (if connected), then disconnect; the Will is not sent."""
        try:
            if final_topic is not None and self.connected:
                info = self._client.publish(final_topic, final_payload, qos=1, retain=True)
                info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            log.warning("could not publish final state: %s", exc)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            self.connected = False

    def set_reconnect_delay(self, min_delay_s: float) -> None:
        """paho backs off exponentially from ``min_delay_s``; the caller re-jitters it after each drop."""
        max_delay = max(self._settings.reconnect_max_delay_s, min_delay_s)
        self._client.reconnect_delay_set(min_delay=min_delay_s, max_delay=max_delay)  # type: ignore[arg-type]

    # -- operations (thread-safe in paho) ----------------------------------------------
    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message; False if paho refused it (QoS 0 while offline, queue full)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        error = map_reason_code(info.rc)
        if error is not None and info.rc is not MQTTErrorCode.MQTT_ERR_NO_CONN:
            log.debug("publish to %s not queued: %s", topic, error)
            return False
        return error is None or qos > 0

    def subscribe(self, topics: list[str]) -> None:
        if topics:
            self._client.subscribe([(t, 1) for t in topics])

    def unsubscribe(self, topic: str) -> None:
        self._client.unsubscribe(topic)

    # -- paho callbacks: hand over only -------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        error = map_reason_code(reason)
        if error is None:
            self.connected = True
            self._inbox.put(Connected())
        else:
            self._inbox.put(Disconnected(error, refused=True))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self.connected = False
        self._inbox.put(Disconnected(map_reason_code(reason)))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._inbox.put(Inbound(message.topic, bytes(message.payload)))


__all__ = ["Connected", "Disconnected", "Inbound", "InboxItem", "MqttSession", "map_reason_code"]
