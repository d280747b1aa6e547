"""A batch whose state and outputs committed without its group offsets (what a broker that resolves a dead
worker's transaction by committing it can leave) is skipped on restart: never emitted twice, never a duplicate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import RequestEvent
from schemas.serde import json_codec
from tests.factories import make_request
from tests.integration.conftest import consumer_config
from tests.integration.worker_proc import (
    dead_letters, decoded, produce_tracked, read_topic, running_worker, wait_for_metric,
)

T0 = 1_700_000_000_000
FIRST, SECOND = 120, 20


def _requests(settings: Settings, start: int, n: int) -> list[tuple[str, bytes, bytes]]:
    codec = json_codec(RequestEvent)
    return [(settings.topic("requests"), f"r-{i:04d}".encode(), codec.encode(make_request(f"r-{i:04d}", ts_ms=T0 + i)))
            for i in range(start, start + n)]


def _rewind_group(settings: Settings, group: str, topic: str) -> None:
    """Commit offset 0 for every partition of ``topic`` in ``group``: the batches stay in the state
    and the outputs, but the group will hand them out again."""
    consumer = Consumer({**consumer_config(settings, group)})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in partitions], asynchronous=False)
    finally:
        consumer.close()


def test_input_already_in_the_restored_state_is_skipped_not_replayed(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    topic = settings.topic("requests")
    with running_worker(settings, tmp_path / "first.log") as worker:
        produce_tracked(settings, _requests(settings, 0, FIRST))
        wait_for_metric(worker, "loopwise_events_in_total", FIRST, topic=topic)
        read_topic(settings, settings.topic("outcomes"), at_least=FIRST, quiet_s=0.5)
    _rewind_group(settings, f"{settings.app_id}.correlate", topic)

    with running_worker(settings, tmp_path / "second.log") as worker:
        produce_tracked(settings, _requests(settings, FIRST, SECOND))
        # Only the new requests are processed: the rewound ones are in the restored state already.
        wait_for_metric(worker, "loopwise_events_in_total", SECOND, topic=topic)
        outcomes = decoded(read_topic(settings, settings.topic("outcomes"), at_least=FIRST + SECOND, quiet_s=1.0))
        assert worker.metric("loopwise_events_in_total", topic=topic) == SECOND
    provisional = Counter(o["request_id"] for o in outcomes if not o["is_final"])
    assert len(provisional) == FIRST + SECOND and set(provisional.values()) == {1}
    assert [letter for letter in dead_letters(settings) if letter.reason == "duplicate"] == []
