"""Short-lived commands: topics apply/list, produce and tail (confluent-kafka clients)."""

from __future__ import annotations

import base64
import sys
import time
import uuid
from typing import IO, Iterator

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Producer, TopicPartition

from infra.admin import apply_topics, list_topics
from infra.settings import ConfigError, Settings
from infra.topics import spec_for
from schemas.records import DeadLetter
from schemas.serde import RECORD_TYPES, SchemaError, decode_for_display, make_codec


def _require_cluster(settings: Settings) -> None:
    if not settings.bootstrap_servers:
        raise ConfigError("no Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS (e.g. to the address `loopwise broker` prints)")


def topics_apply(settings: Settings) -> int:
    _require_cluster(settings)
    report = apply_topics(settings)
    for name in report.created:
        print(f"created    {name}")
    for name in report.unchanged:
        print(f"unchanged  {name}")
    for m in report.mismatched:
        print(f"DIFFERS    {m.topic}: {m.setting} is {m.actual!r}, declared {m.wanted!r} (left as it is)")
    return 0 if report.is_clean else 1


def topics_list(settings: Settings, *, include_all: bool = False) -> int:
    _require_cluster(settings)
    for info in list_topics(settings, include_all=include_all):
        configs = " ".join(f"{k}={v}" for k, v in sorted(info.configs.items()))
        print(f"{info.name:40} partitions={info.partitions:<3} {configs}")
    return 0


def produce(settings: Settings, topic: str, path: str, *, is_raw: bool = False, key: str | None = None) -> int:
    """Send JSON lines; invalid lines are reported by number and skipped (exit 1)."""
    _require_cluster(settings)
    spec = spec_for(topic, settings.topic_prefix)
    record_type = RECORD_TYPES[spec.record]
    codec = make_codec(record_type, topic=topic, registry_url=settings.schema_registry_url,
                       max_event_bytes=settings.max_event_bytes)
    producer = Producer({**settings.kafka_config(), "linger.ms": 5})
    failures: list[str] = []
    sent = bad = 0
    with _open(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if is_raw:
                value, msg_key = line.rstrip(b"\r\n"), key
            else:
                try:
                    record = codec.from_dict(_loads(line))
                except SchemaError as exc:
                    print(f"line {number}: {exc}", file=sys.stderr)
                    bad += 1
                    continue
                value = codec.encode(record)
                msg_key = key if key is not None else _key_of(record, spec.key)
            producer.produce(topic, value=value, key=msg_key, on_delivery=_on_delivery(failures, number))
            sent += 1
            producer.poll(0)
    producer.flush(30)
    for failure in failures:
        print(failure, file=sys.stderr)
    print(f"sent {sent - len(failures)} to {topic}; {bad} invalid, {len(failures)} failed", file=sys.stderr)
    return 1 if bad or failures else 0


def tail(settings: Settings, topic: str, *, from_beginning: bool = False, max_records: int | None = None,
         idle_timeout_s: float | None = None, out: IO[str] = sys.stdout) -> int:
    """Print records as JSON lines until ``max_records`` or ``idle_timeout_s`` without one."""
    _require_cluster(settings)
    try:
        record_type = RECORD_TYPES[spec_for(topic, settings.topic_prefix).record]
    except KeyError:
        record_type = None  # not a loopwise topic: show what can be shown
    for record in _records(settings, topic, from_beginning, idle_timeout_s, record_type):
        out.write(orjson.dumps(record).decode() + "\n")
        out.flush()
        if max_records is not None:
            max_records -= 1
            if max_records <= 0:
                break
    return 0


def _records(settings: Settings, topic: str, from_beginning: bool, idle_timeout_s: float | None,
             record_type: type | None) -> Iterator[dict[str, object]]:
    consumer = Consumer({
        **settings.kafka_config(), "group.id": f"loopwise-tail-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 0,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if metadata.topics[topic].error is not None:
            raise ConfigError(f"topic {topic!r}: {metadata.topics[topic].error.str()}")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        # assign (not subscribe): no consumer-group join, so output starts at once.
        consumer.assign([TopicPartition(topic, p, start) for p in metadata.topics[topic].partitions])
        last_seen = time.monotonic()
        while idle_timeout_s is None or time.monotonic() - last_seen < idle_timeout_s:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            last_seen = time.monotonic()
            record = decode_for_display(message.value() or b"", record_type, settings.schema_registry_url)
            yield _readable(record) if record_type is DeadLetter else record
    finally:
        consumer.close()


def _readable(letter: dict[str, object]) -> dict[str, object]:
    """A dead letter with its original key and value also shown as text."""
    for name in ("key", "value"):
        encoded = letter.get(name)
        if isinstance(encoded, str):
            try:
                letter[f"{name}_text"] = base64.b64decode(encoded).decode("utf-8", "replace")
            except ValueError:
                pass
    return letter


def _loads(line: bytes) -> dict[str, object]:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("malformed", f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError("not_an_object", f"expected a JSON object, got {type(data).__name__}")
    return data


def _key_of(record: object, key_field: str) -> str | None:
    value = getattr(record, key_field, None)
    return None if value is None else str(value)


def _on_delivery(failures: list[str], number: int):  # type: ignore[no-untyped-def]
    def report(err, _msg):  # type: ignore[no-untyped-def]
        if err is not None:
            failures.append(f"line {number}: not delivered: {err}")
    return report


class _open:
    """Binary line reader over a path or stdin ('-')."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self._file = sys.stdin.buffer if self._path == "-" else open(self._path, "rb")
        return self._file

    def __exit__(self, *exc: object) -> None:
        if self._file is not None and self._path != "-":
            self._file.close()
