"""Capacity on the simulator: forecast error, predictive vs reactive scaling, cost-aware vs FIFO job release.

    .venv/bin/python -m bench.capacity                    # day (3 days) and week (14 days) variants, seeds 1-3
    .venv/bin/python -m bench.capacity --variants day --seeds 1

Demand is the ``day`` scenario's load curve per route (``infra.simulator.capacity``)
with day-to-day level changes, wander within the day and Poisson arrivals; the
``week`` variant adds quieter weekends (x0.6). Figures (targets from issue 16),
measured on the days after the first (day) or the first week (week):

  mape_ratio        forecast MAPE 15 min ahead / the better seasonal-naive's (1 day or 1 week back)   ≤ 0.8
  under_ratio       minutes over 90 % utilisation, loopwise / reactive HPA                             ≤ 0.5
  capacity_ratio    replica-hours, loopwise / reactive HPA                                             ≤ 1.1
  direction_30m     most scaling direction changes of one route within 30 minutes (loopwise)           ≤ 1
  job_cost_ratio    batch job cost, loopwise / FIFO immediate release                                  ≤ 0.7
  job_cost_bound    the same for a clairvoyant release (each job at its cheapest start, no deps/failures)
  missed, early     missed deadlines, releases before dependencies succeeded (loopwise)                 0, 0
  µs/event, memory  forecast stage per request, per entity-minute; scheduler per job; per 10 k entities
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from typing import Any

import numpy as np
import orjson

from infra.simulator.capacity import (
    DAY_MIN, PredictiveScaler, ReactiveScaler, make_demand, make_jobs, run_jobs, run_scaling,
)
from infra.simulator.loader import load_scenario
from processors.capacity.forecast import BucketAggregator, EntitySeries, ForecasterConfig, SeasonalForecaster, mape
from processors.capacity.jobs import JobScheduler, PriceSchedule
from processors.capacity.scaling import ScalingConfig

REPLICA_RPS = 10.0
PROVISIONING_MS = 300_000
VARIANTS = {"day": (3, 1.0, 1), "week": (14, 0.6, 7)}  # days, weekend factor, evaluation starts on day
PRICES = {  # hourly multipliers (UTC): cheap nights, dear office hours
    "batch-api": [0.5] * 7 + [1.0] * 2 + [1.3] * 9 + [1.0] * 4 + [0.7] * 2,
    "llama-local": [0.4] * 6 + [1.0] * 3 + [1.5] * 9 + [1.0] * 4 + [0.6] * 2,
}


def forecast_errors(observed: np.ndarray, eval_from: int, horizon: int = 15) -> tuple[float, float, float]:
    """MAPE of loopwise's forecast, of seasonal-naive 1 day back and 1 week back (nan if not enough history)."""
    pairs: list[tuple[float, float]] = []
    daily: list[tuple[float, float]] = []
    weekly: list[tuple[float, float]] = []
    for series in observed:
        f = SeasonalForecaster(ForecasterConfig(horizons=(horizon,)))
        predicted: dict[int, float] = {}
        for m, v in enumerate(series):
            if m >= eval_from and m in predicted:
                pairs.append((float(v), predicted.pop(m)))
                daily.append((float(v), float(series[m - DAY_MIN])))
                if m >= 7 * DAY_MIN:
                    weekly.append((float(v), float(series[m - 7 * DAY_MIN])))
            predicted[m + horizon] = f.observe(m * 60_000, float(v))[0].value
    return mape(pairs), mape(daily), mape(weekly) if weekly else float("nan")


