"""Typed settings, read from ``OVERLORD_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from overlord.configvars.sealing import decode_key


class Settings(BaseSettings):
    """Everything the Overlord reads from its environment; unknown keys are rejected."""

    model_config = SettingsConfigDict(
        env_prefix="OVERLORD_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    database_url: str = "sqlite:///./overlord.db"
    # Request bodies (overlord.limits): device and operator JSON, and the release upload.
    # 8 MiB: an event batch of 1000 events with 4 KiB reasons fits (about 4.5 MB).
    max_json_bytes: int = Field(default=8 << 20, ge=1024)
    max_publish_bytes: int = Field(default=8 << 30, ge=1 << 20)
    repo_dir: Path = Field(
        default=Path("./overlord-repo"), description="TUF repository: metadata/, targets/, chunks/"
    )
    keys_dir: Path = Field(
        default=Path("./overlord-keys"), description="online snapshot and timestamp keys"
    )
    poll_interval_s: int = Field(default=60, ge=5, le=3600)
    offline_after_s: int = Field(default=300, ge=10)
    remote_idle_timeout_s: int = Field(
        default=300, ge=10, le=86400, description="a remote session without traffic ends"
    )
    remote_max_length_s: int = Field(
        default=3600, ge=60, le=86400, description="a remote session ends this long after joining"
    )
    remote_join_timeout_s: int = Field(
        default=60, ge=10, le=3600, description="a session its device never joins ends"
    )
    remote_wait_max_s: int = Field(
        default=50,
        ge=1,
        le=300,
        description="the longest a device's long-poll for a remote session is held (ADR 0083); "
        "keep it below nginx's proxy_read_timeout for /api/ (60 s as shipped)",
    )
    remote_recording_retention_days: int = Field(
        default=90, ge=1, description="a shell's recording is deleted this long after it ended"
    )
    remote_recording_max_bytes: int = Field(
        default=64 << 20, ge=64 << 10, description="a shell whose recording passes this ends"
    )
    heartbeat_retention_days: int = Field(default=14, ge=1)
    timestamp_refresh_s: int = Field(default=3600, ge=10)
    release_keep_last: int = Field(
        default=5, ge=1, description="release gc keeps this many newest releases per OS/role"
    )
    metadata_keep_s: int = Field(
        default=25 * 3600,
        ge=3600,
        description="release gc keeps versioned snapshots this young (a timestamp lives 1 day)",
    )
    engine_interval_s: float = Field(default=10.0, gt=0)
    lease_ttl_s: int = Field(default=30, ge=5)
    cache_ttl_s: float = Field(
        default=300.0,
        ge=0,
        description="longest a replica answers a desired state from memory without re-reading it",
    )
    change_poll_s: float = Field(
        default=0.5, ge=0, description="how often a replica reads the desired-state change log"
    )
    outage_backoff_s: float = Field(
        default=2.0, ge=0, description="after a lost database, answer reads from cache this long"
    )
    auth_cache_ttl_s: float = Field(
        default=0.0,
        ge=0,
        description="longest a cached credential is trusted while revocations cannot be heard "
        "(SQLite, or the PostgreSQL listener down); 0: read the database on every request, "
        "so revocation takes effect at once",
    )
    auth_cache_max_s: float = Field(
        default=3600.0,
        ge=0,
        description="longest a cached credential is trusted while this replica hears "
        "revocations (PostgreSQL LISTEN)",
    )
    fast_path: bool = Field(
        default=True,
        description="answer cached desired states and heartbeats below the FastAPI router",
    )
    heartbeat_queue_max: int = Field(
        default=10_000, ge=1, description="heartbeats waiting for their commit, per worker"
    )
    require_device_signatures: bool = Field(
        default=False,
        description="refuse enrolments without a public key (ADR 0075); bound devices sign always",
    )
    device_signature_window_s: int = Field(
        default=300, ge=10, le=3600, description="how far a signature's created may be off"
    )
    device_rate_per_s: float = Field(default=5.0, gt=0)
    device_rate_burst: int = Field(default=30, ge=1)
    anonymous_rate_per_s: float = Field(default=2.0, gt=0)
    anonymous_rate_burst: int = Field(default=20, ge=1)
    metrics_max_series: int = Field(
        default=500,
        ge=10,
        le=100_000,
        description="label sets per /metrics family; the rest fold into an (other) series",
    )
    exporter_networks: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = Field(
        default=(),
        description="comma-separated CIDRs a device's node_exporter may be in, besides the "
        "address the device connects from",
    )
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="longest a client may take to send its headers"
    )
    http_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="longest a request body may stall between two reads",
    )
    http_max_header_bytes: int = Field(
        default=64 << 10, ge=4 << 10, le=1 << 20, description="request line plus headers"
    )
    config_key: SecretStr | None = Field(
        default=None,
        description="AES-256 key (32 bytes, base64) sealing secret configuration values at "
        "rest; `overlord config-key` makes one. Without it, secret values are refused",
    )
    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    secure_cookies: bool = False
    run_scheduler: bool = True

    @field_validator("exporter_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("config_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("config_key")
    @classmethod
    def _key_decodes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_key(value.get_secret_value())
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
