"""Insights live on the broker: logs + requests + feedback in → error-pattern and satisfaction insights out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from infra.admin import apply_topics
from infra.settings import Settings
from infra.simulator.insight_logs import error_logs
from infra.simulator.insight_truth import satisfaction_outcomes
from schemas.records import FeedbackEvent, FeedbackKind, Insight, Outcome, RequestContext, RequestEvent, Status
from schemas.serde import json_codec
from tests.factories import make_workflow
from tests.integration.conftest import consumer_config, produce_messages
from tests.integration.worker_proc import partitions_of, running_worker, wait_for_metric

T0 = 1_700_000_000_000


def _request_and_feedback(o: Outcome) -> tuple[RequestEvent, list[FeedbackEvent]]:
    request = RequestEvent(o.request_id, o.request_ts_ms, o.workflow, o.workflow_version, o.route,
                           RequestContext(o.tenant or "", o.task or ""), o.latency_ms, o.cost_usd, 100, 50, Status.OK,
                           variant=o.variant)
    feedback = [FeedbackEvent(f"{o.request_id}-{kind}", o.request_id, o.request_ts_ms + 5_000, kind,
                              (1.0 if value else -1.0) if kind is FeedbackKind.THUMBS else value, o.workflow)
                for kind, value in ((FeedbackKind.THUMBS, o.thumbs), (FeedbackKind.RATING, o.rating),
                                    (FeedbackKind.TASK_COMPLETED, o.task_completed), (FeedbackKind.DWELL, o.dwell_s))
                if value is not None]
    return request, feedback


def _produce(settings: Settings, logical: str, records: list[Any], key_field: str) -> None:
    codec = json_codec(type(records[0]))
    values = [(getattr(r, key_field).encode(), codec.encode(r)) for r in records]
    keys = dict((v, k) for k, v in values)
    assert produce_messages(settings, settings.topic(logical), [v for _, v in values], key=lambda v: keys[v]) == len(values)


def _insights(settings: Settings, want: set[str], timeout_s: float) -> list[Insight]:
    codec = json_codec(Insight)
    consumer = Consumer(consumer_config(settings))
    found: list[Insight] = []
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign(partitions_of(consumer, settings.topic("insights"), deadline))
        while not want <= {i.kind for i in found}:
            assert time.monotonic() < deadline, f"insight kinds {sorted({i.kind for i in found})}, wanted {want}"
            for message in consumer.consume(num_messages=500, timeout=0.2):
                if message.error() is None:
                    found.append(codec.decode(message.value()))
    finally:
        consumer.close()
    return found


def test_logs_requests_and_feedback_become_pattern_and_root_cause_insights(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    outcomes, truth = satisfaction_outcomes(3, "route", start_ms=T0, duration_ms=4_800_000, drop_at_ms=3_900_000,
                                            rate_per_s=1.0, drop=0.5)
    assert truth is not None
    pairs = [_request_and_feedback(o) for o in outcomes]
    logs = [line.event for line in error_logs(4, 400, start_ms=T0, rate_per_s=400 / 4_800)]
    stages = {"LOOPWISE_STAGES": "workflows,correlate,patterns,satisfaction"}
    with running_worker(settings, tmp_path / "worker.log", stages) as worker:
        _produce(settings, "workflows", [make_workflow("support-bot", ts_ms=T0, feedback_window_s=60.0)], "workflow")
        wait_for_metric(worker, "loopwise_events_in_total", 1, topic=settings.topic("workflows"))
        _produce(settings, "requests", [r for r, _ in pairs], "request_id")
        _produce(settings, "feedback", [f for _, fs in pairs for f in fs], "request_id")
        _produce(settings, "logs", logs, "service")
        insights = _insights(settings, {"error_pattern", "error_summary", "root_cause"}, timeout_s=240)
        assert worker.metric("loopwise_satisfaction", workflow="support-bot", kpi="thumbs_up_rate") > 0

    patterns = [i for i in insights if i.kind == "error_pattern"]
    assert all(i.recommendation and i.evidence["template"] and i.evidence["class"] for i in patterns)
    assert {i.evidence["class"] for i in patterns} >= {"timeout", "upstream_5xx"}
    (cause, *_) = [i for i in insights if i.kind == "root_cause"]
    assert cause.subject == "satisfaction:support-bot"
    assert cause.evidence["cause_1"].startswith(f"route={truth.value} "), cause.evidence
    assert cause.recommendation and truth.value in cause.recommendation
