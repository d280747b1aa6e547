"""Settings: the one place that reads the environment (``Settings.from_env``)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """A setting is missing or has a value loopwise cannot use."""


class Secret:
    """A string that never shows itself in ``repr``/``str`` (and so never in logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))


_MODES = ("dev", "production")
_GUARANTEES = ("exactly_once", "at_least_once")
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class Settings:
    """Everything loopwise can be configured with; see README "Configuration".

    ``bootstrap_servers`` is ``None`` when no cluster is given: the CLI then
    starts the embedded broker and fills it in with ``with_bootstrap``.
    """

    bootstrap_servers: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret = field(default_factory=lambda: Secret(""))
    ssl_ca_location: str | None = None
    topic_prefix: str = "lw."
    app_id: str = "loopwise"
    schema_registry_url: str | None = None
    max_event_bytes: int = 256 * 1024
    #: How far ahead of the wall clock an event may be stamped (0: no check, e.g. accelerated replays).
    max_clock_skew_s: float = 300.0
    metrics_port: int = 9464
    metrics_host: str = "127.0.0.1"
    partitions: int = 4
    replication_factor: int = 1
    session_timeout_s: float = 6.0
    #: Wall-clock seconds after which a quiet input stops holding event-time clocks back (0: never).
    idle_timeout_s: float = 30.0
    fetch_max_wait_ms: int | None = None
    broker_port: int = 0
    data_dir: Path = Path(".loopwise")
    log_level: str = "info"
    mode: str = "dev"
    signing_key: Secret = field(default_factory=lambda: Secret(""))
    worker_id: str = field(default_factory=socket.gethostname)
    processing_guarantee: str = "exactly_once"
    is_remediation_dry_run: bool = False
    stages: tuple[str, ...] = ()
    #: OpenTelemetry GenAI ingestion (``otlp`` stage): the topic the Collector's Kafka exporter writes
    #: (its default name), and the span/resource attributes that name a span's workflow, first found wins.
    otlp_topic: str = "otlp_spans"
    otlp_workflow_attributes: tuple[str, ...] = ("loopwise.workflow", "service.name")
    is_embedded: bool = False
    #: The Parquet lake (``lake`` stage, ``loopwise lake``): a URL (s3://…, gs://…) or a local folder.
    lake_url: str | None = None
    lake_retention_days: float = 30.0
    lake_compact_interval_s: float = 60.0
    #: The notification receivers (``notify`` stage): a YAML file; secrets it names are read from the env.
    receivers_file: Path | None = None
    receiver_secrets: Mapping[str, Secret] = field(default_factory=dict)
    #: Capacity (``forecast``, ``scale``, ``schedule`` stages): provisioning lead time, utilisation aimed at,
    #: cost of one replica-hour and the most extra capacity may cost; job price schedule (JSON) and its time zone.
    scaling_lead_s: float = 300.0
    scaling_target_utilisation: float = 0.85
    scaling_replica_cost_usd_per_hour: float = 1.0
    scaling_max_extra_usd_per_hour: float | None = None
    job_prices: str | None = None
    job_price_timezone: str = "UTC"
    risky_actions: tuple[str, ...] = ()
    approval_window_s: float = 900.0
    approval_key: Secret = field(default_factory=lambda: Secret(""))
    operator: str | None = None
    console_host: str = "127.0.0.1"
    console_port: int = 8765
    console_token: Secret = field(default_factory=lambda: Secret(""))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``env`` (default: ``os.environ``); raise ``ConfigError``."""
        env = os.environ if env is None else env
        get = lambda name: (env.get(name) or "").strip() or None  # noqa: E731
        protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in _PROTOCOLS:
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {_PROTOCOLS}")
        mode = (get("LOOPWISE_MODE") or "dev").lower()
        if mode not in _MODES:
            raise ConfigError(f"LOOPWISE_MODE={mode!r}: expected one of {_MODES}")
        settings = cls(
            bootstrap_servers=get("KAFKA_BOOTSTRAP_SERVERS"),
            security_protocol=protocol,
            sasl_mechanism=get("KAFKA_SASL_MECHANISM"),
            sasl_username=get("KAFKA_SASL_USERNAME"),
            sasl_password=Secret(env.get("KAFKA_SASL_PASSWORD") or ""),
            ssl_ca_location=get("KAFKA_SSL_CA_LOCATION"),
            topic_prefix=env.get("LOOPWISE_TOPIC_PREFIX", "lw."),
            app_id=get("LOOPWISE_APP_ID") or "loopwise",
            schema_registry_url=get("LOOPWISE_SCHEMA_REGISTRY_URL"),
            max_event_bytes=_int(env, "LOOPWISE_MAX_EVENT_BYTES", 256 * 1024, minimum=64),
            max_clock_skew_s=_float(env, "LOOPWISE_MAX_CLOCK_SKEW_S", 300.0, minimum=0.0),
            metrics_port=_int(env, "LOOPWISE_METRICS_PORT", 9464, minimum=0),
            metrics_host=get("LOOPWISE_METRICS_HOST") or "127.0.0.1",
            partitions=_int(env, "LOOPWISE_PARTITIONS", 4, minimum=1),
            replication_factor=_int(env, "LOOPWISE_REPLICATION_FACTOR", 1, minimum=1),
            session_timeout_s=_float(env, "LOOPWISE_SESSION_TIMEOUT_S", 6.0, minimum=1.0),
            idle_timeout_s=_float(env, "LOOPWISE_IDLE_TIMEOUT_S", 30.0, minimum=0.0),
            fetch_max_wait_ms=_optional_int(env, "LOOPWISE_FETCH_MAX_WAIT_MS"),
            broker_port=_int(env, "LOOPWISE_BROKER_PORT", 0, minimum=0),
            data_dir=Path(get("LOOPWISE_DATA_DIR") or ".loopwise"),
            log_level=(get("LOOPWISE_LOG_LEVEL") or "info").lower(),
            mode=mode,
            signing_key=Secret(env.get("LOOPWISE_SIGNING_KEY") or ""),
            worker_id=get("LOOPWISE_WORKER_ID") or socket.gethostname(),
            processing_guarantee=(get("LOOPWISE_PROCESSING_GUARANTEE") or "exactly_once").lower(),
            is_remediation_dry_run=_bool(env, "LOOPWISE_REMEDIATION_DRY_RUN"),
            stages=tuple(x.strip() for x in (get("LOOPWISE_STAGES") or "").split(",") if x.strip()),
            otlp_topic=get("LOOPWISE_OTLP_TOPIC") or "otlp_spans",
            otlp_workflow_attributes=tuple(x.strip() for x in (get("LOOPWISE_OTLP_WORKFLOW_ATTRIBUTES")
                                                               or "loopwise.workflow,service.name").split(",")
                                           if x.strip()),
            lake_url=get("LOOPWISE_LAKE_URL") or get("LOOPWISE_LAKE_DIR"),
            lake_retention_days=_float(env, "LOOPWISE_LAKE_RETENTION_DAYS", 30.0, minimum=0.0),
            lake_compact_interval_s=_float(env, "LOOPWISE_LAKE_COMPACT_INTERVAL_S", 60.0, minimum=0.0),
            receivers_file=Path(get("LOOPWISE_RECEIVERS_FILE")) if get("LOOPWISE_RECEIVERS_FILE") else None,
            receiver_secrets={name: Secret(value) for name, value in env.items()
                              if name.startswith("LOOPWISE_RECEIVER_") and value},
            scaling_lead_s=_float(env, "LOOPWISE_SCALING_LEAD_S", 300.0, minimum=0.0),
            scaling_target_utilisation=_float(env, "LOOPWISE_SCALING_TARGET_UTILISATION", 0.85, minimum=0.2),
            scaling_replica_cost_usd_per_hour=_float(env, "LOOPWISE_SCALING_REPLICA_COST_USD_PER_HOUR", 1.0,
                                                     minimum=0.0),
            scaling_max_extra_usd_per_hour=(_float(env, "LOOPWISE_SCALING_MAX_EXTRA_USD_PER_HOUR", 0.0, minimum=0.0)
                                            if get("LOOPWISE_SCALING_MAX_EXTRA_USD_PER_HOUR") else None),
            job_prices=get("LOOPWISE_JOB_PRICES"),
            job_price_timezone=get("LOOPWISE_JOB_PRICE_TIMEZONE") or "UTC",
            risky_actions=tuple(x.strip() for x in (get("LOOPWISE_RISKY_ACTIONS") or "").split(",") if x.strip()),
            approval_window_s=_float(env, "LOOPWISE_APPROVAL_WINDOW_S", 900.0, minimum=1.0),
            approval_key=Secret(env.get("LOOPWISE_APPROVAL_KEY") or ""),
            operator=get("LOOPWISE_OPERATOR"),
            console_host=get("LOOPWISE_CONSOLE_HOST") or "127.0.0.1",
            console_port=_int(env, "LOOPWISE_CONSOLE_PORT", 8765, minimum=0),
            console_token=Secret(env.get("LOOPWISE_CONSOLE_TOKEN") or ""),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ConfigError`` for combinations that cannot work."""
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_MECHANISM, "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        if self.processing_guarantee not in _GUARANTEES:
            raise ConfigError(f"LOOPWISE_PROCESSING_GUARANTEE={self.processing_guarantee!r}: "
                              f"expected one of {_GUARANTEES}")
        if self.mode == "production" and not self.signing_key:
            raise ConfigError("LOOPWISE_MODE=production needs LOOPWISE_SIGNING_KEY: commands must be signed")
        if self.console_host not in ("127.0.0.1", "localhost", "::1") and not self.console_token:
            raise ConfigError(f"LOOPWISE_CONSOLE_HOST={self.console_host} needs LOOPWISE_CONSOLE_TOKEN: "
                              "the console is reachable from elsewhere")
        if self.mode == "production" and self.signing_key and len(self.signing_key.reveal()) < 32:
            raise ConfigError("LOOPWISE_SIGNING_KEY must be at least 32 characters in production")

    def with_bootstrap(self, servers: str, *, is_embedded: bool) -> "Settings":
        """A copy pointing at ``servers`` (used once the embedded broker is up)."""
        return replace(self, bootstrap_servers=servers, is_embedded=is_embedded)

    def with_(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` (tests and entry points use this)."""
        return replace(self, **changes)

    @property
    def effective_fetch_max_wait_ms(self) -> int | None:
        """Small on the embedded broker (it never wakes a waiting fetch), Kafka's default elsewhere."""
        if self.fetch_max_wait_ms is not None:
            return self.fetch_max_wait_ms
        return 10 if self.is_embedded else None

    @property
    def signing_key_bytes(self) -> bytes:
        """The HMAC key; in dev mode without one, this installation's random key (``infra.dev_key``)."""
        if self.signing_key:
            return self.signing_key.reveal().encode()
        from infra.dev_key import dev_signing_key  # file I/O only when there is no key in the environment

        return dev_signing_key(self.data_dir)

    @property
    def approval_key_bytes(self) -> bytes:
        """The HMAC key of approvals: ``LOOPWISE_APPROVAL_KEY``, else the command signing key."""
        return self.approval_key.reveal().encode() if self.approval_key else self.signing_key_bytes

    def kafka_config(self) -> dict[str, str]:
        """librdkafka settings (confluent-kafka producer, consumer and admin)."""
        if not self.bootstrap_servers:
            raise ConfigError("no Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS or start the embedded broker")
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.reveal()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    @property
    def lake_location(self) -> str:
        """Where the lake lives: ``LOOPWISE_LAKE_URL`` / ``LOOPWISE_LAKE_DIR``, else ``<data dir>/lake``."""
        return self.lake_url or str(self.data_dir / "lake")

    def topic(self, name: str) -> str:
        """The full topic name of a logical name (``requests`` → ``lw.requests``)."""
        return f"{self.topic_prefix}{name}"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from exc
    if value < minimum:
        raise ConfigError(f"{name}={value}: must be at least {minimum}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    return _int(env, name, 0, minimum=0) if (env.get(name) or "").strip() else None


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: expected a number") from exc
    if value < minimum:
        raise ConfigError(f"{name}={value}: must be at least {minimum}")
    return value
