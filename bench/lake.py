"""Records/s one worker writes to the Parquet lake, beside the ceilings measured in the same run.

Run: ``.venv/bin/python -m bench.lake [--records N] [--repeats R]``. On the embedded
broker: N requests (JSON, ~400 B) are produced to a fresh 4-partition topic, then the
``lake`` stage runs under the engine (exactly-once: a transaction per batch) in this
process until every record is in the lake; records/s is N over that time. Printed
beside it: a raw confluent-kafka consumer reading the same records (the read ceiling)
and the Parquet writer alone on already-decoded rows (the write ceiling). Medians.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer

from bench.throughput.harness import all_partitions, create_topics, produce_all, unique
from infra.broker import EmbeddedBroker
from infra.settings import Settings
from schemas.records import RequestEvent, Status
from schemas.serde import json_codec
from sinks.parquet import LakeWriter, hour_of
from sinks.prometheus import Metrics
from streams.engine import EngineConfig, StageRunner
from streams.stages.base import StageEnv
from streams.stages.lake import LakeStage

T0 = 1_700_000_000_000
PARTITIONS = 4


def _requests(n: int) -> list[tuple[bytes, bytes]]:
    from schemas.records import RequestContext

    codec = json_codec(RequestEvent)
    out = []
    for i in range(n):
        rid = f"r-{i:08d}"
        record = RequestEvent(rid, T0 + i * 20, "support-bot", "v1", ("gpt-large", "local-small")[i % 2],
                              RequestContext("acme", "summarize"), 800.0 + i % 50, 0.002, 500, 200,
                              Status.OK if i % 20 else Status.ERROR)
        out.append((rid.encode(), codec.encode(record)))
    return out


def lake_run(bootstrap: str, events: list[tuple[bytes, bytes]], lake: Path) -> tuple[float, float]:
    """(seconds, CPU µs per record of this process) for the lake stage to land every record (topic produced
    beforehand, not counted)."""
    prefix = unique("blake") + "."
    topic = prefix + "requests"
    create_topics(bootstrap, [topic], PARTITIONS)
    produce_all(bootstrap, [(topic, k, v) for k, v in events])
    settings = Settings(bootstrap_servers=bootstrap, is_embedded=True, topic_prefix=prefix, app_id=unique("blake"),
                        lake_url=str(lake), lake_compact_interval_s=5.0, lake_retention_days=0)
    metrics = Metrics()
    stage = LakeStage(StageEnv(settings, metrics))
    stage._gates = {topic: stage._gates[topic]}  # only the topic with data (subscribing to 18 empty ones adds nothing)
    runner = StageRunner(settings, stage, metrics, EngineConfig())
    started, cpu0 = time.perf_counter(), time.process_time()
    runner.start()
    try:
        while metrics.value("loopwise_lake_records_total", topic=topic) < len(events):
            if runner.error is not None:
                raise RuntimeError(f"lake runner failed: {runner.error}")
            time.sleep(0.01)
        return time.perf_counter() - started, (time.process_time() - cpu0) * 1e6 / len(events)
    finally:
        runner.stop()


def read_ceiling(bootstrap: str, events: list[tuple[bytes, bytes]]) -> float:
    """Seconds for a raw consumer to read the same records from a fresh topic (no decoding)."""
    topic = unique("bread")
    create_topics(bootstrap, [topic], PARTITIONS)
    produce_all(bootstrap, [(topic, k, v) for k, v in events])
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "enable.auto.commit": False,
                         "fetch.queue.backoff.ms": 0, "fetch.wait.max.ms": 10})
    started = time.perf_counter()
    consumer.assign(all_partitions(consumer, topic, time.monotonic() + 15))
    got = 0
    while got < len(events):
        got += sum(1 for m in consumer.consume(2000, 0.1) if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def write_ceiling(events: list[tuple[bytes, bytes]], lake: Path, batch: int = 2000) -> float:
    """Seconds for the writer alone: decoded rows, 500-row files (a 2,000-message batch over 4 partitions)."""
    rows = []
    for offset, (_key, value) in enumerate(events):
        row = orjson.loads(value)
        row.update(_partition=0, _offset=offset, _key=None, _kafka_ts_ms=None)
        rows.append(row)
    writer = LakeWriter(str(lake))
    started = time.perf_counter()
    per_file = batch // PARTITIONS
    for i in range(0, len(rows), per_file):
        chunk = rows[i:i + per_file]
        writer.write(RequestEvent, "ceiling", 0, *hour_of(chunk[0]["ts_ms"]), chunk)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    events = _requests(args.records)
    lake_s, read_s, write_s, cpu_us = [], [], [], []
    with EmbeddedBroker() as broker:
        for _ in range(args.repeats):
            root = Path(tempfile.mkdtemp(prefix="bench-lake-"))
            try:
                seconds, cpu = lake_run(broker.bootstrap_servers, events, root / "lake")
                lake_s.append(seconds)
                cpu_us.append(cpu)
                read_s.append(read_ceiling(broker.bootstrap_servers, events))
                write_s.append(write_ceiling(events, root / "ceiling"))
            finally:
                shutil.rmtree(root, ignore_errors=True)
    n = len(events)
    lake_rate = n / statistics.median(lake_s)
    print(f"lake stage, one worker (exactly-once)   {lake_rate:>10,.0f} records/s   runs: "
          + ", ".join(f"{n / s:,.0f}" for s in lake_s))
    print(f"  CPU of the lake worker (decode, validate, Parquet, commits)  {statistics.median(cpu_us):.1f} µs/record"
          f"  → {1e6 / statistics.median(cpu_us):,.0f} records/s per core")
    print(f"ceiling: raw consumer, no decoding    {n / statistics.median(read_s):>10,.0f} records/s")
    print(f"ceiling: Parquet writer alone          {n / statistics.median(write_s):>10,.0f} records/s")
    print(f"{n:,} requests of ~{sum(len(v) for _, v in events) // n} B JSON, {PARTITIONS} partitions, "
          f"median of {args.repeats}")


if __name__ == "__main__":
    main()
