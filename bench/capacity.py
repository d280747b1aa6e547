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
        "job_cost_ratio": smart.cost_usd / fifo.cost_usd, "missed": smart.missed_deadlines,
        "missed_fifo": fifo.missed_deadlines, "early": smart.released_before_deps, "twice": smart.released_twice,
        "jobs": smart.jobs, "unfinished": smart.unfinished,
    }


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
    series = [EntitySeries(f"route:r{i}|rps") for i in range(200)]
    started = time.process_time()
    minutes = 1500
    for m in range(minutes):
        for s in series:
            s.add(m * 60_000, 600.0 + m % 60, 600)
            s.advance(m * 60_000)
    out["forecast_us_per_entity_minute"] = (time.process_time() - started) / (minutes * len(series)) * 1e6
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    many = [EntitySeries(f"route:r{i}|rps") for i in range(1000)]
    for m in range(300):
        for s in many:
            s.add(m * 60_000, 600.0, 600)
            s.advance(m * 60_000)
    out["forecast_mb_per_10k_entities"] = (tracemalloc.get_traced_memory()[0] - before) * 10 / 1e6
    tracemalloc.stop()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    args = parser.parse_args(argv)
    rows = [one_run(v, s) for v in args.variants for s in args.seeds]
    cols = ("variant", "seed", "mape", "naive_mape", "mape_ratio", "wf_mape_ratio", "under_reactive", "under_loopwise",
            "under_ratio", "hours_reactive", "hours_loopwise", "capacity_ratio", "direction_30m",
            "direction_30m_reactive", "job_cost_ratio", "missed", "missed_fifo", "early", "twice", "jobs", "unfinished")
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
