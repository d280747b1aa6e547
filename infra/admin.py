"""Topics as code: create the declared topics idempotently and report drift, never alter it.

Errors::

    AdminError             the cluster could not be reached or refused an admin request
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic, ResourceType

from infra.settings import Settings
from infra.topics import TOPICS, TopicSpec

log = logging.getLogger(__name__)
_LIBRDKAFKA_LOG = logging.getLogger(f"{__name__}.librdkafka")


class AdminError(RuntimeError):
    """The cluster could not be reached or refused an admin request."""


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One setting of an existing topic that differs from its declaration."""

    topic: str
    setting: str
    wanted: str
    actual: str | None


@dataclass(slots=True)
class ApplyReport:
    """What ``apply_topics`` did: full topic names created, left as they were, or found different."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    mismatched: list[Mismatch] = field(default_factory=list)

    @property
    def is_clean(self) -> bool:
        """True when every declared topic exists as declared."""
        return not self.mismatched


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as the cluster reports it."""

    name: str
    partitions: int
    configs: dict[str, str]
    is_declared: bool


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient on ``settings``' cluster (connection and security from ``kafka_config``)."""
    # librdkafka logs through ``logging`` instead of raw stderr; the config itself is never logged.
    conf: dict[str, object] = {**settings.kafka_config(), "logger": _LIBRDKAFKA_LOG,
                               "reconnect.backoff.max.ms": 1000}
    try:
        return AdminClient(conf)
    except KafkaException as exc:
        raise AdminError(f"cannot build a Kafka admin client for {settings.bootstrap_servers}: {exc}") from exc


def wait_for_broker(settings: Settings, timeout_s: float = 15.0) -> None:
    """Return once the cluster answers a metadata request; ``AdminError`` after ``timeout_s``."""
    _metadata(admin_client(settings), time.monotonic() + timeout_s, settings.bootstrap_servers)


def apply_topics(settings: Settings, specs: Iterable[TopicSpec] = TOPICS, timeout_s: float = 15.0) -> ApplyReport:
    """Create the missing declared topics with explicit configs; report those that differ.

    Existing topics are compared (partitions, replication factor, every config of
    ``TopicSpec.configs()``) and never altered: differences are logged at WARNING
    and returned in ``report.mismatched``.

    Raises:
        AdminError: the cluster cannot be reached or refuses to create a topic.
    """
    deadline = time.monotonic() + timeout_s
    admin = admin_client(settings)
    wanted = {settings.topic(spec.name): spec for spec in specs}
    existing = set(_metadata(admin, deadline, settings.bootstrap_servers).topics)
    report = ApplyReport()
    raced = _create(admin, settings, {name: spec for name, spec in wanted.items() if name not in existing},
                    deadline, report)
    to_compare = sorted((existing & wanted.keys()) | raced)
    if to_compare:
        metadata = _metadata(admin, deadline, settings.bootstrap_servers, expect=to_compare)
        configs = _describe_configs(admin, to_compare, deadline)
        for name in to_compare:
            diffs = _compare(name, wanted[name], settings, metadata, configs.get(name, {}))
            for diff in diffs:
                log.warning("topic %s: %s is %s, declared %s (left as it is)",
                            diff.topic, diff.setting, diff.actual, diff.wanted)
            if diffs:
                report.mismatched.extend(diffs)
            else:
                report.unchanged.append(name)
    log.info("topics: %d created, %d unchanged, %d settings differ",
             len(report.created), len(report.unchanged), len(report.mismatched))
    return report


def list_topics(settings: Settings, timeout_s: float = 10.0, include_all: bool = False) -> list[TopicInfo]:
    """Topics under ``settings.topic_prefix`` (every non-internal topic with ``include_all``), by name."""
    deadline = time.monotonic() + timeout_s
    admin = admin_client(settings)
    metadata = _metadata(admin, deadline, settings.bootstrap_servers)
    declared = {settings.topic(spec.name) for spec in TOPICS}
    names = sorted(name for name in metadata.topics if not name.startswith("__")
                   and (include_all or name.startswith(settings.topic_prefix)))
    configs = _describe_configs(admin, names, deadline) if names else {}
    return [TopicInfo(name, len(metadata.topics[name].partitions), configs.get(name, {}), name in declared)
            for name in names]


def _create(admin: AdminClient, settings: Settings, missing: dict[str, TopicSpec], deadline: float,
            report: ApplyReport) -> set[str]:
    """Create ``missing``; return the names another client created first (to compare instead)."""
    if not missing:
        return set()
    new_topics = [NewTopic(name, spec.partitions or settings.partitions, settings.replication_factor,
                           config=spec.configs()) for name, spec in sorted(missing.items())]
    try:
        futures = admin.create_topics(new_topics, request_timeout=_remaining(deadline))
    except KafkaException as exc:
        raise AdminError(f"cannot create {len(new_topics)} topics: {exc}") from exc
    raced: set[str] = set()
    for name, future in futures.items():
        try:
            future.result(timeout=_remaining(deadline))
        except KafkaException as exc:
            if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                raced.add(name)
                continue
            raise AdminError(f"cannot create topic {name}: {exc}") from exc
        except TimeoutError as exc:
            raise AdminError(f"creating topic {name} took longer than the deadline") from exc
        report.created.append(name)
        log.debug("created topic %s", name)
    report.created.sort()
    return raced


def _compare(name: str, spec: TopicSpec, settings: Settings, metadata: ClusterMetadata,
             configs: dict[str, str]) -> list[Mismatch]:
    topic = metadata.topics.get(name)
    partitions = list(topic.partitions.values()) if topic is not None else []
    replicas = len(partitions[0].replicas) if partitions else 0
    diffs = [
        Mismatch(name, "partitions", str(spec.partitions or settings.partitions), str(len(partitions))),
        Mismatch(name, "replication.factor", str(settings.replication_factor), str(replicas)),
    ]
    diffs += [Mismatch(name, key, value, configs.get(key)) for key, value in spec.configs().items()]
    return [diff for diff in diffs if diff.wanted != diff.actual]


def _describe_configs(admin: AdminClient, names: list[str], deadline: float) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    try:
        futures = admin.describe_configs(resources, request_timeout=_remaining(deadline))
        return {resource.name: {key: entry.value for key, entry in future.result(timeout=_remaining(deadline)).items()
                                if entry.value is not None}
                for resource, future in futures.items()}
    except KafkaException as exc:
        raise AdminError(f"cannot describe the configs of {len(names)} topics: {exc}") from exc
    except TimeoutError as exc:
        raise AdminError("describing topic configs took longer than the deadline") from exc


def _metadata(admin: AdminClient, deadline: float, servers: str | None,
              expect: Iterable[str] = ()) -> ClusterMetadata:
    """Cluster metadata, retried until the deadline; with ``expect``, until those topics show.

    A topic another client just created can be missing from a broker's metadata
    for a moment: comparing it then would report a false drift.
    """
    last: Exception | None = None
    while True:
        remaining = _remaining(deadline)
        try:
            # Short attempts so a broker that comes up late is seen soon after.
            metadata = admin.list_topics(timeout=min(remaining, 1.0))
            absent = sorted(set(expect) - set(metadata.topics))
            if not absent:
                return metadata
            last = AdminError(f"topics not in the metadata yet: {absent}")
        except KafkaException as exc:
            last = exc
        if remaining <= 0.05:
            if isinstance(last, AdminError):
                raise last
            raise AdminError(f"no Kafka broker answered at {servers}: {last}") from last
        if isinstance(last, AdminError):
            time.sleep(0.05)


def _remaining(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())
