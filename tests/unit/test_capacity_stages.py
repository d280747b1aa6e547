"""Capacity stages driven in memory: load → repartition → forecast → scale, and jobs → release commands."""

from __future__ import annotations

from infra.settings import Settings
from schemas.records import Command, Forecast, JobSubmission, LoadCount
from schemas.serde import json_codec
from schemas.signing import verify
from sinks.prometheus import Metrics
from streams.edge import RawMessage
from streams.stages import ForecastStage, LoadStage, ScaleStage, ScheduleStage, StageEnv
from tests.factories import make_request, make_route, make_workflow

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000


def env() -> StageEnv:
    e = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="p."), Metrics(),
                 now_ms=lambda: T0 + 10 * 86_400_000)
    e.registry.update(make_workflow(routes=(make_route("gpt-large", capacity_rps=5.0),)))
    return e


def msg(topic: str, record: object, offset: int = 0, partition: int = 0) -> RawMessage:
    key = next(getattr(record, f) for f in ("request_id", "job_id", "entity") if hasattr(record, f))
    return RawMessage(topic, partition, offset, key.encode(), json_codec(type(record)).encode(record), T0)


def decode(outgoing, record_type):  # type: ignore[no-untyped-def]
    return json_codec(record_type).decode(outgoing.value)


def test_load_forecast_and_scale_stages_chain_across_partitions() -> None:
    e = env()
    load, forecast, scale = LoadStage(e), ForecastStage(e), ScaleStage(e)
    counts = []
    for second in range(0, 300):  # 10 requests/s for 5 minutes over two input partitions
        batch = [msg("p.requests", make_request(f"r{second}-{i}", ts_ms=T0 + second * 1000 + i * 100), second * 10 + i,
                     partition=i % 2) for i in range(10)]
        counts += [o for o in load.handle(batch) if o.topic == "p.repartition.forecast"]
    partials = [decode(o, LoadCount) for o in counts]
    assert {p.source_partition for p in partials} == {0, 1}
    first = [p for p in partials if p.entity == "route:gpt-large|rps" and p.ts_ms == T0]
    assert sum(p.total for p in first) == 600  # the two halves of minute one add up
    assert {p for p, _, _ in load.state_changes()} == {0, 1}  # each partition's open minute, durable
    out = forecast.handle([RawMessage(o.topic, hash(o.key) % 1, i, o.key, o.value, T0) for i, o in enumerate(counts)])
    forecasts = [decode(o, Forecast) for o in out if o.topic == "p.forecasts"]
    rps = [f for f in forecasts if f.entity == "route:gpt-large|rps"]
    assert rps and abs(rps[-1].value - 10.0) < 1e-9 and rps[-1].points[1] > 0
    assert any(k.startswith(b"e:route:gpt-large") for _, k, _ in forecast.state_changes())
    commands = [decode(o, Command) for o in scale.handle([msg("p.forecasts", f) for f in rps])]
    assert commands and commands[0].action == "scale_to" and int(commands[0].params["replicas"]) >= 3  # 10/(5*.75)
    verify(commands[0], e.settings.signing_key_bytes)
    assert e.metrics.value("loopwise_scaling_desired_replicas", target="gpt-large") == int(commands[-1].params["replicas"])


def test_forecast_state_restores_after_a_rebalance() -> None:
    e = env()
    stage = ForecastStage(e)
    records = [LoadCount("route:a|rps", T0 + m * 60_000, 60_000, 600.0, 600, 0) for m in range(5)]
    stage.handle([msg("p.repartition.forecast", r, i) for i, r in enumerate(records)])
    changes = stage.state_changes()
    again = ForecastStage(e)
    again.restore(0, [(k, v) for _, k, v in changes])
    nxt = [msg("p.repartition.forecast", LoadCount("route:a|rps", T0 + m * 60_000, 60_000, 600.0, 600, 0), m)
           for m in range(5, 8)]
    a = [decode(o, Forecast) for o in stage.handle(nxt)]
    b = [decode(o, Forecast) for o in again.handle(nxt)]
    assert a == b and a


