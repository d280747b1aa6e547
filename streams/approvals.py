"""The approval flow's edge: read commands and decisions from Kafka, sign and publish a person's decision.

Used by ``loopwise commands`` and by the console, so both publish the very same
signed ``Approval`` to ``lw.approvals`` (keyed by command id: the audit trail).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from infra.settings import ConfigError, Settings
from processors.remediation.approval import ApprovalBook, ApprovalState
from schemas.records import Approval, ApprovalDecision, Command
from schemas.serde import SchemaError, make_codec
from schemas.signing import sign

COMMAND_TOPICS = ("commands.remediation", "commands.scaling", "commands.jobs")


class ApprovalError(RuntimeError):
    """A decision cannot be taken: unknown command, not pending, no operator."""


def read_to_end(settings: Settings, logical_topics: tuple[str, ...], timeout_s: float = 10.0
                ) -> Iterator[tuple[str, bytes]]:
    """Every message of the topics, oldest first per partition, up to their end when called."""
    if not settings.bootstrap_servers:
        raise ConfigError("no Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS")
    consumer = Consumer({**settings.kafka_config(), "group.id": f"loopwise-read-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 0})
    try:
        ends: dict[tuple[str, int], int] = {}
        assignment = []
        for logical in logical_topics:
            topic = settings.topic(logical)
            meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            for partition in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
                if high > low:
                    ends[(topic, partition)] = high
                    assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        if not assignment:
            return
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                if message.error() is not None:
                    continue
                where = (message.topic(), message.partition())
                if message.offset() + 1 >= ends.get(where, 0):
                    ends.pop(where, None)
                yield message.topic(), message.value()
            # Transaction markers take offsets too: a partition whose position passed its end is done.
            for tp in consumer.position([TopicPartition(t, p) for t, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    ends.pop((tp.topic, tp.partition), None)
    finally:
        consumer.close()


def load_book(settings: Settings) -> ApprovalBook:
    """Every command needing approval and every decision taken, read from the topics now."""
    book = ApprovalBook(settings.approval_key_bytes)
    codecs: dict[str, Any] = {
        settings.topic(name): make_codec(Command, topic=settings.topic(name), registry_url=settings.schema_registry_url)
        for name in COMMAND_TOPICS}
    approvals_topic = settings.topic("approvals")
    codecs[approvals_topic] = make_codec(Approval, topic=approvals_topic, registry_url=settings.schema_registry_url)
    for topic, raw in read_to_end(settings, (*COMMAND_TOPICS, "approvals")):
        try:
            record = codecs[topic].decode(raw)
        except SchemaError:
            continue  # not ours to judge here: consumers dead-letter or count it
        if isinstance(record, Approval):
            book.observe_approval(record)
        else:
            book.observe_command(record)
    return book


def sign_decision(settings: Settings, command: Command, decision: ApprovalDecision, operator: str, reason: str,
                  now_ms: int) -> Approval:
    """The signed approval (or rejection) of exactly ``command`` by ``operator``."""
    if not operator.strip():
        raise ApprovalError("who decides? give --operator or set LOOPWISE_OPERATOR")
    return sign(Approval(command.command_id, command.signature, decision, operator.strip(), now_ms, reason),
                settings.approval_key_bytes)


def decide(settings: Settings, book: ApprovalBook, command_id: str, decision: ApprovalDecision, operator: str,
           reason: str = "", producer: Any = None) -> Approval:
    """Check ``command_id`` is pending, then publish the signed decision to ``lw.approvals`` and wait for the ack."""
    now_ms = int(time.time() * 1000)
    command = book.commands.get(command_id)
    if command is None:
        raise ApprovalError(f"no command {command_id!r} needs approval")
    state = book.state(command_id, now_ms)
    if state is not ApprovalState.PENDING:
        raise ApprovalError(f"command {command_id} is {state.value}, not pending")
    approval = sign_decision(settings, command, decision, operator, reason, now_ms)
    publish(settings, approval, producer)
    book.observe_approval(approval)
    return approval


def publish(settings: Settings, approval: Approval, producer: Any = None) -> None:
    """Send one approval keyed by its command id; raise ``ApprovalError`` when the broker does not take it."""
    topic = settings.topic("approvals")
    codec = make_codec(Approval, topic=topic, registry_url=settings.schema_registry_url)
    producer = producer or Producer({**settings.kafka_config(), "enable.idempotence": True})
    failures: list[str] = []
    producer.produce(topic, key=approval.command_id.encode(), value=codec.encode(approval),
                     on_delivery=lambda err, _msg: failures.append(str(err)) if err is not None else None)
    if producer.flush(10.0) > 0 or failures:
        raise ApprovalError(f"approval of {approval.command_id} not acknowledged: {failures or 'timeout'}")
