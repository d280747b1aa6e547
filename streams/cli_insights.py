"""``loopwise report experiments | errors | satisfaction [--since …] --out DIR``: reports read from the topics."""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from infra.settings import ConfigError, Settings
from infra.topics import BY_NAME
from schemas.serde import RECORD_TYPES, SchemaError, make_codec


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]",
             command: Callable[..., argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="HTML reports (plots embedded) with their data as CSV and Parquet")
    report_sub = report.add_subparsers(metavar="REPORT")
    for name, help_ in (("experiments", "prompt-variant experiments from lw.decisions.experiments"),
                        ("errors", "error patterns and their recommendations from lw.insights"),
                        ("satisfaction", "satisfaction KPIs from lw.outcomes and root causes from lw.insights")):
        parser = command(report_sub, name, help_, _run_report)
        parser.set_defaults(report=name)
        parser.add_argument("--out", required=True, help="folder to write <report>.html, .csv and .parquet into")
        parser.add_argument("--since", help="only records from this time on: epoch ms, ISO 8601, or an age (2h, 1d)")
        parser.add_argument("--idle-s", type=float, default=2.0,
                            help="stop reading a topic after this long without a record (default 2)")


def _run_report(args: argparse.Namespace, settings: Settings) -> int:
    from sinks import reports
    from streams.cli_dlq import parse_since

    since_ms = 0 if args.since is None else parse_since(args.since, time.time_ns() // 1_000_000)
    out = Path(args.out)

    def read(logical: str) -> list[Any]:
        return read_records(settings, logical, since_ms, args.idle_s)

    if args.report == "experiments":
        path = reports.experiments_report(read("decisions.experiments"), out)
    elif args.report == "errors":
        path = reports.errors_report(read("insights"), out)
    else:
        outcomes = [o for o in read("outcomes") if o.is_final]
        path = reports.satisfaction_report(read("insights"), outcomes, out)
    print(path)
    return 0


def read_records(settings: Settings, logical: str, since_ms: int = 0, idle_s: float = 2.0,
                 timeout_s: float = 300.0) -> list[Any]:
    """Every decodable record of a topic with ``ts_ms >= since_ms``, read until ``idle_s`` pass without one."""
    topic = settings.topic(logical)
    codec = make_codec(RECORD_TYPES[BY_NAME[logical].record], topic=topic, registry_url=settings.schema_registry_url,
                       max_event_bytes=settings.max_event_bytes)
    consumer = Consumer({**settings.kafka_config(), "group.id": f"loopwise-report-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 0})
    records: list[Any] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise ConfigError(f"topic {topic!r} is not there (apply the topics first: loopwise topics apply)")
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions])
        started = last = time.monotonic()
        while time.monotonic() - last < idle_s and time.monotonic() - started < timeout_s:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                if message.error():
                    raise KafkaException(message.error())
                last = time.monotonic()
                try:
                    record = codec.decode(message.value() or b"")
                except SchemaError:
                    continue  # the worker dead-letters bad input; a report shows what is readable
                if getattr(record, "ts_ms", 0) >= since_ms:
                    records.append(record)
    finally:
        consumer.close()
    return records
