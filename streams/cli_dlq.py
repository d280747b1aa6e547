"""``loopwise dlq replay``: re-publish dead-lettered input, once its cause is fixed, to the topic it came from.

Each dead letter keeps the input's original key and bytes (``DeadLetter.key`` /
``.value``) and, in its headers, the input's own headers (its trace context)
beside the error context (``streams.headers``). A replay sends the original
key, bytes and headers back to ``DeadLetter.source_topic``, marked with
``loopwise.replayed_from``. The worker admits them as new input: what is still
wrong is dead-lettered again, with its reason, and what was already processed
is refused as a duplicate, so a replay is safe to repeat.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Callable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition

from infra.settings import ConfigError, Settings
from schemas.records import DeadLetter
from schemas.serde import SchemaError, make_codec
from streams.headers import Headers, as_headers, replay_headers

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
             command: Callable[..., argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser("dlq", help="dead-letter queue tools")
    dlq_sub = dlq.add_subparsers(metavar="ACTION")
    replay = command(dlq_sub, "replay", "re-publish dead letters (original key, bytes, headers) to their source topic",
                     _run_replay)
    replay.add_argument("--reason", action="append", help="only dead letters with this reason (repeatable)")
    replay.add_argument("--since", help="only dead letters from this time on: epoch ms, ISO 8601, or an age (30m, 2h, 1d)")
    replay.add_argument("--topic", help="only dead letters from this source topic")
    replay.add_argument("--dry-run", action="store_true", help="list what would be replayed, send nothing")


def _run_replay(args: argparse.Namespace, settings: Settings) -> int:
    since_ms = None if args.since is None else parse_since(args.since, time.time_ns() // 1_000_000)
    report = replay(settings, reasons=frozenset(args.reason or ()), since_ms=since_ms, source_topic=args.topic,
                    is_dry_run=args.dry_run)
    print(report.summary())
    return 0


def parse_since(text: str, now_ms: int) -> int:
    """``--since`` as epoch milliseconds: epoch ms, an ISO 8601 time, or an age before ``now_ms``.

    >>> parse_since("1700000000000", 0), parse_since("2h", 7_200_000)
    (1700000000000, 0)
    >>> parse_since("2023-11-14T22:13:20+00:00", 0)
    1700000000000
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    found = _RELATIVE.match(text)
    if found:
        return now_ms - int(float(found.group(1)) * _UNIT_MS[found.group(2)])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"--since {text!r}: expected epoch ms, ISO 8601 or an age like 30m / 2h") from exc
    if when.tzinfo is None:
        raise ConfigError(f"--since {text!r}: give a time zone (e.g. Z or +00:00)")
    return int(when.timestamp() * 1000)


@dataclass
class ReplayReport:
    """What a replay did: how many were sent, per source topic, and how many were skipped and why."""

    replayed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    is_dry_run: bool = False

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def summary(self) -> str:
        verb = "would replay" if self.is_dry_run else "replayed"
        sent = ", ".join(f"{n} to {topic}" for topic, n in sorted(self.replayed.items())) or "nothing"
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return f"{verb} {sent}" + (f"; skipped {skipped}" if skipped else "")


def replay(settings: Settings, *, reasons: frozenset[str] = frozenset(), since_ms: int | None = None,
           source_topic: str | None = None, is_dry_run: bool = False, out: IO[str] = sys.stderr) -> ReplayReport:
    """Re-publish the dead letters that match, reading the DLQ from its start to its end as of now."""
    if not settings.bootstrap_servers:
        raise ConfigError("no Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS")
    dlq = settings.topic("dlq")
    codec = make_codec(DeadLetter, topic=dlq, registry_url=settings.schema_registry_url,
                       max_event_bytes=settings.max_event_bytes)
    report = ReplayReport(is_dry_run=is_dry_run)
    producer = None if is_dry_run else Producer({**settings.kafka_config(), "linger.ms": 5, "enable.idempotence": True})
    for message in _read_to_end(settings, dlq):
        try:
            letter = codec.decode(message.value())
        except SchemaError as exc:
            report.skip(f"unreadable ({exc.reason})")
            continue
        if reasons and letter.reason not in reasons:
            report.skip("other reason")
        elif since_ms is not None and letter.ts_ms < since_ms:
            report.skip("older")
        elif source_topic is not None and letter.source_topic != source_topic:
            report.skip("other topic")
        elif "(value truncated" in letter.error:
            report.skip("truncated")  # the original bytes are not all there: replaying would corrupt the event
        else:
            headers: Headers = replay_headers(as_headers(message.headers()), dlq, message.partition(), message.offset())
            if producer is not None:
                producer.produce(letter.source_topic, key=letter.key, value=letter.value, headers=list(headers))
                producer.poll(0)
            else:
                print(f"{letter.source_topic} key={letter.key!r} reason={letter.reason}: {letter.error[:120]}", file=out)
            report.replayed[letter.source_topic] = report.replayed.get(letter.source_topic, 0) + 1
    if producer is not None and producer.flush(30):
        raise RuntimeError("some replayed records were not delivered within 30 s")
    return report


def _read_to_end(settings: Settings, topic: str, idle_timeout_s: float = 5.0) -> Iterator[Message]:
    """Every committed message of ``topic`` up to the end it had when the read began."""
    consumer = Consumer({
        **settings.kafka_config(), "group.id": f"loopwise-dlq-replay-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 0,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if metadata.topics[topic].error is not None:
            raise ConfigError(f"topic {topic!r}: {metadata.topics[topic].error.str()}")
        partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
        consumer.assign(partitions)
        pending = {p for p, end in ends.items() if end > 0}
        last_seen = time.monotonic()
        while pending and time.monotonic() - last_seen < idle_timeout_s:
            for message in consumer.consume(500, 0.2):
                if message.error():
                    raise KafkaException(message.error())
                last_seen = time.monotonic()
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
                if message.offset() < ends[message.partition()]:
                    yield message
            # Transaction markers take offsets too: a partition whose position passed its end is done.
            for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
    finally:
        consumer.close()