def _job(job_id: str, ts_ms: int, **fields: object) -> JobSubmission:
    values: dict[str, object] = {"workflow": "etl", "priority": 1, "estimated_cost_usd": 1.0,
                                 "estimated_duration_s": 60.0, "deadline_ts_ms": ts_ms + 3_600_000}
    values.update(fields)
    return JobSubmission(job_id, ts_ms, **values)  # type: ignore[arg-type]


def test_schedule_stage_releases_after_dependencies_and_once() -> None:
    e = env()
    stage = ScheduleStage(e)
    out = stage.handle([msg("p.jobs", _job("a", T0), 0), msg("p.jobs", _job("b", T0, depends_on=("a",)), 1),
                        msg("p.jobs", _job("a", T0), 2)])  # the submission of a, twice
    released = [decode(o, Command) for o in out if o.topic == "p.commands.jobs"]
    assert [(c.target, c.action, c.params["attempt"]) for c in released] == [("a", "release", "1")]
    verify(released[0], e.settings.signing_key_bytes)
    out = stage.handle([msg("p.jobs", _job("a", T0 + 60_000, status="succeeded", attempt=1), 3)])
    assert [decode(o, Command).target for o in out if o.topic == "p.commands.jobs"] == ["b"]
    restored = ScheduleStage(e)
    restored.restore(0, [(k, v) for _, k, v in stage.state_changes()])
    assert restored.handle([msg("p.jobs", _job("c", T0 + 120_000, depends_on=("zz",)), 4)]) == []


def test_forecast_changelog_writes_the_full_model_every_15_minutes_and_the_counts_every_batch() -> None:
    e = env()
    stage = ForecastStage(e)
    changes = []
    for m in range(40):  # one batch per minute of event time
        record = LoadCount("route:a|rps", T0 + m * 60_000, 60_000, 600.0 + m, 600, 0)
        stage.handle([msg("p.repartition.forecast", record, m)])
        changes += stage.state_changes()
    full = [k for _, k, _ in changes if k.startswith(b"e:")]
    hot = [k for _, k, _ in changes if k.startswith(b"h:")]
    assert len(full) == 3 and len(hot) == 40  # full at minutes 0, 15 and 30; the sums with every batch
    again = ForecastStage(e)
    again.restore(0, [(k, v) for _, k, v in changes])
    series, restored = stage.series[0]["route:a|rps"], again.series[0]["route:a|rps"]
    assert (restored.next_bucket_ms, restored.last_value, restored.partial) == (
        series.next_bucket_ms, series.last_value, series.partial)  # no count lost, no minute seen twice


def test_jobs_without_a_route_go_local_while_it_is_free_and_hosted_once_it_saturates() -> None:
    from schemas.records import PrivacyLevel

    e = env()
    gpu = make_route("llama-local", provider="vllm", is_local=True, max_privacy=PrivacyLevel.RESTRICTED,
                     capacity_rps=10.0)
    e.registry.update(make_workflow("batch", ts_ms=T0, routes=(gpu, make_route("gpt-large"))))
    stage = ScheduleStage(e)

    def forecast(rps: float, m: int) -> Forecast:
        return Forecast("route:llama-local|rps", T0 + m * 60_000, 60.0, rps, (900.0,), (rps,), (rps,), (rps,), "t")

    stage.handle([msg("p.forecasts", forecast(2.0, 0), 0)])
    out = stage.handle([msg("p.jobs", _job("j1", T0 + 60_000, workflow="batch"), 1)])
    assert [decode(o, Command).params["route"] for o in out] == ["llama-local"]  # 80 % free
    stage.handle([msg("p.forecasts", forecast(9.9, 2), 2)])
    out = stage.handle([msg("p.jobs", _job("j2", T0 + 180_000, workflow="batch"), 3)])
    assert [decode(o, Command).params["route"] for o in out] == ["gpt-large"]  # local saturated
