from __future__ import annotations

import pytest
from hypothesis import given

from shared.errors import ProtocolError
from shared.topics import Channel, Topics
from tests.shared.strategies import device_ids, sha256s

T = Topics("edgefleet/v1")
DEVICE_CHANNELS = [Channel.STATE, Channel.TELEMETRY, Channel.EVENTS, Channel.DESIRED, Channel.COMMANDS,
                   Channel.BLOCKS, Channel.BLOCKS_GET]


@pytest.mark.parametrize("channel", DEVICE_CHANNELS)
@given(device_id=device_ids)
def test_device_topics_round_trip(channel: Channel, device_id: str) -> None:
    parsed = T.parse(T.device(device_id, channel))
    assert (parsed.channel, parsed.device_id) == (channel, device_id)


@given(sha=sha256s)
def test_artifact_topic_round_trip(sha: str) -> None:
    parsed = T.parse(T.artifact_blocks(sha))
    assert (parsed.channel, parsed.sha256) == (Channel.ARTIFACT_BLOCKS, sha)


def test_controller_state() -> None:
    assert T.parse(T.controller_state()).channel is Channel.CONTROLLER_STATE


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/devices/d/state",
        "edgefleet/v1/devices/d/unknown",
        "edgefleet/v1/devices/bad id/state",
        "edgefleet/v1/devices/" + "x" * 65 + "/state",
        "edgefleet/v1/artifacts/notasha/blocks",
        "edgefleet/v1/devices/d/blocks/put",
        "edgefleet/v1",
    ],
)
def test_bad_topics_raise(topic: str) -> None:
    with pytest.raises(ProtocolError):
        T.parse(topic)


def test_builders_refuse_bad_ids() -> None:
    with pytest.raises(ProtocolError):
        T.state("a+b")
    with pytest.raises(ProtocolError):
        T.artifact_blocks("ABC")


def test_wildcards_and_shared() -> None:
    assert T.all_devices(Channel.TELEMETRY) == "edgefleet/v1/devices/+/telemetry"
    assert T.shared(T.all_devices(Channel.STATE)) == "$share/controllers/edgefleet/v1/devices/+/state"


@pytest.mark.parametrize("root", ["", "a/", "a/+/b", "#"])
def test_bad_roots(root: str) -> None:
    with pytest.raises(ValueError):
        Topics(root)