def one_run(variant: str, seed: int) -> dict[str, Any]:
    days, weekend, eval_day = VARIANTS[variant]
    scenario = load_scenario("day")
    demand = make_demand(scenario, days, seed, weekend_factor=weekend)
    eval_from = eval_day * DAY_MIN
    ours, naive_d, naive_w = forecast_errors(demand.observed, eval_from)
    workflows = _by_workflow(demand)
    wf_ours, wf_d, wf_w = forecast_errors(workflows, eval_from)
    naive = min(x for x in (naive_d, naive_w) if x == x)
    wf_naive = min(x for x in (wf_d, wf_w) if x == x)
    n = len(demand.routes)
    reactive = run_scaling(demand, ReactiveScaler(n, REPLICA_RPS), replica_rps=REPLICA_RPS,
                           provisioning_ms=PROVISIONING_MS, eval_from_minute=eval_from)
    config = ScalingConfig(replica_rps=REPLICA_RPS, lead_ms=PROVISIONING_MS + 60_000)
    predictive = run_scaling(demand, PredictiveScaler(n, config, demand.start_ms), replica_rps=REPLICA_RPS,
                             provisioning_ms=PROVISIONING_MS, eval_from_minute=eval_from)
    jobs = make_jobs(days, seed, demand.start_ms)
    prices = PriceSchedule(PRICES)
    end = demand.start_ms + (days + 2) * 86_400_000
    fifo = run_jobs(jobs, prices, "fifo", seed, end)
    bound = _cheapest_bound(jobs, prices) / fifo.cost_usd
    smart = run_jobs(jobs, prices, "loopwise", seed, end)
    return {
        "variant": variant, "seed": seed, "mape": ours, "naive_mape": naive, "mape_ratio": ours / naive,
        "wf_mape_ratio": wf_ours / wf_naive,
        "under_reactive": reactive.under_minutes, "under_loopwise": predictive.under_minutes,
        "under_ratio": predictive.under_minutes / max(reactive.under_minutes, 1),
        "capacity_ratio": predictive.capacity_hours / reactive.capacity_hours,
        "hours_reactive": reactive.capacity_hours, "hours_loopwise": predictive.capacity_hours,
        "direction_30m": predictive.max_direction_changes_30m,
        "direction_30m_reactive": reactive.max_direction_changes_30m,
        "job_cost_ratio": smart.cost_usd / fifo.cost_usd, "job_cost_bound": bound, "missed": smart.missed_deadlines,
        "missed_fifo": fifo.missed_deadlines, "early": smart.released_before_deps, "twice": smart.released_twice,
        "jobs": smart.jobs, "unfinished": smart.unfinished,
    }


def _cheapest_bound(jobs: list[Any], prices: PriceSchedule) -> float:
    """Each job at its cheapest start before its own deadline, ignoring dependencies and failures:
    no scheduler can do better (the ceiling printed next to the ratio)."""
    total = 0.0
    for j in jobs:
        starts = [j.submit_ms, *range(j.submit_ms - j.submit_ms % 900_000 + 900_000, j.deadline_ms - j.duration_ms + 1,
                                      900_000)]
        total += j.base_cost_usd * min(prices.mean_price(j.route, t, j.duration_ms) for t in starts)
    return total


def _by_workflow(demand: Any) -> np.ndarray:
    names = sorted({r.split("/")[0] for r in demand.routes})
    return np.array([demand.observed[[i for i, r in enumerate(demand.routes) if r.startswith(w + "/")]].sum(axis=0)
                     for w in names])


# --------------------------------------------------------------------------- costs


