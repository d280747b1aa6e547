"""What every throughput measurement shares: fresh topics, bulk produce, child processes, the output watcher.

Rates are measured from outside the pipeline, the same way for every
implementation: a consumer reads the output topic while the pipeline runs and
the rate is the messages that arrived after the first batch over the time
between the first and the last arrival. Start-up (imports, group joins) is
therefore never counted, for any pipeline.

Errors::

    BenchError             a pipeline died, timed out, or the broker refused something
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[2]
#: Plain delete topics with explicit configs: the embedded broker reports only configs given at creation.
TOPIC_CONFIGS = {"cleanup.policy": "delete", "retention.ms": "3600000"}


class BenchError(RuntimeError):
    """A pipeline died, timed out, or the broker refused something."""


@dataclass(frozen=True, slots=True)
class Result:
    """One measured run: events per second over ``events`` events in ``seconds``."""

    eps: float
    events: int
    seconds: float


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline`` (monotonic clock), never negative."""
    return max(0.0, deadline - time.monotonic())


def progress(message: str) -> None:
    """One progress line on stderr (stdout is the report's)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def unique(prefix: str) -> str:
    """A fresh name for topics and groups of one run."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topics(bootstrap: str, names: Sequence[str], partitions: int, timeout_s: float = 15.0) -> None:
    """Create ``names`` with ``partitions`` each and explicit configs; wait until they are in the metadata."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, partitions, 1, config=TOPIC_CONFIGS) for n in names],
                                  request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise BenchError(f"cannot create topic {name}: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    while set(names) - set(admin.list_topics(timeout=min(1.0, remaining(deadline) + 0.01)).topics):
        if not remaining(deadline):
            raise BenchError(f"topics {list(names)} not in the metadata after {timeout_s} s")
        time.sleep(0.05)


def produce_all(bootstrap: str, items: Sequence[tuple[str, bytes | None, bytes]], timeout_s: float = 60.0) -> None:
    """Produce ``(topic, key, value)`` items as fast as the client goes; fail unless all are delivered."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 1_000_000})
    failures: list[str] = []

    def report(err: object, _message: object) -> None:
        if err is not None:
            failures.append(str(err))

    deadline = time.monotonic() + timeout_s
    for topic, key, value in items:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=report)
                break
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.01)
        if not remaining(deadline):
            raise BenchError(f"producing {len(items)} events took longer than {timeout_s} s")
    left = producer.flush(remaining(deadline))
    if failures or left:
        raise BenchError(f"produce: {len(failures)} failed ({failures[:2]}), {left} not delivered in {timeout_s} s")


def watcher_config(bootstrap: str) -> dict[str, object]:
    """A group-less reader from the beginning, with quick fetches (the embedded broker never wakes a fetch)."""
    return {"bootstrap.servers": bootstrap, "group.id": unique("bench-watch"), "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5, "fetch.queue.backoff.ms": 0}


def all_partitions(consumer: Consumer, topic: str, deadline: float) -> list[TopicPartition]:
    """``topic``'s partitions from the beginning, once the metadata shows them."""
    while True:
        try:
            found = consumer.list_topics(topic, timeout=1.0).topics[topic].partitions
            if found:
                return [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(found)]
        except KafkaException:
            pass
        if not remaining(deadline):
            raise BenchError(f"topic {topic} shows no partitions")
        time.sleep(0.05)


def watch_output(bootstrap: str, topic: str, expected: int, timeout_s: float,
                 is_alive: Callable[[], str | None], what: str) -> Result:
    """Read ``topic`` until ``expected`` messages arrived; the rate between the first and the last arrival.

    Args:
        is_alive: returns None while the pipeline runs, else why it stopped (then this raises).
        what: the pipeline's name, for messages.

    Raises:
        BenchError: the pipeline stopped, or ``expected`` messages did not arrive within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    consumer = Consumer(watcher_config(bootstrap))
    try:
        consumer.assign(all_partitions(consumer, topic, deadline))
        count, first_batch, first_at, last_at = 0, 0, 0.0, 0.0
        next_check, next_note = time.monotonic() + 1, time.monotonic() + 5
        while count < expected:
            batch = consumer.consume(num_messages=5000, timeout=min(0.05, remaining(deadline)))
            now = time.monotonic()
            if batch:
                count += sum(1 for m in batch if m.error() is None)
                if not first_at:
                    first_at, first_batch = now, count
                last_at = now
            if now >= next_note:
                progress(f"  {what}: {count:,}/{expected:,} out")
                next_note = now + 5
            if now >= next_check:
                next_check = now + 1
                stopped = is_alive()
                if stopped:
                    raise BenchError(f"{what} stopped after {count:,} of {expected:,} outputs: {stopped}")
            if not remaining(deadline):
                raise BenchError(f"{what}: only {count:,} of {expected:,} outputs within {timeout_s:.0f} s "
                                 f"(stuck pipeline?); alive: {is_alive() or 'yes'}")
    finally:
        consumer.close()
    span = last_at - first_at
    measured = count - first_batch
    if span <= 0 or measured <= 0:
        raise BenchError(f"{what}: all {count} outputs came in one batch; use more events to measure a rate")
    return Result(eps=measured / span, events=count, seconds=span)


class Child:
    """A child process in its own session, logging to a file; ``stop`` ends its whole process group."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 python: str | None = None) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen([python or sys.executable, *argv], cwd=REPO, env=env or dict(os.environ),
                                        stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def why_stopped(self) -> str | None:
        """None while it runs; else its exit code and log tail."""
        code = self.process.poll()
        return None if code is None else f"exit code {code}; log {self.log_path}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 25) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it after ``timeout_s``; reap. Idempotent."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(5)
        else:
            self._signal(signal.SIGKILL)  # grandchildren a dead leader left behind
        self._log.close()

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def first_stopped(children: Sequence[Child]) -> Callable[[], str | None]:
    """An ``is_alive`` for ``watch_output``: why the first stopped child stopped, or None."""
    def check() -> str | None:
        return next((why for why in (c.why_stopped() for c in children) if why), None)

    return check


def on_fresh_topics(bootstrap: str, events: Sequence[tuple[bytes, bytes]], partitions: int, prefix: str,
                    pipeline: Callable[[str, str, str, int], Result]) -> Result:
    """Create fresh in/out topics, produce ``events`` to the input, run ``pipeline(bootstrap, in, out, n)``."""
    in_topic, out_topic = unique(f"{prefix}-in"), unique(f"{prefix}-out")
    create_topics(bootstrap, [in_topic, out_topic], partitions)
    produce_all(bootstrap, [(in_topic, key, value) for key, value in events])
    return pipeline(bootstrap, in_topic, out_topic, len(events))
