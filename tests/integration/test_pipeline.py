"""Valid events of every input topic flow through a real worker: counted, correlated, none dead-lettered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.admin import apply_topics
from infra.settings import Settings
from schemas.records import JobSubmission, RouteRequest
from schemas.serde import json_codec
from tests.factories import make_context, make_feedback, make_log, make_metric, make_request, make_workflow
from tests.integration.conftest import produce_messages
from tests.integration.worker_proc import decoded, read_topic, running_worker, wait_for_metric

N = 20
T0 = 1_700_000_000_000


def valid_inputs(n: int) -> dict[str, list[tuple[str, Any]]]:
    """``n`` valid (key, record) pairs for each input topic (logical names)."""
    ids = [f"req-{i:03d}" for i in range(n)]
    return {
        "requests": [(rid, make_request(rid, ts_ms=T0 + i)) for i, rid in enumerate(ids)],
        "feedback": [(rid, make_feedback(rid, ts_ms=T0 + 1_000 + i)) for i, rid in enumerate(ids)],
        "metrics": [(f"gw-{i % 3}", make_metric(f"gw-{i % 3}", ts_ms=T0 + i, value=i / n)) for i in range(n)],
        "logs": [(f"svc-{i % 4}", make_log(f"svc-{i % 4}", ts_ms=T0 + i)) for i in range(n)],
        "workflows": [(f"wf-{i}", make_workflow(f"wf-{i}", ts_ms=T0 + i)) for i in range(n)],
        "jobs": [(f"job-{i}", JobSubmission(f"job-{i}", T0 + i, "support-bot", 1 + i % 3, 0.5, 60.0))
                 for i in range(n)],
        "route.requests": [(f"rr-{i}", RouteRequest(f"rr-{i}", T0 + i, "support-bot", make_context()))
                           for i in range(n)],
    }


def produce_records(settings: Settings, logical: str, pairs: list[tuple[str, Any]]) -> None:
    codec = json_codec(type(pairs[0][1]))
    by_value = {codec.encode(record): key for key, record in pairs}
    acked = produce_messages(settings, settings.topic(logical), list(by_value), key=lambda value: by_value[value])
    assert acked == len(pairs)


def test_valid_events_of_every_input_topic_are_counted_and_requests_become_one_outcome_each(
    settings: Settings, tmp_path: Path,
) -> None:
    apply_topics(settings)
    inputs = valid_inputs(N)
    with running_worker(settings, tmp_path / "worker.log") as worker:
        for logical, pairs in inputs.items():
            produce_records(settings, logical, pairs)
        for logical in inputs:
            wait_for_metric(worker, "loopwise_events_in_total", N, topic=settings.topic(logical))
        wait_for_metric(worker, "loopwise_events_out_total", N, topic=settings.topic("outcomes"))

        outcomes = read_topic(settings, settings.topic("outcomes"), at_least=N)
        keys = sorted(message.key().decode() for message in outcomes)
        values = decoded(outcomes)
        assert keys == [key for key, _ in inputs["requests"]]
        assert sorted(value["request_id"] for value in values) == keys
        assert [value["is_final"] for value in values] == [False] * N
        assert {value["route"] for value in values} == {"gpt-large"}
        assert read_topic(settings, settings.topic("dlq")) == []
        assert not [name for name, _ in worker.samples() if name == "loopwise_dlq_total"]
        assert worker.is_running

