"""Process settings from environment variables (names pinned by the foundation contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from config.redisurl import is_sentinel, parse_sentinel_url

EXAMPLE_CONFIG = Path(__file__).with_name("plate.example.yaml")


class Settings(BaseSettings):
    """Built once in main and passed down; nothing reads the environment at import time."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    slack_bot_token: SecretStr = SecretStr("")
    slack_signing_secret: SecretStr = SecretStr("")
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    # Unset means embedded: a private redis-server is started by the process. redis://, rediss:// (TLS,
    # ?ssl_ca_certs=<file>), unix://, or Sentinel: redis+sentinel://[[user]:password@]host:26379,host2:26379/
    # <service>[/<db>] (rediss+sentinel:// for TLS to the sentinels and the master; docs/redis.md).
    redis_url: str | None = None
    # The Redis password, from a Secret, when REDIS_URL carries none (a password in the URL wins).
    redis_password: SecretStr | None = None
    # Sentinel without a URL: the sentinels (host:port, comma-separated) and the master's service name;
    # REDIS_URL is then composed from them (setting both is refused).
    redis_sentinels: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.:\[\]_-]+(,[A-Za-z0-9.:\[\]_-]+)*$")
    redis_sentinel_service: str = Field(default="mymaster", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    # The sentinels' own password (their `requirepass`), when they have one; the master's is REDIS_PASSWORD.
    redis_sentinel_password: SecretStr | None = None
    plate_config: Path = EXAMPLE_CONFIG
    helm_bin: str = "helm"
    kubeconfig: str | None = None
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    # Where the worker caches charts fetched from registries, Helm repositories and git (default: a
    # plate-charts directory under the system's temporary directory).
    plate_chart_cache: Path | None = None
    # Which process exports the cluster-wide /metrics series (jobs, queue, workers, approvals, locks): auto =
    # the watcher's leader, or serve alone with embedded Redis; always / never for this process.
    plate_cluster_metrics: str = Field(default="auto", pattern=r"^(auto|always|never)$")
    # Where embedded Redis keeps its socket and data.
    plate_data_dir: Path = Path(".plate-data")
    # Seconds between a worker's job heartbeats; a job is reported lost after 3 missed beats.
    plate_worker_heartbeat: int = Field(default=5, ge=1, le=30)
    # Seconds between the bot's housekeeping rounds (request expiry, lost-job sweep).
    plate_housekeeping_interval: float = Field(default=5.0, gt=0, le=60)
    # Seconds between a deploy's rollout checks (workloads rolled out, pods Ready) after helm returns.
    plate_rollout_poll: float = Field(default=1.0, gt=0, le=60)
    # Backups of helm values in Redis (core/backupkeys.py): Fernet keys, comma-separated, the first one
    # encrypts; and encrypted | plaintext | off (default: encrypted with a key, plaintext when embedded).
    plate_backup_key: SecretStr | None = None
    plate_backups: str | None = Field(default=None, pattern=r"^(encrypted|plaintext|off)$")
    # serve's HTTP limits (docs/operations.md): open connections, idle keep-alive seconds, and seconds
    # from a request's first byte to its last (a client trickling a body in is cut off after it).
    plate_http_connection_limit: int = Field(default=100, ge=1, le=10_000)
    plate_http_idle_timeout: int = Field(default=60, ge=1, le=3600)
    plate_http_request_timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("redis_url")
    @classmethod
    def _sentinel_url_readable(cls, value: str | None) -> str | None:
        """A Sentinel URL is checked here, so a bad one stops the process with one line (RedisURLError's
        message names the wrong part, never the password)."""
        if value and is_sentinel(value):
            parse_sentinel_url(value)
        return value

    @model_validator(mode="after")
    def _sentinel_url(self) -> Self:
        """REDIS_SENTINELS (+ REDIS_SENTINEL_SERVICE) is REDIS_URL=redis+sentinel://<sentinels>/<service>/0."""
        if self.redis_sentinels:
            if self.redis_url:
                raise ValueError("set REDIS_URL or REDIS_SENTINELS, not both")
            self.redis_url = f"redis+sentinel://{self.redis_sentinels}/{self.redis_sentinel_service}/0"
        return self
