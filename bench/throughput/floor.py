"""The latency floor of one hop on this broker: a bare confluent-kafka forwarder, no loopwise code.

A child process reads ``in`` (``poll``, then whatever else has arrived) and
forwards each batch to ``out`` with one changelog record per message, either
in one transaction per batch with its offsets (``eos``, as a stateful stage
commits) or flushed and then committed (``alo``, as the route stage answers).
The load generator and the reader are those of ``bench.throughput.latency``, with
the same client settings, so the gap between this floor and loopwise's latency
is loopwise's own.

Child: ``python -m bench.throughput.floor BOOTSTRAP IN OUT CHANGELOG eos|alo FETCH_WAIT_MS``.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.throughput.data import SimRecord
from bench.throughput.harness import BenchError, Child, all_partitions, create_topics, progress, unique, watcher_config
from bench.throughput.latency import WARMUP_RECORDS, Latency, paced_latency

PARTITIONS = 4


def run_floor(bootstrap: str, records: Sequence[SimRecord], rates: Sequence[float], duration_s: float, mode: str,
              fetch_wait_ms: int, log_dir: Path) -> dict[float, Latency]:
    """Latency through the bare forwarder at each rate: fresh topics and forwarder per rate."""
    out: dict[float, Latency] = {}
    for rate in rates:
        name = unique(f"floor-{mode}-{int(rate)}")
        in_topic, out_topic, changelog = f"{name}.in", f"{name}.out", f"{name}.changelog"
        create_topics(bootstrap, [in_topic, out_topic, changelog], PARTITIONS)
        child = Child(["-m", "bench.throughput.floor", bootstrap, in_topic, out_topic, changelog, mode,
                       str(fetch_wait_ms)], log_dir / f"{name}.log")
        consumer = Consumer(watcher_config(bootstrap))
        try:
            consumer.assign(all_partitions(consumer, out_topic, time.monotonic() + 15))
            # The same records and offered load as the worker's latency run; requests are the ones timed.
            paced = records[WARMUP_RECORDS:WARMUP_RECORDS + int(rate * duration_s)]
            if len(paced) < int(rate * duration_s):
                raise BenchError(f"floor at {rate:g}/s needs {int(rate * duration_s)} records, got {len(paced)}")
            _wait_forwarding(bootstrap, in_topic, consumer, child)
            out[rate] = paced_latency(bootstrap, lambda _logical: in_topic, paced, rate, consumer, child,
                                      tracked="RequestEvent")
        finally:
            consumer.close()
            child.stop()
        found = out[rate]
        progress(f"  floor ({mode}) at {rate:g}/s: p50 {found.p50_ms:.1f} ms, p99 {found.p99_ms:.1f} ms")
    return out


def _wait_forwarding(bootstrap: str, in_topic: str, consumer: Consumer, child: Child, timeout_s: float = 30.0) -> None:
    """Send one probe until it comes out (the forwarder is up), then drain."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(in_topic, b"{}", b"probe")
    producer.flush(10)
    deadline = time.monotonic() + timeout_s
    while not any(m.error() is None for m in consumer.consume(100, 0.1)):
        if child.why_stopped() or time.monotonic() > deadline:
            raise BenchError(f"the floor forwarder did not forward: {child.why_stopped() or child.log_tail()}")


def forward(bootstrap: str, in_topic: str, out_topic: str, changelog: str, mode: str, fetch_wait_ms: int) -> None:
    """The child: forward until SIGTERM, one transaction (or flush + commit) per batch."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("floor"), "enable.auto.commit": False,
                         "isolation.level": "read_committed", "fetch.wait.max.ms": fetch_wait_ms,
                         "fetch.queue.backoff.ms": 0})
    consumer.assign(all_partitions(consumer, in_topic, time.monotonic() + 15))
    conf: dict[str, object] = {"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True}
    if mode == "eos":
        conf["transactional.id"] = unique("floor")
    producer = Producer(conf)
    if mode == "eos":
        producer.init_transactions(30)
    while not stopping:
        first = consumer.poll(0.05)
        if first is None:
            continue
        batch = [m for m in [first, *consumer.consume(1999, 0)] if m.error() is None]
        offsets: dict[int, int] = {}
        if mode == "eos":
            producer.begin_transaction()
        for m in batch:
            partition, offset = m.partition() or 0, m.offset() or 0
            offsets[partition] = offset + 1
            producer.produce(out_topic, m.value(), m.key())
            producer.produce(changelog, b"state", m.key(), partition=partition)
        positions = [TopicPartition(in_topic, p, o) for p, o in offsets.items()]
        if mode == "eos":
            producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
        else:
            producer.flush(30)
            consumer.commit(offsets=positions, asynchronous=False)
    consumer.close()


if __name__ == "__main__":
    forward(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
