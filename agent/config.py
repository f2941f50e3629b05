"""Agent settings: environment (``EDGEFLEET_AGENT_*``) over an optional TOML/JSON file over defaults.

A device is provisioned with a file (device id, broker, pinned controller key);
the environment lets a systemd unit or a container override single values
without rewriting it.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from shared.messages import DeviceId, Runtime
from shared.profiles import DeviceProfile, get_profile
from shared.signing import load_public_key
from shared.topics import DEFAULT_ROOT

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


class AgentSettings(BaseSettings):
    """Everything an agent needs to know about its device, broker and trust anchor."""

    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_AGENT_", extra="forbid")

    device_id: DeviceId
    profile: str
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(default=1883, gt=0, lt=65536)
    username: str | None = None
    password: str | None = None
    tls_ca_file: Path | None = None
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = Field(default=30, ge=5)
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

    def public_key(self) -> Ed25519PublicKey:
        """The pinned controller key; the file is read here, once, at start."""
        pem: str | bytes
        if self.controller_public_key:
            pem = self.controller_public_key
        else:
            assert self.controller_public_key_file is not None  # guaranteed by _check
            pem = self.controller_public_key_file.read_bytes()
        return load_public_key(pem)

    def jittered_reconnect_delay(self) -> float:
        """Per-disconnect jitter so a fleet that lost one broker does not reconnect in lockstep."""
        return self.reconnect_min_delay_s * random.uniform(0.5, 1.5)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> AgentSettings:
    """Settings from ``config_file`` (TOML or JSON), then env, then ``overrides`` (highest)."""
    if config_file is None:
        return AgentSettings(**overrides)
    path = Path(config_file)
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"{path}: settings file must be .toml or .json")

    class _FileSettings(AgentSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            source: PydanticBaseSettingsSource
            if path.suffix == ".toml":
                source = TomlConfigSettingsSource(settings_cls, toml_file=path)
            else:
                source = JsonConfigSettingsSource(settings_cls, json_file=path)
            return (init_settings, env_settings, source)

    return _FileSettings(**overrides)


__all__ = ["AgentSettings", "available_runtimes", "load_settings"]
