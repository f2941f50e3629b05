"""Hypothesis strategies for every wire message."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from shared.messages import (
    BlockRequest,
    Command,
    CommandKind,
    ControllerState,
    DesiredState,
    DeviceState,
    Event,
    EventKind,
    LatencyStats,
    ModelRef,
    SelfTestVector,
    Telemetry,
)

device_ids = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64)
sha256s = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
nonneg = st.floats(min_value=0, max_value=1e9, allow_nan=False)
texts = st.text(max_size=40)
runtimes = st.sampled_from(["onnxruntime", "litert"])

model_refs = st.builds(
    ModelRef, name=st.text(min_size=1, max_size=128), version=st.integers(0, 2**31), sha256=sha256s
)
latencies = st.builds(LatencyStats, p50_ms=nonneg, p95_ms=nonneg, p99_ms=nonneg, max_ms=nonneg, mean_ms=nonneg)

device_states = st.builds(
    DeviceState,
    device_id=device_ids,
    online=st.booleans(),
    session=st.integers(0, 2**40),
    agent_version=texts,
    profile=texts,
    runtimes=st.lists(runtimes, max_size=2),
    active_model=st.none() | model_refs,
    previous_model=st.none() | model_refs,
    update_state=texts,
    ts=finite,
)
telemetries = st.builds(
    Telemetry,
    device_id=device_ids,
    seq=st.integers(0, 2**40),
    ts=finite,
    interval_s=st.floats(min_value=0.001, max_value=1e6),
    count=st.integers(0, 2**31),
    errors=st.integers(0, 2**31),
    latency=st.none() | latencies,
    cpu_percent=st.none() | nonneg,
    rss_bytes=st.none() | st.integers(0, 2**40),
    temperature_c=st.none() | finite,
    battery_pct=st.none() | st.floats(0, 100),
    model=st.none() | model_refs,
)
events = st.builds(
    Event,
    device_id=device_ids,
    kind=st.sampled_from(list(EventKind)),
    deployment_id=st.none() | texts,
    command_id=st.none() | texts,
    model=st.none() | model_refs,
    reason=st.none() | texts,
    detail=st.none() | texts,
    progress=st.none() | st.floats(0, 1),
    ts=finite,
)
block_requests = st.builds(
    BlockRequest,
    device_id=device_ids,
    sha256=sha256s,
    ranges=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(1, 10_000)).map(lambda t: (t[0], t[0] + t[1])),
        min_size=1,
        max_size=20,
    ),
    request_id=texts,
)
self_tests = st.builds(
    SelfTestVector,
    input_shape=st.lists(st.integers(1, 64), min_size=1, max_size=4),
    input_dtype=st.sampled_from(["float32", "int8", "uint8", "int64"]),
    data=st.lists(finite, max_size=16),
    expected=st.none() | st.lists(finite, max_size=16),
    expected_top1=st.none() | st.integers(0, 1000),
    atol=st.floats(0, 1),
)
desired_states = st.builds(
    DesiredState,
    device_id=device_ids,
    deployment_id=texts,
    model=model_refs,
    runtime=runtimes,
    profile=texts,
    size=st.integers(1, 2**40),
    encoding=st.sampled_from(["identity", "zstd"]),
    wire_sha256=sha256s,
    wire_size=st.integers(1, 2**40),
    block_size=st.integers(1, 1 << 20),
    block_count=st.integers(1, 2**31),
    self_test=st.lists(self_tests, max_size=3),
    allow_downgrade=st.booleans(),
    issued_at=finite,
    expires_at=st.none() | finite,
    key_id=texts,
    signature=texts,
)
commands = st.builds(
    Command,
    device_id=device_ids,
    command_id=st.text(min_size=1, max_size=64),
    kind=st.sampled_from(list(CommandKind)),
    args=st.dictionaries(st.text(max_size=10), st.integers() | texts | st.booleans(), max_size=4),
    issued_at=finite,
    expires_at=st.none() | finite,
    key_id=texts,
    signature=texts,
)
controller_states = st.builds(ControllerState, online=st.booleans(), controller_id=texts, ts=finite)

ALL_MESSAGES = {
    DeviceState: device_states,
    Telemetry: telemetries,
    Event: events,
    BlockRequest: block_requests,
    DesiredState: desired_states,
    Command: commands,
    ControllerState: controller_states,
}
