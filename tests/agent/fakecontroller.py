"""A minimal controller for agent tests: a real MQTT peer, not a mock.

It signs manifests with :mod:`shared.signing`, publishes them retained on a
device's desired topic, answers BlockRequests with framed blocks (optionally
paced, so a test can kill the broker mid-transfer), and records every event
and block request it sees.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from shared import blocks, codec, signing
from shared.messages import BlockRequest, Command, CommandKind, DesiredState, Event, ModelRef, SelfTestVector
from shared.topics import Channel, Topics


class FakeController:
    def __init__(self, host: str, port: int, topic_root: str, key: Ed25519PrivateKey) -> None:
        self.topics = Topics(topic_root)
        self.key = key
        self.artifacts: dict[str, bytes] = {}  # wire sha -> wire bytes, served whatever the manifest claims
        self.block_sizes: dict[str, int] = {}
        self.requests: list[BlockRequest] = []
        self.events: list[Event] = []
        self.blocks_per_s: float | None = None  # None: as fast as possible
        self.broadcast = False
        self.serving = True
        self._cond = threading.Condition()
        self._outbox: queue.Queue[tuple[str, BlockRequest] | None] = queue.Queue()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fakectl-{uuid.uuid4().hex[:8]}")
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = lambda *args: self._connected.clear()
        self._connected = threading.Event()
        self._client.connect_async(host, port, 30)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, daemon=True)
        self._sender.start()
        assert self._connected.wait(10), "fake controller could not connect"

    # -- setup ------------------------------------------------------------------------
    def manifest(
        self,
        data: bytes,
        *,
        device_id: str,
        name: str = "mlp",
        version: int = 1,
        runtime: str = "onnxruntime",
        profile: str = "car-ecu",
        block_size: int = 1024,
        encoding: str = "identity",
        wire: bytes | None = None,
        self_test: list[SelfTestVector] | None = None,
        sign: bool = True,
        serve: bool = True,
        **fields: Any,
    ) -> DesiredState:
        """A manifest for ``data`` and (unless told otherwise) the bytes to serve for it."""
        wire = data if wire is None else wire
        sha = hashlib.sha256(data).hexdigest()
        wire_sha = hashlib.sha256(wire).hexdigest()
        values: dict[str, Any] = {
            "device_id": device_id,
            "deployment_id": f"dep-{uuid.uuid4().hex[:8]}",
            "model": ModelRef(name=name, version=version, sha256=sha),
            "runtime": runtime,
            "profile": profile,
            "size": len(data),
            "encoding": encoding,
            "wire_sha256": wire_sha,
            "wire_size": len(wire),
            "block_size": block_size,
            "block_count": blocks.block_count(len(wire), block_size),
            "self_test": self_test or [],
        }
        values.update(fields)
        manifest = DesiredState(**values)
        if serve:
            self.serve(manifest.wire_sha256, wire, block_size)
        return signing.sign(manifest, self.key) if sign else manifest

    def serve(self, wire_sha: str, wire: bytes, block_size: int) -> None:
        self.artifacts[wire_sha] = wire
        self.block_sizes[wire_sha] = block_size

    def deploy(self, manifest: DesiredState) -> None:
        self.publish(self.topics.desired(manifest.device_id), codec.encode(manifest), retain=True)

    def command(self, device_id: str, kind: CommandKind, sign: bool = True, **args: Any) -> Command:
        cmd = Command(device_id=device_id, command_id=uuid.uuid4().hex[:12], kind=kind, args=args)
        if sign:
            cmd = signing.sign(cmd, self.key)
        self.publish(self.topics.commands(device_id), codec.encode(cmd))
        return cmd

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish once connected (after a broker restart paho needs a moment to reconnect)."""
        assert self._connected.wait(10), "fake controller not connected"
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    # -- observation ----------------------------------------------------------------------
    def wait_event(self, match: Callable[[Event], bool], timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if match(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    kinds = [(e.kind.value, e.reason) for e in self.events]
                    raise AssertionError(f"no matching event within {timeout}s; got {kinds}")
                self._cond.wait(remaining)

    def kinds(self, deployment_id: str) -> list[str]:
        with self._cond:
            return [e.kind.value for e in self.events if e.deployment_id == deployment_id]

    def close(self) -> None:
        self._outbox.put(None)
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho side --------------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        t = self.topics
        client.subscribe([(t.all_devices(Channel.BLOCKS_GET), 1), (t.all_devices(Channel.EVENTS), 1)])
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        parsed = self.topics.parse(message.topic)
        if parsed.channel is Channel.EVENTS:
            event = codec.decode(message.payload, Event)
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        elif parsed.channel is Channel.BLOCKS_GET:
            request = codec.decode(message.payload, BlockRequest)
            with self._cond:
                self.requests.append(request)
            assert parsed.device_id is not None
            self._outbox.put((parsed.device_id, request))

    def _send_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            device_id, request = item
            wire = self.artifacts.get(request.sha256)
            if wire is None or not self.serving:
                continue
            bs = self.block_sizes[request.sha256]
            parts = blocks.split(wire, bs)
            topic = self.topics.artifact_blocks(request.sha256) if self.broadcast else self.topics.blocks(device_id)
            for start, end in request.ranges:
                for i in range(start, min(end, len(parts))):
                    if not self.serving:
                        break
                    frame = blocks.encode_block(request.sha256, i, len(parts), len(wire), parts[i])
                    self._client.publish(topic, frame, qos=1)
                    if self.blocks_per_s:
                        time.sleep(1.0 / self.blocks_per_s)
