"""The otlp stage live: spans from the OpenTelemetry SDK, written as the Collector's Kafka exporter writes them
(otlp_proto and otlp_json), become request events on lw.requests and then outcomes; garbage is dead-lettered."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.proto")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from infra.admin import apply_topics  # noqa: E402
from infra.settings import Settings  # noqa: E402
from schemas.records import RequestEvent  # noqa: E402
from schemas.serde import json_codec  # noqa: E402
from tests.integration.conftest import produce_messages  # noqa: E402
from tests.integration.worker_proc import dead_letters, read_topic, running_worker, wait_for_metric  # noqa: E402
from tests.unit.test_otlp import json_bytes, proto_bytes, spans  # noqa: E402


def test_collector_kafka_export_becomes_requests_and_outcomes(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    topic = f"{settings.topic_prefix}otlp_spans"
    admin = AdminClient(settings.kafka_config())
    admin.create_topics([NewTopic(topic, 2, 1, config={"retention.ms": "86400000"})])[topic].result(15)
    env = {"LOOPWISE_STAGES": "otlp,correlate", "LOOPWISE_OTLP_TOPIC": topic}
    with running_worker(settings, tmp_path / "worker.log", env) as worker:
        produce_messages(settings, topic, [proto_bytes(spans()), json_bytes(spans()), b"\x00\x01garbage"])
        wait_for_metric(worker, "loopwise_events_in_total", 4, topic=settings.topic("requests"))
        requests = [json_codec(RequestEvent).decode(m.value()) for m in read_topic(settings, settings.topic("requests"), 4)]
        assert sorted((r.route, r.status.value) for r in requests) == [
            ("gpt-4o", "timeout"), ("gpt-4o", "timeout"), ("gpt-4o-mini", "ok"), ("gpt-4o-mini", "ok")]
        assert len(read_topic(settings, settings.topic("outcomes"), 4)) >= 4
        assert worker.metric("loopwise_otlp_spans_total", outcome="skipped") == 4  # two agent-run + two db.query
        (letter,) = dead_letters(settings, 1)
        assert (letter.source_topic, letter.reason) == (topic, "bad_otlp")
