"""Put a model into a device's active slot before its agent starts.

For load tests and benchmarks that want devices serving a model without a
controller: the result on disk is exactly what a completed deployment leaves
(``agent.slots`` layout), so the agent loads it at start like any other. The
version is 0, so any version the controller later deploys is newer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent.slots import Slots
from shared.messages import ModelRef, Runtime

PREINSTALLED_DEPLOYMENT = "preinstalled"


def preinstall_model(
    data_dir: Path, path: Path, runtime: Runtime, *, name: str = "digits-mlp", version: int = 0
) -> ModelRef:
    data = path.read_bytes()
    ref = ModelRef(name=name, version=version, sha256=hashlib.sha256(data).hexdigest())
    slots = Slots(data_dir)
    info = slots.stage(model=ref, runtime=runtime, deployment_id=PREINSTALLED_DEPLOYMENT, data=data)
    slots.activate(info.slot)
    return ref


def example_model_for(profile: str) -> tuple[Path, Runtime]:
    """The bundled example that fits ``profile``'s runtime: int8 LiteRT for litert, fp32 ONNX otherwise."""
    from shared.profiles import get_profile
    from simulators.examples import model_path

    if get_profile(profile).runtime == "litert":
        return model_path("digits_mlp_int8.tflite"), "litert"
    return model_path("digits_mlp.onnx"), "onnxruntime"


__all__ = ["PREINSTALLED_DEPLOYMENT", "example_model_for", "preinstall_model"]
