"""A network blip does not lose what the controller sent meanwhile: the MQTT 5 session resumes."""

from __future__ import annotations

import threading

import pytest

from shared.messages import CommandKind, EventKind
from simulators.link import LinkProxy
from tests.agent.conftest import DEVICE
from tests.waiting import wait_until


@pytest.mark.parametrize("protocol,expect_delivery", [("5", True), ("3.1.1", False)])
def test_command_sent_during_a_blip_is_delivered_after_it(  # type: ignore[no-untyped-def]
    fake, make_agent, live_broker, protocol, expect_delivery
):
    up = threading.Event()
    up.set()
    proxy = LinkProxy(live_broker.host, live_broker.port)
    try:
        port = proxy.add(up.is_set)
        agent = make_agent(broker_port=port, mqtt_protocol=protocol, keepalive=5)
        fake.command(DEVICE, CommandKind.PING)  # the session works
        fake.wait_event(lambda e: e.kind is EventKind.COMMAND_ACK)

        up.clear()  # the link drops; the broker still thinks the device may come back
        wait_until(lambda: not agent.status()["connected"], 15, "agent notices the drop")
        during = fake.command(DEVICE, CommandKind.PING)
        up.set()
        wait_until(lambda: agent.status()["connected"], 15, "agent reconnects")
        if expect_delivery:
            ack = fake.wait_event(lambda e: e.command_id == during.command_id and e.kind is EventKind.COMMAND_ACK, 10)
            assert ack.device_id == DEVICE
        else:  # MQTT 3.1.1 sessions are clean: documented, and this shows the difference
            with pytest.raises(AssertionError):
                fake.wait_event(lambda e: e.command_id == during.command_id, 3)
    finally:
        proxy.close()
