"""Kafka headers live: a request's traceparent reaches its outcome, a dead letter says why in headers,
and ``dlq replay`` re-publishes it, once its cause is fixed, with its original key, bytes and headers."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Producer

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import FeedbackEvent, RequestEvent, ScoreSpec, WorkflowDefinition
from schemas.serde import json_codec
from streams.cli_dlq import replay
from tests.factories import make_feedback, make_request, make_workflow
from tests.integration.worker_proc import read_topic, running_worker, wait_for_metric

T0 = 1_700_000_000_000
TRACE = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def send(settings: Settings, logical: str, key: str, record: object, headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = Producer(settings.kafka_config())
    producer.produce(settings.topic(logical), key=key.encode(), value=json_codec(type(record)).encode(record),
                     headers=headers)
    assert producer.flush(10) == 0


def test_trace_context_reaches_the_outcome_and_a_fixed_dead_letter_replays(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    send(settings, "workflows", "support-bot", make_workflow())
    with running_worker(settings, tmp_path / "worker.log") as worker:
        send(settings, "requests", "r1", make_request("r1", ts_ms=T0), [TRACE])
        score = make_feedback("r1", ts_ms=T0 + 5, kind="score", value=0.9, name="judge", workflow="support-bot",
                              feedback_id="f-judge")
        send(settings, "feedback", "r1", score, [TRACE, ("x-origin", b"judge-svc")])
        wait_for_metric(worker, "loopwise_dlq_total", 1, topic=settings.topic("feedback"), reason="undeclared_score")
        (outcome,) = [m for m in read_topic(settings, settings.topic("outcomes"), 1)]
        assert dict(outcome.headers() or []) == {"traceparent": TRACE[1]}
        (dead,) = read_topic(settings, settings.topic("dlq"), 1)
        headers = dict(dead.headers() or [])
        assert headers["loopwise.error.reason"] == b"undeclared_score"
        assert headers["loopwise.error.topic"] == settings.topic("feedback").encode()
        assert headers["x-origin"] == b"judge-svc" and headers["traceparent"] == TRACE[1]

        # The cause is fixed (the workflow declares the score), then the dead letter is replayed.
        send(settings, "workflows", "support-bot", make_workflow(version="v2", ts_ms=T0 + 1, scores=(ScoreSpec("judge"),)))
        assert replay(settings, reasons=frozenset({"other"})).replayed == {}
        report = replay(settings, reasons=frozenset({"undeclared_score"}))
        assert report.replayed == {settings.topic("feedback"): 1}
        wait_for_metric(worker, "loopwise_events_in_total", 1, topic=settings.topic("feedback"))
        replayed = [m for m in read_topic(settings, settings.topic("feedback"), 2) if m.offset() > 0 or m.partition()]
        (again,) = [m for m in replayed if dict(m.headers() or []).get("loopwise.replayed_from")]
        assert again.key() == b"r1" and json_codec(FeedbackEvent).decode(again.value()) == score
        assert dict(again.headers() or [])["traceparent"] == TRACE[1]
        assert worker.metric("loopwise_dlq_total", topic=settings.topic("feedback"), reason="undeclared_score") == 1