def cost_figures() -> dict[str, float]:
    """CPU µs per event and memory per 10 k entities of the forecast and scheduling processors."""
    out: dict[str, float] = {}
    agg = BucketAggregator()
    n = 200_000
    started = time.process_time()
    for i in range(n):  # a request adds to 4 entities (route/workflow x rps/tokens)
        ts = i * 3
        for e, v in (("route:a|rps", 1.0), ("route:a|tokens_s", 700.0), ("workflow:w|rps", 1.0),
                     ("workflow:w|tokens_s", 700.0)):
            agg.add(e, ts, v)
        if i % 1000 == 0:
            agg.close()
    out["load_us_per_request"] = (time.process_time() - started) / n * 1e6
    out["load_stage_us_per_request"] = _load_stage_us()
    series = [EntitySeries(f"route:r{i}|rps") for i in range(200)]
    started = time.process_time()
    minutes = 1500
    for m in range(minutes):
        for s in series:
            s.add(m * 60_000, 600.0 + m % 60, 600)
            s.advance(m * 60_000)
    out["forecast_us_per_entity_minute"] = (time.process_time() - started) / (minutes * len(series)) * 1e6
    # Memory: 1000 entities restored from the state of one that learnt 1 500 minutes (its rings are full), x10.
    snapshot = series[0].snapshot()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    many = [EntitySeries.restore(f"route:r{i}|rps", snapshot) for i in range(1000)]
    out["forecast_mb_per_10k_entities"] = (tracemalloc.get_traced_memory()[0] - before) * 10 / 1e6
    tracemalloc.stop()
    del many
    out["forecast_state_kb_per_entity"] = len(orjson.dumps(series[0].snapshot())) / 1000
    scheduler = JobScheduler(PriceSchedule(PRICES))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.process_time()
    for i in range(10_000):
        scheduler.submit(f"j{i}", ts_ms=0, workflow="w", priority=i % 3, cost_usd=1.0, duration_s=600,
                         deadline_ms=86_400_000 + i, depends_on=(f"j{i - 1}",) if i % 3 else (), route="batch-api")
    out["schedule_us_per_submit"] = (time.process_time() - started) / 10_000 * 1e6
    out["schedule_mb_per_10k_jobs"] = (tracemalloc.get_traced_memory()[0] - before) / 1e6
    tracemalloc.stop()
    started = time.process_time()
    ticks = 10
    for t in range(ticks):
        scheduler.advance(t * 60_000)
    out["schedule_ms_per_tick_10k_queued"] = (time.process_time() - started) / ticks * 1e3
    return out


def _load_stage_us(n: int = 20_000) -> float:
    """The ``load`` stage on encoded requests, gate (decode, validate, deduplicate) included."""
    from infra.settings import Settings
    from schemas.records import RequestContext, RequestEvent, Status
    from schemas.serde import json_codec
    from sinks.prometheus import Metrics
    from streams.edge import RawMessage
    from streams.stages import LoadStage, StageEnv

    t0 = 1_700_000_000_000
    env = StageEnv(Settings(bootstrap_servers="unused:9092", topic_prefix="b."), Metrics(), now_ms=lambda: t0 + 10**9)
    stage, codec = LoadStage(env), json_codec(RequestEvent)
    batch = [RawMessage("b.requests", i % 4, i, f"r{i}".encode(), codec.encode(RequestEvent(
        f"r{i}", t0 + i * 10, "w", "v1", f"route-{i % 8}", RequestContext("t", "task"), 500.0, 0.001, 300, 100,
        Status.OK)), t0) for i in range(n)]
    started = time.process_time()
    for i in range(0, n, 500):
        stage.handle(batch[i:i + 500])
        stage.state_changes()
    return (time.process_time() - started) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--costs-only", action="store_true", help="only the µs/event and memory figures")
    args = parser.parse_args(argv)
    if args.costs_only:
        for key, value in cost_figures().items():
            print(f"{key:>34}: {value:.2f}")
        return 0
    rows = [one_run(v, s) for v in args.variants for s in args.seeds]
    cols = ("variant", "seed", "mape", "naive_mape", "mape_ratio", "wf_mape_ratio", "under_reactive", "under_loopwise",
            "under_ratio", "hours_reactive", "hours_loopwise", "capacity_ratio", "direction_30m",
            "direction_30m_reactive", "job_cost_ratio", "job_cost_bound", "missed", "missed_fifo", "early", "twice", "jobs", "unfinished")
    print(" ".join(f"{c:>12}" for c in cols))
    for r in rows:
        print(" ".join(f"{r[c]:>12.3f}" if isinstance(r[c], float) else f"{r[c]:>12}" for c in cols))
    targets = {"mape_ratio": ("<=", 0.8), "under_ratio": ("<=", 0.5), "capacity_ratio": ("<=", 1.1),
               "direction_30m": ("<=", 1), "job_cost_ratio": ("<=", 0.7), "missed": ("<=", 0), "early": ("<=", 0)}
    print()
    for key, (_, limit) in targets.items():
        values = [r[key] for r in rows]
        worst = max(values)
        print(f"{key:>16}: median {statistics.median(values):.3f}  worst {worst:.3f}  target <= {limit}  "
              f"{'PASS' if worst <= limit else 'FAIL'}")
    print()
    for key, value in cost_figures().items():
        print(f"{key:>34}: {value:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
