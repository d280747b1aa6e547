"""A real broker for integration tests (env → Docker → embedded, never skipped) and produce/consume helpers."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition

from infra.broker import EmbeddedBroker
from infra.settings import Settings
from tests.conftest import wait_until, unique_name

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent

Key = str | bytes | None


@dataclass(frozen=True)
class BrokerUnderTest:
    """The broker the session runs against and where it came from (``env``, ``docker``, ``embedded``)."""

    bootstrap_servers: str
    kind: str

    @property
    def is_embedded(self) -> bool:
        """Whether it is the embedded Tansu broker (small fetch waits, short sessions)."""
        return self.kind == "embedded"


#: Integration tests of a minute or more each (several workers, long live runs, heavy imports): they run
#: with ``make test-slow`` (and ``make test-all``), not in ``make test``, which CI runs within its time budget.
SLOW = frozenset({
    "test_split_deployment.py", "test_lake_crash.py", "test_exactly_once_replay.py", "test_reports.py",
    "test_approvals_worker.py", "test_litellm.py", "test_node_client.py", "test_durable_brain.py::test_restart",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as ``integration``, the long ones also ``slow``."""
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)
            if item.path.name in SLOW or any(item.nodeid.split("/")[-1].startswith(s) for s in SLOW if "::" in s):
                item.add_marker(pytest.mark.slow)


def _docker_answers(timeout_s: float = 2.0) -> bool:
    try:
        import docker  # lazily: most runs have no Docker engine and need not pay the import

        client = docker.from_env(timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:  # any failure means "no usable engine": fall back to the embedded broker
        log.info("no Docker engine (%s): using the embedded broker", type(exc).__name__)
        return False


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerUnderTest]:
    """The session's broker: ``KAFKA_BOOTSTRAP_SERVERS``, else testcontainers' Kafka, else embedded."""
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if servers:
        yield BrokerUnderTest(servers, "env")
    elif _docker_answers():
        from testcontainers.community.kafka import KafkaContainer  # testcontainers.kafka is deprecated

        # KRaft, like the production-like compose stack; cp-kafka 7.6 (the default image) supports it.
        with KafkaContainer().with_kraft() as container:
            yield BrokerUnderTest(container.get_bootstrap_server(), "docker")
    else:
        with EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log") as broker:
            yield BrokerUnderTest(broker.bootstrap_servers, "embedded")


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: BrokerUnderTest) -> str:
    """``host:port`` of the session's broker."""
    return kafka_broker.bootstrap_servers


@pytest.fixture
def settings(kafka_broker: BrokerUnderTest, tmp_path: Path) -> Settings:
    """Settings on the session's broker with a topic prefix, app id and data dir of this test's own.

    Only ``KAFKA_*`` variables are read, so an env-given cluster's SASL/SSL
    settings apply while a developer's ``LOOPWISE_*`` shell settings do not leak in.
    """
    kafka_env = {name: value for name, value in os.environ.items() if name.startswith("KAFKA_")}
    tag = unique_name("")
    return (Settings.from_env(kafka_env)
            .with_bootstrap(kafka_broker.bootstrap_servers, is_embedded=kafka_broker.is_embedded)
            .with_(topic_prefix=f"t{tag}.", app_id=f"lw-test-{tag}", metrics_port=0, data_dir=tmp_path))


def consumer_config(settings: Settings, group_id: str | None = None) -> dict[str, Any]:
    """confluent-kafka consumer settings for tests: from the beginning, no commits, quick fetches."""
    return {
        **settings.kafka_config(),
        "group.id": group_id or unique_name(f"{settings.app_id}-g"),
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # The embedded broker holds a join for half the session timeout and never wakes a waiting fetch.
        "session.timeout.ms": 6000,
        "fetch.wait.max.ms": 10,
        # Without it librdkafka stalls ~0.85 s between fetches after a burst (see MEASUREMENTS.md).
        "fetch.queue.backoff.ms": 0,
    }


def encode_value(value: Any) -> bytes:
    """Bytes as they are, ``str`` as UTF-8, anything else (dict, dataclass record) as JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)  # orjson serializes dataclasses and StrEnums natively


def produce_messages(settings: Settings, topic: str, values: Iterable[Any],
                     key: Key | Callable[[Any], Key] = None, timeout_s: float = 10.0) -> int:
    """Produce ``values`` to the full topic name ``topic``, flush, and return how many were acknowledged.

    Args:
        key: one key for all values, or a function of each value.

    Raises:
        AssertionError: a delivery failed or the flush did not finish within ``timeout_s``.
    """
    producer = Producer({**settings.kafka_config(), "linger.ms": 1})
    errors: list[str] = []
    acked = 0

    def on_delivery(err: Any, msg: Message) -> None:
        nonlocal acked
        if err is not None:
            errors.append(str(err))
        else:
            acked += 1

    for value in values:
        message_key = key(value) if callable(key) else key
        producer.produce(topic, value=encode_value(value), key=message_key, on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    assert not errors and remaining == 0, f"produce to {topic}: {errors[:3]} errors, {remaining} not flushed"
    return acked


def consume_messages(settings: Settings, topic: str, n: int, timeout_s: float = 10.0) -> list[Message]:
    """The first ``n`` messages of ``topic`` (all partitions, from the beginning), as soon as they arrive.

    Partitions are assigned, not subscribed: a group join costs ~3 s on the
    embedded broker and adds nothing to reading a topic.

    Raises:
        AssertionError: fewer than ``n`` arrived within ``timeout_s`` (says what did arrive).
    """
    deadline = time.monotonic() + timeout_s
    consumer = Consumer(consumer_config(settings))
    got: list[Message] = []
    try:
        consumer.assign(_all_partitions(consumer, topic, deadline))
        while len(got) < n and time.monotonic() < deadline:
            # Never negative: librdkafka reads a negative timeout as "wait forever".
            wait_s = min(0.2, max(0.0, deadline - time.monotonic()))
            batch = consumer.consume(num_messages=n - len(got), timeout=wait_s)
            got.extend(msg for msg in batch if msg.error() is None)
    finally:
        consumer.close()
    assert len(got) >= n, f"{topic}: {len(got)} of {n} messages in {timeout_s} s: {_describe(got)}"
    return got


def _all_partitions(consumer: Consumer, topic: str, deadline: float) -> list[TopicPartition]:
    def known() -> list[TopicPartition]:
        try:
            partitions = consumer.list_topics(topic, timeout=1.0).topics[topic].partitions
        except KafkaException:
            return []
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(partitions)]

    return wait_until(known, max(0.0, deadline - time.monotonic()),
                      message=f"topic {topic} has no partitions (does it exist?)")


def _describe(messages: Sequence[Message]) -> str:
    shown = [(m.partition(), m.offset(), m.key(), (m.value() or b"")[:80]) for m in messages[:5]]
    return f"{shown}{' …' if len(messages) > 5 else ''}"


@pytest.fixture
def produce() -> Callable[..., int]:
    """``produce_messages(settings, topic, values, key=...)``."""
    return produce_messages


@pytest.fixture
def consume() -> Callable[..., list[Message]]:
    """``consume_messages(settings, topic, n, timeout_s)``."""
    return consume_messages
