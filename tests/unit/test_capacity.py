"""Capacity processors: forecasts beat seasonal-naive, scaling does not flap, jobs respect deps, prices, deadlines."""

from __future__ import annotations

import math
import random

import pytest

from processors.capacity.forecast import (
    DAY_MS, BucketAggregator, EntitySeries, ForecasterConfig, SeasonalForecaster, mape,
)
from processors.capacity.jobs import HOUR_MS, JobScheduler, PriceSchedule, SchedulerConfig, next_occurrence
from processors.capacity.scaling import ScalingConfig, ScalingPlanner, as_command
from schemas.signing import verify

KEY = b"k" * 32


def _series(days: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    out = []
    for m in range(days * 1440):
        level = 1.0 + 0.1 * (m // 1440 % 3)  # each day a bit busier: seasonal-naive lags, the level follows
        lam = 40.0 * level * (1 + 0.6 * math.cos(2 * math.pi * ((m / 60) % 24 - 14) / 24))
        out.append(max(0.0, rng.gauss(lam, math.sqrt(lam * 60) / 60)))
    return out


def test_forecast_beats_seasonal_naive_15_minutes_ahead() -> None:
    y = _series(3, 1)
    f = SeasonalForecaster(ForecasterConfig(horizons=(15,)))
    preds = {}
    for m, v in enumerate(y):
        preds[m + 15] = f.observe(m * 60_000, v)[0].value
    ours = mape([(y[m], preds[m]) for m in range(1440, len(y))])
    naive = mape([(y[m], y[m - 1440]) for m in range(1440, len(y))])
    assert ours <= 0.5 * naive


def test_forecast_intervals_cover_most_actuals() -> None:
    y = _series(3, 2)
    f = SeasonalForecaster(ForecasterConfig(horizons=(15,)))
    bounds = {}
    for m, v in enumerate(y):
        p = f.observe(m * 60_000, v)[0]
        bounds[m + 15] = (p.lower, p.upper)
    inside = [bounds[m][0] <= y[m] <= bounds[m][1] for m in range(1440, len(y))]
    assert 0.8 <= sum(inside) / len(inside) <= 0.99


def test_forecaster_snapshot_round_trips_and_predicts_the_same() -> None:
    f = SeasonalForecaster()
    for m, v in enumerate(_series(2, 3)[:1800]):
        f.observe(m * 60_000, v)
    g = SeasonalForecaster.restore(f.snapshot())
    assert f.observe(1800 * 60_000, 50.0) == g.observe(1800 * 60_000, 50.0)


def test_partial_sums_of_partitions_add_up_to_the_whole() -> None:
    aggs = [BucketAggregator(), BucketAggregator()]
    for i in range(600):  # 10 requests/s for 60 s, spread over two partitions
        aggs[i % 2].add("route:a|rps", i * 100, 1.0)
    for agg in aggs:
        agg.add("route:a|rps", 200_000, 1.0)  # moves each partition's watermark past the minute
    series = EntitySeries("route:a|rps")
    for agg in aggs:
        for entity, bucket, total, n in agg.close():
            if bucket == 0:
                series.add(bucket, total, n)
    series.advance(60_000)
    assert series.last_value == pytest.approx(10.0)


def test_rate_buckets_without_traffic_count_as_zero() -> None:
    series = EntitySeries("route:a|rps")
    series.add(0, 60.0, 60)
    series.add(180_000, 60.0, 60)
    series.advance(180_000)
    assert series.forecaster.recent < 1.0  # minutes 1 and 2 were seen as 0 req/s


def test_scaling_goes_up_ahead_and_never_flaps_within_30_minutes() -> None:
    p = ScalingPlanner(ScalingConfig(replica_rps=10))
    decisions = []
    for minute in range(240):  # demand oscillating every 10 minutes: a reactive scaler would follow it
        demand = 60.0 if (minute // 10) % 2 == 0 else 20.0
        d = p.plan("t", minute * 60_000, demand)
        if d is not None:
            decisions.append(d)
    assert decisions[0].replicas == 8
    changes = [d.ts_ms for a, d in zip(decisions, decisions[1:]) if a.direction != d.direction]
    assert all(b - a >= 1_800_000 for a, b in zip(changes, changes[1:]))


def test_scaling_cost_cap_limits_extra_replicas() -> None:
    p = ScalingPlanner(ScalingConfig(replica_rps=10, min_replicas=2, cost_per_replica_hour_usd=2.0,
                                     max_extra_usd_per_hour=6.0))
    d = p.plan("t", 0, 500.0)
    assert d is not None and d.replicas == 5 and d.is_capped


def test_scaling_command_is_signed_idempotent_and_expires() -> None:
    cfg = ScalingConfig(replica_rps=10)
    d = ScalingPlanner(cfg).plan("gpu", 1_000, 45.0)
    assert d is not None
    a, b = as_command(d, cfg, KEY, "lw"), as_command(d, cfg, KEY, "lw")
    verify(a, KEY)
    assert a.command_id == b.command_id and a.expires_ts_ms == 1_000 + cfg.ttl_ms
    assert a.params["replicas"] == "6" and a.action == "scale_to"


def _scheduler(**config: object) -> JobScheduler:
    night = [0.4] * 6 + [1.0] * 18  # 00:00–06:00 UTC costs 40 %
    return JobScheduler(PriceSchedule({"*": night}), SchedulerConfig(**config))  # type: ignore[arg-type]


def test_jobs_wait_for_the_cheap_window_unless_the_deadline_forces_them() -> None:
    s = _scheduler()
    noon = 12 * HOUR_MS
    s.submit("cheap", ts_ms=noon, workflow="w", priority=1, cost_usd=1, duration_s=1800)
    s.submit("urgent", ts_ms=noon, workflow="w", priority=1, cost_usd=1, duration_s=1800,
             deadline_ms=noon + 3 * HOUR_MS)
    assert [r.job_id for r in s.advance(noon)] == ["urgent"]  # no cheaper hour before its deadline: now
    night = [r for t in range(noon, DAY_MS + 6 * HOUR_MS, 60_000) for r in s.advance(t)]
    assert [(r.job_id, r.ts_ms) for r in night] == [("cheap", DAY_MS)]  # released at midnight, the cheap hour


def test_dependencies_retries_and_at_most_once_per_attempt() -> None:
    s = _scheduler(retry_base_ms=60_000, max_attempts=2)
    s.submit("a", ts_ms=0, workflow="w", priority=1, cost_usd=1, duration_s=60, deadline_ms=HOUR_MS)
    s.submit("b", ts_ms=0, workflow="w", priority=1, cost_usd=1, duration_s=60, depends_on=("a",),
             deadline_ms=2 * HOUR_MS)
    assert [r.job_id for r in s.advance(0)] == ["a"]
    assert s.advance(60_000) == []  # a is running: released once, b waits for it
    s.status("a", "failed", attempt=1, ts_ms=60_000)
    backoff = s.backoff_ms("a", 1)
    assert 30_000 <= backoff <= 60_000 and s.advance(60_000 + backoff - 1) == []
    retry = s.advance(60_000 + backoff)
    assert [(r.job_id, r.attempt) for r in retry] == [("a", 2)]
    s.status("a", "failed", attempt=1, ts_ms=70_000)  # a stale attempt's report changes nothing
    assert s.jobs["a"].status == "released"
    s.status("a", "succeeded", attempt=2, ts_ms=200_000)
    assert [r.job_id for r in s.advance(200_000)] == ["b"]


def test_a_dead_prerequisite_means_the_job_is_never_released() -> None:
    s = _scheduler(max_attempts=1)
    s.submit("a", ts_ms=0, workflow="w", priority=1, cost_usd=1, duration_s=60, deadline_ms=HOUR_MS)
    s.submit("b", ts_ms=0, workflow="w", priority=1, cost_usd=1, duration_s=60, depends_on=("a",))
    s.advance(0)
    s.status("a", "failed", attempt=1, ts_ms=10)
    assert [r for t in range(0, 2 * DAY_MS, 600_000) for r in s.advance(t)] == []
    assert s.jobs["b"].status == "dead"


def test_priority_and_headroom_throttle_releases() -> None:
    s = _scheduler(max_running_per_route=1)
    for job_id, prio in (("low", 1), ("high", 5)):
        s.submit(job_id, ts_ms=0, workflow="w", priority=prio, cost_usd=1, duration_s=60, route="gpu",
                 deadline_ms=DAY_MS)
    s.set_headroom("gpu", 0.0)
    assert s.advance(0) == []  # no headroom: held
    s.set_headroom("gpu", 0.5)
    assert [r.job_id for r in s.advance(60_000)] == ["high"]  # one at a time, highest priority first
    assert s.advance(120_000) == []  # high is running (no report yet)
    assert [r.job_id for r in s.advance(60_000 + 120_000)] == ["low"]  # silent for 2x its estimate: not running


def test_recurring_jobs_follow_cron_in_their_time_zone() -> None:
    s = JobScheduler()
    s.submit("nightly", ts_ms=0, workflow="w", priority=1, cost_usd=1, duration_s=60, cron="0 2 * * *",
             tz="Europe/Paris")
    released = [r.job_id for t in range(0, 2 * DAY_MS, 600_000) for r in s.advance(t)]
    assert released == ["nightly@3600000", f"nightly@{DAY_MS + 3_600_000}"]
    # Across the spring DST change, 02:00 Paris does not exist: croniter moves it, still once a day.
    assert next_occurrence("0 3 * * *", "Europe/Paris", 1_711_846_800_000 - 1) == 1_711_846_800_000


def test_queue_state_round_trips() -> None:
    s = _scheduler()
    s.submit("a", ts_ms=0, workflow="w", priority=1, cost_usd=1, duration_s=60, deadline_ms=HOUR_MS)
    s.advance(0)
    t = _scheduler()
    for _, data in s.drain_changes():
        t.load(data)
    assert t.jobs == s.jobs and t.advance(60_000) == []  # released already: never twice
