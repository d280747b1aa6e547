"""SIGTERM mid-stream, then a new worker with the same app id: nothing lost, nothing committed reprocessed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import RequestEvent
from schemas.serde import json_codec
from tests.conftest import wait_until
from tests.factories import make_request
from tests.integration.worker_proc import (
    WorkerProcess, dead_letters, decoded, produce_tracked, read_topic, running_worker,
)

T0 = 1_700_000_000_000
TOTAL = 400
CHUNK = 20
HOLD_AT = 100


class SteadyProducer(threading.Thread):
    """Produces ``TOTAL`` requests in acknowledged chunks; holds after ``HOLD_AT`` until ``resume`` is set."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.produced = settings, 0
        self.error: BaseException | None = None
        self.resume = threading.Event()  # set by the test as it stops the first worker: the stream goes on
        self.done = threading.Event()

    def run(self) -> None:
        codec = json_codec(RequestEvent)
        topic = self.settings.topic("requests")
        try:
            for start in range(0, TOTAL, CHUNK):
                items = [(topic, f"r-{i:04d}".encode(), codec.encode(make_request(f"r-{i:04d}", ts_ms=T0 + i)))
                         for i in range(start, start + CHUNK)]
                produce_tracked(self.settings, items)
                self.produced += CHUNK
                if self.produced == HOLD_AT:
                    self.resume.wait(60)
                threading.Event().wait(0.05)  # paced: a stream that goes on while the worker stops
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.done.set()


def processed(worker: WorkerProcess, settings: Settings) -> float:
    return worker.metric("loopwise_events_in_total", topic=settings.topic("requests"))


def test_sigterm_mid_stream_then_restart_loses_nothing_and_reprocesses_nothing(
    settings: Settings, tmp_path: Path,
) -> None:
    apply_topics(settings)
    producer = SteadyProducer(settings)
    with running_worker(settings, tmp_path / "worker-1.log") as first:
        wait_until(lambda: first.metrics_port and first.samples(), 30, interval_s=0.1, message="no /metrics")
        producer.start()
        wait_until(lambda: processed(first, settings) >= HOLD_AT, 60, interval_s=0.1,
                   message=lambda: f"first worker processed {processed(first, settings)}:\n{first.log_tail()}")
        producer.resume.set()
        wait_until(lambda: producer.produced >= HOLD_AT + 2 * CHUNK, 30, interval_s=0.01)
        processed_before_stop, produced_before_stop = processed(first, settings), producer.produced
        stopping = time.monotonic()
        assert first.terminate(timeout_s=30) == 0, first.log_tail()
        stop_s = time.monotonic() - stopping
    assert HOLD_AT <= processed_before_stop <= produced_before_stop < TOTAL  # stopped mid-stream

    with running_worker(settings, tmp_path / "worker-2.log") as second:
        assert producer.done.wait(60) and producer.error is None, producer.error
        outcomes = decoded(read_topic(settings, settings.topic("outcomes"), at_least=TOTAL, timeout_s=60))
        assert second.is_running
        # What the first worker processed before SIGTERM was committed: the second never sees it again.
        assert 0 < processed(second, settings) <= TOTAL - processed_before_stop

    per_request = Counter(o["request_id"] for o in outcomes if not o["is_final"])
    repeated = sorted(rid for rid, n in per_request.items() if n > 1)
    assert sorted(per_request) == [f"r-{i:04d}" for i in range(TOTAL)]
    assert repeated == [], (f"{len(repeated)} reprocessed after restart (first worker: {processed_before_stop:.0f} "
                            f"processed at SIGTERM, exited in {stop_s:.1f} s): {repeated[:10]}")
    assert len(outcomes) == TOTAL
    assert [letter.reason for letter in dead_letters(settings)] == []
