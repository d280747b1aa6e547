"""The ceiling: a hand-written confluent-kafka loop — consume(1000) → orjson → dict count → produce.

Run by the harness as a child (``python -m bench.throughput.raw IN OUT BOOTSTRAP``); it
forwards until SIGTERM. ``run_raw`` starts it and measures it.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer

from bench.throughput.harness import Child, Result, all_partitions, first_stopped, unique, watch_output


def forward(bootstrap: str, in_topic: str, out_topic: str) -> None:
    """Count per key and forward every event of ``in_topic`` to ``out_topic`` until SIGTERM."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("bench-raw"),
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10, "fetch.queue.backoff.ms": 0})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 1_000_000})
    # Assigned, not subscribed: a ceiling has no group protocol to wait for.
    consumer.assign(all_partitions(consumer, in_topic, time.monotonic() + 15))
    counts: dict[str, int] = {}
    while not stopping:
        for message in consumer.consume(1000, timeout=0.1):
            if message.error() is not None:
                continue
            key = orjson.loads(message.value() or b"{}")["key"]
            counts[key] = counts.get(key, 0) + 1
            producer.produce(out_topic, orjson.dumps({"key": key, "count": counts[key]}), message.key())
        producer.poll(0)
    producer.flush(5)
    consumer.close()


def run_raw(bootstrap: str, in_topic: str, out_topic: str, n_events: int, log_dir: Path,
            timeout_s: float = 60.0) -> Result:
    """Forward the ``n_events`` already in ``in_topic``; the rate seen on ``out_topic``."""
    child = Child(["-m", "bench.throughput.raw", bootstrap, in_topic, out_topic], log_dir / f"{in_topic}.log")
    try:
        return watch_output(bootstrap, out_topic, n_events, timeout_s, first_stopped([child]), "raw loop")
    finally:
        child.stop()


if __name__ == "__main__":
    forward(*sys.argv[1:4])
