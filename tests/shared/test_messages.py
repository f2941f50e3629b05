"""Every wire message round-trips; malformed bytes always become ProtocolError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from shared import codec
from shared.errors import ProtocolError
from shared.messages import DesiredState, DeviceState, Message, Telemetry
from tests.shared.strategies import ALL_MESSAGES


@pytest.mark.parametrize("model", list(ALL_MESSAGES), ids=lambda m: m.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip(model: type[BaseModel], data: st.DataObject) -> None:
    message = data.draw(ALL_MESSAGES[model])
    assert codec.decode(codec.encode(message), model) == message


def test_every_message_model_has_a_strategy() -> None:
    concrete = {cls for cls in Message.__subclasses__()}
    assert concrete == set(ALL_MESSAGES)


@pytest.mark.parametrize("model", list(ALL_MESSAGES), ids=lambda m: m.__name__)
@settings(max_examples=80, deadline=None)
@given(payload=st.binary(max_size=512))
def test_garbage_is_protocol_error(model: type[BaseModel], payload: bytes) -> None:
    try:
        codec.decode(payload, model)
    except ProtocolError:
        return
    # Random bytes that happen to be a valid message are fine, but must then re-encode.
    pytest.fail(f"garbage decoded as {model.__name__}")  # pragma: no cover


@pytest.mark.parametrize("model", list(ALL_MESSAGES), ids=lambda m: m.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_truncated_is_protocol_error(model: type[BaseModel], data: st.DataObject) -> None:
    encoded = codec.encode(data.draw(ALL_MESSAGES[model]))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(ProtocolError):
        codec.decode(encoded[:cut], model)


def test_oversized_payload_rejected_before_parsing() -> None:
    big = b'{"x":"' + b"a" * codec.MAX_JSON_PAYLOAD + b'"}'
    with pytest.raises(ProtocolError, match="exceeds"):
        codec.decode(big, Telemetry)


def test_unknown_schema_version_rejected() -> None:
    state = DeviceState(device_id="d1", online=True, session=1)
    raw = json.loads(codec.encode(state))
    raw["schema_version"] = 99
    with pytest.raises(ProtocolError, match="schema_version"):
        codec.decode(json.dumps(raw).encode(), DeviceState)


def test_extra_fields_rejected() -> None:
    raw = json.loads(codec.encode(DeviceState(device_id="d1", online=True, session=1)))
    raw["surprise"] = 1
    with pytest.raises(ProtocolError, match="surprise"):
        codec.decode(json.dumps(raw).encode(), DeviceState)


def test_bad_device_id_rejected() -> None:
    raw = json.loads(codec.encode(DeviceState(device_id="d1", online=True, session=1)))
    raw["device_id"] = "a/b#"
    with pytest.raises(ProtocolError, match="device_id"):
        codec.decode(json.dumps(raw).encode(), DeviceState)


def test_desired_state_exposes_sha() -> None:
    ref = {"name": "m", "version": 1, "sha256": "a" * 64}
    d = DesiredState(device_id="d", deployment_id="x", model=ref, runtime="litert", profile="p", size=1,
                     wire_sha256="b" * 64, wire_size=1, block_size=1, block_count=1)  # type: ignore[arg-type]
    assert d.sha256 == "a" * 64
