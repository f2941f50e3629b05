"""Device-profile schema and the three built-in profiles.

A profile is the contract between compression and rollout: the controller
only ships an artifact that meets every limit here, and the agent's watch
phase rolls back when field latency breaks ``p95_latency_ms``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.messages import Runtime

Precision = Literal["fp32", "fp16", "int8"]


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    description: str = ""
    runtime: Runtime
    #: Precisions the device's runtime/accelerator executes; compression picks among these.
    precisions: list[Precision] = Field(min_length=1)
    max_artifact_bytes: Annotated[int, Field(gt=0)]
    #: p95 latency of one inference measured on the device.
    p95_latency_ms: Annotated[float, Field(gt=0)]
    #: Allowed accuracy loss against the uploaded model, in percentage points.
    max_accuracy_drop_pt: Annotated[float, Field(ge=0)]
    #: Peak memory of the loaded model during inference.
    max_memory_bytes: Annotated[int, Field(gt=0)]
    #: How much slower than this controller's CPU (one thread) the device computes.
    #: Compression scales measured latency by it; the simulator sleeps to match it.
    compute_slowdown: Annotated[float, Field(ge=1)]
    #: Error rate during the agent's watch phase above which it rolls back.
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    #: How long the agent watches a new model before declaring it active.
    watch_seconds: Annotated[float, Field(ge=0)] = 5.0


BUILTIN_PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            name="smart-lock",
            description="Battery-powered lock on a Cortex-A class SoC running LiteRT; int8 only.",
            runtime="litert",
            precisions=["int8"],
            max_artifact_bytes=64 * 1024,
            p95_latency_ms=20.0,
            max_accuracy_drop_pt=2.0,
            max_memory_bytes=16 * 1024 * 1024,
            compute_slowdown=20.0,
        ),
        DeviceProfile(
            name="car-ecu",
            description="Automotive ECU running onnxruntime with a hard real-time latency budget.",
            runtime="onnxruntime",
            precisions=["fp32", "fp16", "int8"],
            max_artifact_bytes=2 * 1024 * 1024,
            p95_latency_ms=4.0,
            max_accuracy_drop_pt=1.0,
            max_memory_bytes=64 * 1024 * 1024,
            compute_slowdown=1.5,
        ),
        DeviceProfile(
            name="medical-monitor",
            description="Bedside monitor running onnxruntime; accuracy comes first (<= 0.5 pt loss).",
            runtime="onnxruntime",
            precisions=["fp32", "int8"],
            max_artifact_bytes=4 * 1024 * 1024,
            p95_latency_ms=10.0,
            max_accuracy_drop_pt=0.5,
            max_memory_bytes=128 * 1024 * 1024,
            compute_slowdown=3.0,
        ),
    )
}


def get_profile(name: str) -> DeviceProfile:
    try:
        return BUILTIN_PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; built-in: {', '.join(sorted(BUILTIN_PROFILES))}") from None


__all__ = ["BUILTIN_PROFILES", "DeviceProfile", "Precision", "get_profile"]
