"""Configuration: one validated ``Settings`` object, built by the entry point and passed down."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterhub.alerts.targets import WebhookTargets

DEFAULT_DATABASE_URL = "sqlite:///./meterhub.db"


class Settings(BaseSettings):
    """Every knob of meterhub; each field can be set by ``METERHUB_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="METERHUB_", frozen=True, extra="forbid")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path (default) or postgresql://user@host/db.",
    )
    timezone: str = Field("UTC", description="IANA zone for naive times in and ISO times out.")
    poll_interval: float = Field(60.0, gt=0, description="Seconds between two reads of a meter.")
    poll_timeout: float = Field(3.0, gt=0, description="Seconds a meter may take to answer.")
    poll_concurrency: int = Field(256, ge=1, le=4096, description="Requests in flight per shard.")
    poll_max_backoff: float = Field(
        600.0, gt=0, description="Longest pause, in seconds, before retrying a failing meter."
    )
    poll_log_days: float = Field(
        7.0, gt=0, description="Days of per-poll health history kept; then hourly counts."
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="HTTP worker processes of `meterhub serve`; background jobs run in the first.",
    )
    modbus_max_connections: int = Field(
        512,
        ge=1,
        description="Modbus gateway connections kept open per collector process; past it the "
        "least recently used idle one is closed.",
    )
    collector_enabled: bool = Field(True, description="Poll meters inside `meterhub serve`.")
    collector_processes: int = Field(
        0, ge=0, le=64, description="Poll in N child processes; 0 polls inside the server process."
    )
    source_address: str | None = Field(
        None, description="Local address polls are sent from, e.g. 127.0.0.2 (see README)."
    )
    meter_host: str = Field("127.0.0.1", description="Host of meters registered by port only.")
    scheduler_enabled: bool = Field(True, description="Run billing tasks inside `meterhub serve`.")
    scheduler_interval: float = Field(
        15.0, gt=0, description="Seconds between two looks for due billing tasks."
    )
    open_ingest: bool = Field(
        False,
        description="Serve the counter API and /smt/ calls without a token (trusted networks: "
        "the original connector client cannot send credentials).",
    )
    compact_after: float = Field(
        2.0,
        gt=0,
        description="Days after its end a UTC day of readings is compressed into chunks "
        "(late writes stay cheap until then, and are still taken after).",
    )
    compact_enabled: bool = Field(True, description="Compress closed days inside `meterhub serve`.")
    raw_retention_days: float | None = Field(
        None,
        gt=0,
        description="Days of raw points kept; older UTC days keep only their hourly rollups. "
        "Unset: every point is kept.",
    )
    cache_mb: int = Field(
        64, ge=0, description="Megabytes of decoded chunks and rollups kept in memory per process."
    )
    max_body_bytes: int = Field(
        8 << 20,
        ge=1024,
        description="Largest request body, in bytes, of any endpoint: a larger one is refused "
        "with 413 before it is read (by its Content-Length, or as a chunked body arrives).",
    )
    login_window: float = Field(
        900.0, gt=0, description="Seconds over which failed logins and bad tokens are counted."
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed logins of one account within the window before it is locked out "
        "(except from addresses it logged in from lately).",
    )
    login_max_failures_per_address: int = Field(
        20,
        ge=1,
        description="Failed logins from one address within the window before it is locked out.",
    )
    login_lockout: float = Field(
        60.0, gt=0, description="Seconds of a first lockout; each further one in a row doubles it."
    )
    login_lockout_max: float = Field(900.0, gt=0, description="Longest lockout, in seconds.")
    token_max_failures_per_address: int = Field(
        100,
        ge=1,
        description="Wrong or revoked tokens from one address within the window before its "
        "bad tokens answer 429 (valid tokens are served as ever).",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Key signing the dashboard's notices (at least 32 characters). Unset: one "
        "is made and kept in the database, shared by every worker.",
    )
    write_batch_size: int = Field(5000, ge=1, description="Readings per store transaction.")
    write_flush_interval: float = Field(
        1.0, gt=0, description="Seconds a reading may wait in the buffer before it is written."
    )
    bulk_max_rows: int = Field(
        100_000, ge=1, description="Most meters in one bulk request or CSV upload (413 beyond)."
    )
    bulk_max_bytes: int = Field(
        8 << 20, ge=1024, description="Largest bulk request or CSV upload, in bytes (413 beyond)."
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker (redis://... or amqp://...): `serve` publishes polling "
        "tasks and billing chunks for `meterhub worker` processes instead of doing them "
        "itself. Needs PostgreSQL. Unset: everything runs inside `serve`.",
    )
    broker_queue: str = Field(
        "meterhub", min_length=1, max_length=200, description="The broker queue of the tasks."
    )
    broker_visibility_timeout: float | None = Field(
        None,
        gt=0,
        description="Redis only: seconds after which a task taken by a worker that vanished "
        "is handed out again. Unset: shard_seconds + 2 x poll_timeout + 5.",
    )
    shard_size: int = Field(1000, ge=1, description="Most meters in one polling task.")
    shard_seconds: float = Field(
        5.0, gt=0, description="Longest span of a poll interval one polling task covers."
    )
    bill_chunk_size: int = Field(5000, ge=1, description="Devices billed by one billing task.")
    worker_heartbeat: float = Field(
        5.0, gt=0, description="Seconds between two heartbeats of a worker."
    )
    mqtt_enabled: bool = Field(
        True, description="Subscribe to the brokers of MQTT data sources inside `meterhub serve`."
    )
    mqtt_check_interval: float = Field(
        2.0,
        gt=0,
        le=10,
        description="Seconds between two looks at the registry for MQTT sources added, "
        "changed, deactivated or removed.",
    )
    leader_retry: float = Field(
        5.0,
        gt=0,
        description="Seconds between two tries of a server to become the leader (the one "
        "publishing polls, firing billing tasks and compacting).",
    )

    alerts_enabled: bool = Field(
        True,
        description="Evaluate alert rules and deliver their notifications inside "
        "`meterhub serve` (the leading server).",
    )
    alert_interval: float = Field(
        60.0, gt=0, description="Seconds between two evaluations of every alert rule."
    )
    alert_retry_base: float = Field(
        10.0,
        gt=0,
        description="Seconds before the first retry of a failed notification; each further "
        "retry waits twice as long (up to alert_retry_max).",
    )
    alert_retry_max: float = Field(
        3600.0, gt=0, description="Longest wait, in seconds, between two notification tries."
    )
    alert_max_attempts: int = Field(
        10, ge=1, le=100, description="Tries of a notification before it is given up."
    )
    alert_send_timeout: float = Field(
        10.0, gt=0, description="Seconds a webhook or SMTP server may take for one try."
    )
    alert_digest_from: int = Field(
        5,
        ge=0,
        description="From this many notifications of one rule's event, queued by one "
        "evaluation for one channel, they go as one digest (0: never).",
    )
    webhook_allow: str | None = Field(
        None,
        description="Where alert webhooks may go: comma-separated host names (*.name for "
        "subdomains), IP addresses and networks (10.20.0.0/16). Unset: any http(s) URL.",
    )
    smtp_host: str | None = Field(
        None, description="SMTP server of alert e-mails. Unset: e-mail channels fail (logged)."
    )
    smtp_port: int = Field(25, ge=1, le=65535, description="Port of the SMTP server.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = Field(None, description="SMTP login; unset: no login.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_from: str = Field(
        "meterhub@localhost", min_length=3, description="Sender address of alert e-mails."
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, url: str) -> str:
        if url.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        if not url.startswith(("sqlite://", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return url

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {name!r}") from exc
        return name

    @field_validator("source_address")
    @classmethod
    def _ip_address(cls, address: str | None) -> str | None:
        if address:
            ipaddress.ip_address(address)
        return address or None

    @model_validator(mode="after")
    def _retention_after_compaction(self) -> Settings:
        if self.raw_retention_days is not None and self.raw_retention_days <= self.compact_after:
            raise ValueError("raw_retention_days must be longer than compact_after")
        return self

    @field_validator("webhook_allow")
    @classmethod
    def _webhook_targets(cls, text: str | None) -> str | None:
        if text is not None:
            WebhookTargets.parse(text)
        return text

    @cached_property
    def webhook_targets(self) -> WebhookTargets | None:
        """``webhook_allow`` parsed (once: it is read for every notification sent); ``None``
        when any target may be named."""
        return None if self.webhook_allow is None else WebhookTargets.parse(self.webhook_allow)

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, key: SecretStr | None) -> SecretStr | None:
        text = "" if key is None else key.get_secret_value()
        if key is not None and len(text) < 32:
            raise ValueError("must be at least 32 characters")
        if key is not None and len(set(text)) < 8:
            raise ValueError("must be random: at least 8 different characters")
        return key

    @model_validator(mode="after")
    def _workers_share_postgresql(self) -> Settings:
        if self.broker_url and self.database_url.startswith("sqlite"):
            raise ValueError(
                "broker_url needs the shared PostgreSQL database (workers on other hosts "
                "cannot share a SQLite file): set METERHUB_DATABASE_URL to postgresql://..."
            )
        return self

    @property
    def visibility_timeout(self) -> float:
        """Seconds Redis waits before handing out again a task taken by a vanished worker."""
        if self.broker_visibility_timeout is not None:
            return self.broker_visibility_timeout
        return self.shard_seconds + 2 * self.poll_timeout + 5

    @model_validator(mode="after")
    def _lockouts_bounded(self) -> Settings:
        if self.login_lockout > self.login_lockout_max:
            raise ValueError("login_lockout must not be longer than login_lockout_max")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
