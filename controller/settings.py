"""Controller settings, from ``EDGEFLEET_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.blocks import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE
from shared.topics import DEFAULT_ROOT


class Settings(BaseSettings):
    """Everything the controller reads at start; flags of ``edgefleet controller serve`` override these."""

    model_config = SettingsConfigDict(env_prefix="EDGEFLEET_", extra="ignore")

    data_dir: Path = Path("./var")
    #: Any SQLAlchemy URL; ``None`` means a SQLite file ``controller.db`` in ``data_dir``.
    db_url: str | None = None

    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    broker_username: str | None = None
    broker_password: str | None = None
    topic_root: str = DEFAULT_ROOT
    #: Turn the MQTT side off (REST-only tests, offline maintenance).
    mqtt_enabled: bool = True
    controller_id: str = "controller"

    http_host: str = "127.0.0.1"
    http_port: int = 8080

    #: Bearer token for writes (and reads); ``None`` together with read_token = open API.
    admin_token: str | None = None
    #: Bearer token for reads only.
    read_token: str | None = None

    block_size: int = Field(default=DEFAULT_BLOCK_SIZE, gt=0, le=MAX_BLOCK_SIZE)
    #: Block requests for one artifact within this window are merged (broadcast vs unicast).
    coalesce_ms: int = Field(default=200, ge=0, le=10_000)
    #: Per-device block budget; a greedy request gets the rest on its next repair request.
    max_blocks_per_s_per_device: float = Field(default=2000.0, gt=0)
    max_block_burst: int = Field(default=8192, gt=0)
    #: Ship the zstd frame of an artifact when it is smaller than the file.
    zstd: bool = True
    zstd_level: int = Field(default=9, ge=1, le=22)

    max_upload_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    manifest_ttl_s: float = Field(default=7 * 24 * 3600, gt=0)
    self_test_vectors: int = Field(default=4, ge=0, le=64)

    #: Telemetry and event rows older than this are deleted (hourly); 0 keeps everything.
    retention_s: float = Field(default=14 * 24 * 3600, ge=0)
    #: The rollout scheduler advances wave-based rollouts this often.
    rollout_interval_s: float = Field(default=0.5, gt=0, le=60)
    #: Lease of the one scheduler among replicas sharing a database; renewed every interval.
    rollout_lease_s: float = Field(default=5.0, gt=0, le=3600)
    ingest_batch_size: int = Field(default=500, gt=0)
    ingest_queue_size: int = Field(default=100_000, gt=0)

    @field_validator("admin_token", "read_token", "broker_username", "broker_password", "db_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: object) -> object:
        # EDGEFLEET_READ_TOKEN="" in an environment file means "no read token", not "the empty token".
        return None if isinstance(v, str) and not v.strip() else v

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.data_dir / 'controller.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "keys" / "controller.key"


__all__ = ["Settings"]
