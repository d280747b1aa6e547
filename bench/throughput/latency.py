"""Latency through the full worker: from a request's produce to its provisional outcome being readable.

One thread paces a producer at the offered load (all simulator record kinds
count toward it) and reads ``outcomes`` in between, so both times come from
the same clock. A request's latency is from its ``produce`` call to the poll
that returns its outcome (matched by key = ``request_id``); the reader's
fetch wait (5 ms: the embedded broker never wakes a waiting fetch) is part of
it, as it would be for any consumer of loopwise's decisions, and so is the
producer's linger (librdkafka's default, 5 ms: on the embedded broker every
fetch scans a partition's record batches, so one-message batches would cost
every reader of the topic).

``run_route_latency`` does the same for route requests and their answers
(``route.requests`` → ``route.decisions``), after the same warm-up.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from confluent_kafka import Consumer, Producer

from bench.throughput.data import SimRecord
from bench.throughput.fullworker import FullWorker, apply, full_settings, produce_records
from bench.throughput.harness import BenchError, all_partitions, progress, remaining, watcher_config
from infra.settings import Settings

WARMUP_RECORDS = 300
DRAIN_S = 15.0
PRODUCER_LINGER_MS = 5


class Stoppable(Protocol):
    def why_stopped(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Latency:
    """Percentiles of one offered load, in milliseconds, and how many requests they cover."""

    offered_eps: float
    achieved_eps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int
    missing: int


def run_latency(bootstrap: str, records: Sequence[SimRecord], rates: Sequence[float], duration_s: float,
                name: str, log_dir: Path) -> dict[float, Latency]:
    """One fresh worker and topics per offered load; ``records`` must hold warm-up + max(rates) × duration."""
    out: dict[float, Latency] = {}
    for rate in rates:
        needed = WARMUP_RECORDS + int(rate * duration_s)
        if len(records) < needed:
            raise BenchError(f"latency at {rate:g}/s for {duration_s:g} s needs {needed} records, got {len(records)}")
        settings = full_settings(bootstrap, f"{name}-{int(rate)}")
        apply(settings)
        worker = FullWorker(settings, log_dir / f"{settings.app_id}.log")
        try:
            warm, paced = records[:WARMUP_RECORDS], records[WARMUP_RECORDS:needed]
            consumer = Consumer(watcher_config(bootstrap))
            try:
                consumer.assign(all_partitions(consumer, settings.topic("outcomes"), time.monotonic() + 15))
                _warm_up(settings, warm, consumer, worker)
                out[rate] = paced_latency(settings.bootstrap_servers or "", settings.topic, paced, rate, consumer,
                                          worker.child)
            finally:
                consumer.close()
        finally:
            worker.stop()
        found = out[rate]
        progress(f"  latency at {rate:g}/s: p50 {found.p50_ms:.1f} ms, p99 {found.p99_ms:.1f} ms "
                 f"({found.requests} requests, {found.missing} without an outcome)")
    return out


def _warm_up(settings: Settings, warm: Sequence[SimRecord], consumer: Consumer, worker: FullWorker,
             timeout_s: float = 90.0) -> None:
    """Produce the warm-up records; wait until the worker answers one of them (group joined, stages up)."""
    produce_records(settings, warm)
    deadline = time.monotonic() + timeout_s
    while not any(m.error() is None for m in consumer.consume(1000, timeout=0.1)):
        stopped = worker.child.why_stopped()
        if stopped or not remaining(deadline):
            raise BenchError(f"latency: the worker gave no outcome in {timeout_s:.0f} s: "
                             f"{stopped or worker.child.log_tail()}")
    while consumer.consume(5000, timeout=0.2):  # drain the rest of the warm-up outcomes
        pass


def run_route_latency(bootstrap: str, records: Sequence[SimRecord], rate: float, duration_s: float, name: str,
                      log_dir: Path) -> Latency:
    """Route requests at ``rate`` for ``duration_s`` through a fresh worker: produce → answer readable."""
    from bench.throughput.data import make_route_requests

    settings = full_settings(bootstrap, name)
    apply(settings)
    worker = FullWorker(settings, log_dir / f"{settings.app_id}.log")
    try:
        warm = records[:WARMUP_RECORDS]
        consumer = Consumer(watcher_config(bootstrap))
        try:
            consumer.assign(all_partitions(consumer, settings.topic("outcomes"), time.monotonic() + 15))
            _warm_up(settings, warm, consumer, worker)  # workflows known, some outcomes learned
            consumer.unassign()
            consumer.assign(all_partitions(consumer, settings.topic("route.decisions"), time.monotonic() + 15))
            requests = make_route_requests(records, int(rate * duration_s) + 50)
            _warm_up(settings, requests[:50], consumer, worker)  # the route stage's group joined
            found = paced_latency(bootstrap, settings.topic, requests[50:], rate, consumer, worker.child,
                                  tracked="RouteRequest")
        finally:
            consumer.close()
    finally:
        worker.stop()
    progress(f"  route latency at {rate:g}/s: p50 {found.p50_ms:.1f} ms, p99 {found.p99_ms:.1f} ms "
             f"({found.requests} requests, {found.missing} unanswered)")
    return found


def paced_latency(bootstrap: str, topic_of: Callable[[str], str], paced: Sequence[SimRecord], rate: float,
                  consumer: Consumer, process: Stoppable, tracked: str = "RequestEvent") -> Latency:
    """Produce ``paced`` at ``rate``; latency of each ``tracked`` record until its key shows up in ``consumer``."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": PRODUCER_LINGER_MS})
    sent: dict[bytes, float] = {}
    answered: dict[bytes, float] = {}
    topics = {r.logical: topic_of(r.logical) for r in paced}
    started = time.perf_counter()
    done, next_check = 0, time.monotonic() + 1
    while done < len(paced):
        due = min(len(paced), int((time.perf_counter() - started) * rate) + 1)
        for record in paced[done:due]:
            producer.produce(topics[record.logical], record.value, record.key)
            if record.kind == tracked:
                sent[record.key] = time.perf_counter()
        done = due
        producer.poll(0)
        _collect(consumer, sent, answered, timeout_s=0.001)
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 1
            if process.why_stopped():
                raise BenchError(f"latency: the pipeline stopped: {process.why_stopped()}")
    achieved = len(paced) / (time.perf_counter() - started)
    producer.flush(10)
    deadline = time.monotonic() + DRAIN_S
    last_count, quiet_until = -1, 0.0
    while len(answered) < len(sent) and remaining(deadline):
        _collect(consumer, sent, answered, timeout_s=0.05)
        if len(answered) != last_count:
            last_count, quiet_until = len(answered), time.monotonic() + 3.0
        elif time.monotonic() > quiet_until:  # 3 s without a new outcome: the rest are not coming
            break
    latencies = list(answered.values())
    if len(latencies) < 2:
        raise BenchError(f"latency at {rate:g}/s: no request got its outcome within {DRAIN_S:.0f} s")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Latency(rate, achieved, cuts[49] * 1000, cuts[94] * 1000, cuts[98] * 1000, len(latencies),
                   len(sent) - len(latencies))


def _collect(consumer: Consumer, sent: dict[bytes, float], answered: dict[bytes, float], timeout_s: float) -> None:
    """Latency of each request whose first (provisional) outcome is in the next batch."""
    batch = consumer.consume(1000, timeout=timeout_s)
    now = time.perf_counter()
    for message in batch:
        key = message.key() if message.error() is None else None
        if key in sent and key not in answered:
            answered[key] = now - sent[key]
