"""LinkProxy: an MQTT client through the proxy works while the link is up and is cut when it goes down."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt

from simulators.broker import MosquittoProcess
from simulators.link import LinkProxy


def _client(port: int, events: list[str]) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    c.on_connect = lambda *a: events.append("connect")
    c.on_disconnect = lambda *a: events.append("disconnect")
    c.reconnect_delay_set(0.1, 0.5)
    c.connect("127.0.0.1", port, keepalive=5)
    c.loop_start()
    return c


def _wait(pred: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_proxy_forwards_and_cuts(live_broker: MosquittoProcess) -> None:
    up = threading.Event()
    up.set()
    proxy = LinkProxy(live_broker.host, live_broker.port)
    try:
        port = proxy.add(up.is_set)
        events: list[str] = []
        c = _client(port, events)
        try:
            assert _wait(lambda: "connect" in events)
            up.clear()
            assert _wait(lambda: "disconnect" in events)
            assert proxy.cuts >= 1
            time.sleep(0.5)  # reconnect attempts are refused while down
            assert events.count("connect") == 1
            up.set()
            assert _wait(lambda: events.count("connect") >= 2)
        finally:
            c.loop_stop()
            c.disconnect()
    finally:
        proxy.close()
