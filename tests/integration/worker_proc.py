"""A loopwise worker as a child process for integration tests: start, scrape its metrics, stop, read topics.

The worker runs exactly as in production (``python -m streams.cli worker``),
so these tests cover the CLI entry point, Faust's signal handling and the
commit on shutdown, none of which an in-process app would exercise.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from infra.broker import free_port
from infra.settings import Settings
from schemas.records import DeadLetter
from schemas.serde import json_codec
from streams.runner import worker_env
from tests.conftest import wait_until
from tests.integration.conftest import consumer_config

_REPO = Path(__file__).resolve().parents[2]
#: A dead letter may carry 512 KiB of original bytes, base64-encoded: decode with room for that.
DLQ_CODEC = json_codec(DeadLetter, max_event_bytes=1 << 20)

Labels = frozenset[tuple[str, str]]


@dataclass
class WorkerProcess:
    """A running ``loopwise worker`` child: its process, log file and metrics port."""

    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int

    @property
    def is_running(self) -> bool:
        return self.process.poll() is None

    def samples(self) -> dict[tuple[str, Labels], float]:
        """Every sample of ``/metrics`` by (name, labels); empty while the server is not up yet."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return {}
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value, 0.0 when absent (a counter never incremented has no labelled child)."""
        return self.samples().get((name, frozenset(labels.items())), 0.0)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait for the exit code; ``AssertionError`` (after killing it) if it hangs."""
        if self.is_running:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker ignored SIGTERM for {timeout_s} s; log tail:\n{self.log_tail()}") from None


def start_worker(settings: Settings, log_path: Path, extra_env: Mapping[str, str] | None = None) -> WorkerProcess:
    """Start ``loopwise worker`` on ``settings``' cluster, topics and app id, logging to ``log_path``."""
    port = free_port()
    env = worker_env(settings)
    env.update({"LOOPWISE_SESSION_TIMEOUT_S": "6", "LOOPWISE_METRICS_PORT": str(port), "LOOPWISE_LOG_LEVEL": "info"})
    env.update(extra_env or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], cwd=_REPO, env=env,
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return WorkerProcess(process, log_path, port)


@contextmanager
def running_worker(settings: Settings, log_path: Path,
                   extra_env: Mapping[str, str] | None = None) -> Iterator[WorkerProcess]:
    """A worker for the block's duration; on failure its log tail is printed (pytest shows it)."""
    worker = start_worker(settings, log_path, extra_env)
    try:
        yield worker
    except BaseException:
        print(f"--- worker log tail ({log_path}) ---\n{worker.log_tail()}")
        raise
    finally:
        if worker.is_running:
            worker.terminate()


def wait_for_metric(worker: WorkerProcess, name: str, expected: float, timeout_s: float = 60.0,
                    **labels: str) -> None:
    """Wait until a sample reaches ``expected``; fail at once if it overshoots or the worker dies."""
    def reached() -> bool:
        assert worker.is_running, f"worker exited with {worker.process.returncode}:\n{worker.log_tail()}"
        value = worker.metric(name, **labels)
        assert value <= expected, f"{name}{labels} = {value}, more than the {expected} expected"
        return value == expected

    wait_until(reached, timeout_s, interval_s=0.2,
               message=lambda: f"{name}{labels} = {worker.metric(name, **labels)}, expected {expected}")


def read_topic(settings: Settings, topic: str, at_least: int = 0, timeout_s: float = 30.0,
               quiet_s: float = 1.0) -> list[Message]:
    """Every message of ``topic`` (all partitions): at least ``at_least``, then until ``quiet_s`` pass without one.

    The embedded broker reports a partition's high watermark as its last
    batch's base offset + 1 (5 records at offsets 0–4 in one batch: 1), so
    "read up to the end" cannot be asked of it; a quiet period after the
    expected count is what catches an extra (duplicate) message.
    """
    deadline = time.monotonic() + timeout_s
    consumer = Consumer(consumer_config(settings))
    got: list[Message] = []
    try:
        consumer.assign(partitions_of(consumer, topic, deadline))
        last_seen = time.monotonic()
        while len(got) < at_least or time.monotonic() - last_seen < quiet_s:
            assert time.monotonic() < deadline, f"{topic}: {len(got)} of at least {at_least} messages in {timeout_s} s"
            batch = consumer.consume(num_messages=1000, timeout=0.1)
            for message in batch:
                assert message.error() is None, f"{topic}: {message.error()}"
                got.append(message)
            if batch:
                last_seen = time.monotonic()
    finally:
        consumer.close()
    return got


def decoded(messages: list[Message]) -> list[dict[str, Any]]:
    """The JSON values of ``messages``."""
    return [orjson.loads(message.value() or b"null") for message in messages]


def dead_letters(settings: Settings, at_least: int = 0) -> list[DeadLetter]:
    """The DLQ's records, decoded and validated as ``DeadLetter``s."""
    messages = read_topic(settings, settings.topic("dlq"), at_least)
    return [DLQ_CODEC.decode(message.value()) for message in messages]


def partitions_of(consumer: Consumer, topic: str, deadline: float) -> list[TopicPartition]:
    """``topic``'s partitions, each from the beginning, once its metadata shows them."""
    def known() -> list[TopicPartition]:
        try:
            found = consumer.list_topics(topic, timeout=1.0).topics[topic].partitions
        except KafkaException:
            return []
        return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(found)]

    return wait_until(known, max(0.0, deadline - time.monotonic()), message=f"topic {topic} has no partitions")


def produce_tracked(settings: Settings, items: Sequence[tuple[str, bytes | None, bytes]],
                    timeout_s: float = 20.0) -> list[tuple[int | None, int | None]]:
    """Produce ``(topic, key, value)`` items in order; return each one's (partition, offset)."""
    producer = Producer({**settings.kafka_config(), "linger.ms": 1, "message.max.bytes": 2_000_000})
    placed: dict[int, tuple[int | None, int | None]] = {}
    errors: list[str] = []

    def on_delivery(index: int) -> Callable[[Any, Message], None]:
        def report(err: Any, message: Message) -> None:
            if err is not None:
                errors.append(f"item {index}: {err}")
            else:
                placed[index] = (message.partition(), message.offset())
        return report

    for index, (topic, key, value) in enumerate(items):
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery(index))
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    assert not errors and remaining == 0, f"produce: {errors[:3]}, {remaining} not flushed"
    return [placed[index] for index in range(len(items))]
