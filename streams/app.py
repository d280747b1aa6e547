"""``create_app(settings)``: the Faust app, its topics and agents — no import-time side effects."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import faust
from faust.app.base import BootStrategy

from infra.settings import Settings
from sinks.prometheus import Metrics
from streams.engine import EngineConfig, StageRunner
from streams.host import register_engine
from streams.probes import install_probes
from infra.settings import ConfigError
from streams.stages import STAGES, Stage, StageEnv

log = logging.getLogger(__name__)


class EngineBoot(BootStrategy):
    """Faust's own consumer and producer stay off: the engine's stage runners consume and produce."""

    enable_kafka_consumer = False
    enable_kafka_producer = False


class LoopwiseApp(faust.App):
    """A Faust app that hosts loopwise's stage runners and carries its metrics and settings."""

    BootStrategy = EngineBoot

    fetch_max_wait_ms: int | None = None
    stages: list[Stage]
    runners: list[StageRunner]
    metrics: Metrics
    loopwise_settings: Settings


def faust_credentials(settings: Settings) -> Any:
    """Faust/aiokafka credentials for the configured security protocol (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=settings.ssl_ca_location) if "SSL" in protocol else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    # SASLCredentials turns itself into SASL_SSL when given an SSL context.
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.reveal(),
        mechanism=settings.sasl_mechanism or "PLAIN",
        ssl_context=context,
    )


def create_app(settings: Settings, *, metrics: Metrics | None = None,
               engine: EngineConfig | None = None) -> LoopwiseApp:
    """Build the app for ``settings`` (which must name a cluster: see ``Settings.with_bootstrap``)."""
    datadir = settings.data_dir / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    brokers = ";".join(f"loopwise://{server.strip()}" for server in settings.kafka_config()["bootstrap.servers"].split(","))
    app = LoopwiseApp(
        settings.app_id,
        broker=brokers,
        broker_credentials=faust_credentials(settings),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        broker_commit_interval=1.0,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,  # loopwise's topics are applied, with explicit configs, by infra.admin
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        store="memory://",
        web_enabled=False,
        datadir=str(datadir),
        producer_linger=0.005,
        stream_wait_empty=False,
        logging_config=None,
    )
    app.loopwise_settings = settings
    app.fetch_max_wait_ms = settings.effective_fetch_max_wait_ms
    app.metrics = metrics or Metrics()
    env = StageEnv(settings, app.metrics)
    app.stages = [stage_type(env) for stage_type in select_stages(settings.stages)]
    engine = engine or EngineConfig.from_settings(settings)
    app.runners = [StageRunner(settings, stage, app.metrics, engine) for stage in app.stages]
    register_engine(app, app.runners)
    install_probes(app.metrics, app.runners)
    return app


def select_stages(names: tuple[str, ...]) -> list[type[Stage]]:
    """The stages this worker runs: all by default, else those named (``LOOPWISE_STAGES``)."""
    if not names:  # all but the opt-in ones (e.g. the lake: it writes files)
        return [stage for stage in STAGES if not getattr(stage, "is_opt_in", False)]
    known = {stage.name: stage for stage in STAGES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"LOOPWISE_STAGES: unknown stage {unknown[0]!r}; known: {', '.join(known)}")
    wanted = [known["workflows"]] + [known[n] for n in names if n != "workflows"]  # every stage needs workflows
    for stage in list(wanted):
        wanted += [known[c] for c in stage.companions if known[c] not in wanted]  # e.g. learn's re-keying half
    return sorted(wanted, key=list(STAGES).index)
