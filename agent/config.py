"""Agent settings: keyword arguments over environment (``EDGEFLEET_AGENT_*``) over a TOML/JSON file.

A device is provisioned with a file (device id, broker, pinned controller key);
the environment lets a systemd unit or a container override single values
without rewriting it. A plain pydantic model with a small env reader, not
pydantic-settings: that package costs an idle agent ~4 MiB of RSS for three
sources we can read in a dozen lines.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.trust import PinnedKey
from shared.messages import DeviceId, Runtime
from shared.profiles import DeviceProfile, get_profile
from shared.topics import DEFAULT_ROOT

ENV_PREFIX = "EDGEFLEET_AGENT_"

#: Python module that provides each runtime; probing with find_spec keeps startup cheap.
_RUNTIME_MODULES: dict[Runtime, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime",),
    "litert": ("ai_edge_litert", "tflite_runtime"),
}


def available_runtimes() -> list[Runtime]:
    """Runtimes importable on this device, advertised in the birth message."""
    found: list[Runtime] = []
    for runtime, modules in _RUNTIME_MODULES.items():
        if any(importlib.util.find_spec(m) is not None for m in modules):
            found.append(runtime)
    return found


def env_values(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``EDGEFLEET_AGENT_*`` variables as field values; JSON lists/objects are parsed (``RUNTIMES='["litert"]'``)."""
    environ = os.environ if environ is None else environ
    fields = AgentSettings.model_fields
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in fields:
            raise ValueError(f"{key}: unknown agent setting {name!r}")
        values[name] = json.loads(raw) if raw[:1] in "[{" else raw
    return values


class AgentSettings(BaseModel):
    """Everything an agent needs to know about its device, broker and trust anchor.

    Fields not given as keyword arguments are taken from ``EDGEFLEET_AGENT_<FIELD>``.
    """

    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId
    profile: str
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(default=1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    tls_ca_file: Path | None = None
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = Field(default=30, ge=5)
    #: How long the broker keeps this agent's session (MQTT 5) across a dropped connection.
    session_expiry_s: float = Field(default=3600, ge=0)
    topic_root: str = DEFAULT_ROOT
    data_dir: Path = Path.home() / ".local" / "share" / "edgefleet-agent"
    controller_public_key: str | None = None
    controller_public_key_file: Path | None = None
    telemetry_interval_s: float = Field(default=5.0, gt=0)
    telemetry_qos: Literal[0, 1] = 1
    runtimes: list[Runtime] = Field(default_factory=available_runtimes)
    repair_timeout_s: float = Field(default=2.0, gt=0)
    max_artifact_bytes: int | None = Field(default=None, gt=0)
    #: Overrides of the profile's watch phase and latency budget (tests, staged rollouts).
    watch_seconds: float | None = Field(default=None, ge=0)
    p95_latency_ms: float | None = Field(default=None, gt=0)
    intra_op_threads: int = Field(default=1, ge=1)
    reconnect_min_delay_s: float = Field(default=1.0, gt=0)
    reconnect_max_delay_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_env(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {**env_values(), **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> AgentSettings:
        try:
            get_profile(self.profile)
        except KeyError as exc:  # pydantic reports ValueError as a validation error, KeyError would escape
            raise ValueError(str(exc.args[0])) from None
        if not (self.controller_public_key or self.controller_public_key_file):
            raise ValueError(
                "controller_public_key or controller_public_key_file is required: the agent "
                "refuses every manifest it cannot verify"
            )
        return self

    def device_profile(self) -> DeviceProfile:
        """The built-in profile with this device's overrides applied."""
        update: dict[str, Any] = {}
        if self.max_artifact_bytes is not None:
            update["max_artifact_bytes"] = self.max_artifact_bytes
        if self.watch_seconds is not None:
            update["watch_seconds"] = self.watch_seconds
        if self.p95_latency_ms is not None:
            update["p95_latency_ms"] = self.p95_latency_ms
        return get_profile(self.profile).model_copy(update=update)

    def public_key(self) -> PinnedKey:
        """The pinned controller key; the file is read and its shape checked here, once, at start."""
        pem: str | bytes
        if self.controller_public_key:
            pem = self.controller_public_key
        else:
            assert self.controller_public_key_file is not None  # guaranteed by _check
            pem = self.controller_public_key_file.read_bytes()
        return PinnedKey(pem)

    def jittered_reconnect_delay(self) -> float:
        """Per-disconnect jitter so a fleet that lost one broker does not reconnect in lockstep."""
        return self.reconnect_min_delay_s * random.uniform(0.5, 1.5)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> AgentSettings:
    """Settings from ``config_file`` (TOML or JSON), then env, then ``overrides`` (highest)."""
    data: dict[str, Any] = {}
    if config_file is not None:
        data = _read_file(Path(config_file))
    return AgentSettings.model_validate({**data, **env_values(), **overrides})


def _read_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10 devices
            import tomli as tomllib
        data = tomllib.loads(path.read_text())
    elif path.suffix == ".json":
        data = json.loads(path.read_text())
    else:
        raise ValueError(f"{path}: settings file must be .toml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: settings file must hold a table/object")
    return data


__all__ = ["ENV_PREFIX", "AgentSettings", "available_runtimes", "env_values", "load_settings"]
