"""The capacity simulation: minute-level demand per route, replicas that take time to come up, batch jobs.

Demand follows a scenario's load curve (``Truth.rate_at``: daily cosine and
spikes) split over each workflow's routes by their declared capacity, with
what real traffic adds: each day's level varies (lognormal, sigma 10 %),
the level wanders within a day, weekends can be quieter (``weekend_factor``),
and arrivals are Poisson. Replicas serve ``replica_rps`` each; a scale-up lands
after ``provisioning_ms`` and is billed from the request; a scale-down is at once.

Policies: ``ReactiveScaler`` (HPA's rule: ``ceil(replicas × utilisation / target)``,
10 % tolerance, a 5-minute scale-down stabilisation window) and ``PredictiveScaler``
(loopwise's ``SeasonalForecaster`` + ``ScalingPlanner``).

Jobs: DAGs of batch jobs with deadlines on routes priced by the hour; ``run_jobs``
releases them FIFO (as soon as submitted and unblocked) or through loopwise's
``JobScheduler`` and reports cost, missed deadlines and releases before dependencies.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from infra.simulator.scenario import Scenario
from infra.simulator.truth import Truth
from processors.capacity.forecast import ForecasterConfig, SeasonalForecaster
from processors.capacity.jobs import HOUR_MS, JobScheduler, PriceSchedule, SchedulerConfig
from processors.capacity.scaling import ScalingConfig, ScalingPlanner

MINUTE_MS = 60_000
DAY_MIN = 1440


@dataclass
class Demand:
    """Per route and minute: the true mean rate and the observed rate (requests/s)."""

    routes: tuple[str, ...]
    start_ms: int
    mean: np.ndarray
    observed: np.ndarray


def make_demand(scenario: Scenario, days: int, seed: int, *, rate: float | None = None,
                weekend_factor: float = 1.0, day_sigma: float = 0.1, wander_sigma: float = 0.004,
                is_spike_daily: bool = True) -> Demand:
    """``days`` of minute demand per route of ``scenario``; its spikes recur every day at the same
    time (a daily surge, e.g. a report run) unless ``is_spike_daily`` is false (first day only)."""
    rng = np.random.default_rng(seed)
    base_rate = rate or scenario.rate
    truth = Truth(scenario, base_rate)
    n = days * DAY_MIN
    curve = np.array([truth.rate_at(((m % DAY_MIN if is_spike_daily else m) + 0.5) * 60.0, base_rate)
                      for m in range(n)])
    day_level = np.repeat(np.exp(rng.normal(0.0, day_sigma, days)), DAY_MIN)
    wander = np.exp(np.cumsum(rng.normal(0.0, wander_sigma, n)))
    wander /= np.repeat(wander.reshape(days, DAY_MIN).mean(axis=1), DAY_MIN)
    weekday = ((scenario.start_ms // 86_400_000 + np.arange(n) // DAY_MIN) + 3) % 7  # 0 = Monday
    weekly = np.where(weekday >= 5, weekend_factor, 1.0)
    total = curve * day_level * wander * weekly
    routes, shares = [], []
    for wf in scenario.workflows:
        capacity = sum(r.capacity_rps or 1.0 for r in wf.routes)
        for r in wf.routes:
            routes.append(f"{wf.name}/{r.name}")
            shares.append(wf.share / sum(w.share for w in scenario.workflows) * (r.capacity_rps or 1.0) / capacity)
    mean = np.outer(np.array(shares), total)
    observed = rng.poisson(mean * 60.0) / 60.0
    return Demand(tuple(routes), scenario.start_ms, mean, observed)


@dataclass
class ScalingRun:
    """What one policy did to the capacity of every route."""

    policy: str
    under_minutes: int = 0
    capacity_hours: float = 0.0
    max_direction_changes_30m: int = 0
    replicas: list[list[int]] = field(default_factory=list)


class ReactiveScaler:
    """Kubernetes HPA's rule on last minute's utilisation (target, 10 % tolerance, 5-min down stabilisation)."""

    name = "reactive-hpa"

    def __init__(self, n: int, replica_rps: float, target: float = 0.75, min_replicas: int = 1) -> None:
        self.replica_rps, self.target, self.min_replicas = replica_rps, target, min_replicas
        self.history: list[list[int]] = [[] for _ in range(n)]

    def decide(self, i: int, minute: int, observed_rps: float, active: int, requested: int) -> int:
        util = observed_rps / max(active * self.replica_rps, 1e-9)
        ratio = util / self.target
        desired = requested if abs(ratio - 1.0) <= 0.1 else max(self.min_replicas, math.ceil(active * ratio))
        window = self.history[i]
        window.append(desired)
        del window[:-5]
        return max(window) if max(window) < requested else desired  # scale down to the 5-min max only


class PredictiveScaler:
    """loopwise: the seasonal forecast's upper bound at the lead time, through ``ScalingPlanner``."""

    name = "loopwise-predictive"

    def __init__(self, n: int, config: ScalingConfig, start_ms: int, window_min: int = 10,
                 slot_ms: int = 300_000) -> None:
        self.config, self.start_ms = config, start_ms
        lead = max(1, config.lead_ms // MINUTE_MS)
        # As the scale stage does: the most demand forecast from the lead time to ``window_min`` after it.
        horizons = tuple(sorted({lead, lead + window_min // 2, lead + window_min, 30}))
        self.upto = lead + window_min
        self.forecasters = [SeasonalForecaster(ForecasterConfig(horizons=horizons, slot_ms=slot_ms)) for _ in range(n)]
        self.planner = ScalingPlanner(config)

    def decide(self, i: int, minute: int, observed_rps: float, active: int, requested: int) -> int:
        ts = self.start_ms + minute * MINUTE_MS
        points = self.forecasters[i].observe(ts, observed_rps)
        demand = max([p.upper for p in points if p.horizon_ms <= self.upto * MINUTE_MS] + [observed_rps])
        self.planner.plan(str(i), ts + MINUTE_MS, demand)
        return self.planner.targets[str(i)].replicas


def run_scaling(demand: Demand, policy: ReactiveScaler | PredictiveScaler, *, replica_rps: float,
                provisioning_ms: int = 300_000, start_replicas: int | None = None, eval_from_minute: int = 0,
                overload: float = 0.9) -> ScalingRun:
    """Minute by minute: serve the demand with the replicas up, then let the policy ask for more or fewer."""
    n_routes, n_min = demand.observed.shape
    delay = provisioning_ms // MINUTE_MS
    run = ScalingRun(policy.name)
    for i in range(n_routes):
        first = start_replicas or max(1, math.ceil(demand.mean[i, 0] / (replica_rps * 0.75)))
        active, requested = first, first
        pending: list[tuple[int, int]] = []
        directions: list[tuple[int, int]] = []
        series = []
        for m in range(n_min):
            landed = [p for p in pending if p[0] <= m]
            if landed:
                active = landed[-1][1]
                pending = [p for p in pending if p[0] > m]
            rps = float(demand.observed[i, m])
            if m >= eval_from_minute:
                run.under_minutes += int(rps > overload * active * replica_rps)
                run.capacity_hours += max(active, requested) / 60.0
            series.append(active)
            wanted = policy.decide(i, m, rps, active, requested)
            if wanted != requested:
                direction = 1 if wanted > requested else -1
                if not directions or directions[-1][1] != direction:
                    directions.append((m, direction))
                if wanted > active:
                    pending.append((m + 1 + delay, wanted))
                else:
                    pending, active = [], wanted
                requested = wanted
        changes = [t for t, _ in directions[1:]]
        worst = max((sum(1 for u in changes if t <= u < t + 30) for t in changes), default=0)
        run.max_direction_changes_30m = max(run.max_direction_changes_30m, worst)
        run.replicas.append(series)
    return run


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class SimJob:
    job_id: str
    submit_ms: int
    duration_ms: int
    deadline_ms: int
    base_cost_usd: float
    route: str
    priority: int
    depends_on: tuple[str, ...]


@dataclass
class JobRun:
    policy: str
    cost_usd: float = 0.0
    missed_deadlines: int = 0
    released_before_deps: int = 0
    released_twice: int = 0
    unfinished: int = 0
    jobs: int = 0


def make_jobs(days: int, seed: int, start_ms: int, per_day: int = 120) -> list[SimJob]:
    """DAGs of 1–3 jobs submitted through the day; deadlines from 2 h to a day, some tight."""
    rng = np.random.default_rng(seed + 1000)
    jobs: list[SimJob] = []
    for d in range(days):
        for k in range(per_day // 2):
            submit = start_ms + d * 86_400_000 + int(rng.uniform(0, 86_400_000))
            chain = int(rng.integers(1, 4))
            slack_h = float(rng.choice([2.0, 6.0, 12.0, 24.0], p=[0.2, 0.3, 0.3, 0.2]))
            prev: tuple[str, ...] = ()
            durations = rng.uniform(10, 60, chain) * 60_000
            deadline = submit + int(durations.sum()) + int(slack_h * HOUR_MS)
            route = str(rng.choice(["batch-api", "llama-local"]))
            for c in range(chain):
                job_id = f"d{d}-j{k}-{c}"
                jobs.append(SimJob(job_id, submit, int(durations[c]), deadline, float(rng.uniform(1, 20)), route,
                                   int(rng.integers(1, 4)), prev))
                prev = (job_id,)
    return sorted(jobs, key=lambda j: (j.submit_ms, j.job_id))


def fails(job_id: str, attempt: int, seed: int, p: float = 0.05) -> bool:
    """Whether an attempt fails: the same draw whatever the policy (common random numbers)."""
    digest = hashlib.blake2b(f"{seed}|{job_id}|{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < p


def run_jobs(jobs: list[SimJob], prices: PriceSchedule, policy: str, seed: int, end_ms: int,
             tick_ms: int = MINUTE_MS) -> JobRun:
    """Release jobs (``fifo`` or ``loopwise``), run them, bill them at the hour's price, retry failures."""
    run = JobRun(policy, jobs=len(jobs))
    by_id = {j.job_id: j for j in jobs}
    scheduler = JobScheduler(prices, SchedulerConfig(max_running_per_route=10**6, seed=seed))
    succeeded: dict[str, int] = {}
    releases: dict[tuple[str, int], int] = {}
    running: list[tuple[int, str, int]] = []
    attempts: dict[str, int] = {}
    waiting_fifo: list[str] = []
    next_job = 0
    t = min(j.submit_ms for j in jobs)
    while t <= end_ms:
        while next_job < len(jobs) and jobs[next_job].submit_ms <= t:
            j = jobs[next_job]
            next_job += 1
            if policy == "fifo":
                waiting_fifo.append(j.job_id)
            else:
                scheduler.submit(j.job_id, ts_ms=j.submit_ms, workflow="batch", priority=j.priority,
                                 cost_usd=j.base_cost_usd, duration_s=j.duration_ms / 1000, deadline_ms=j.deadline_ms,
                                 depends_on=j.depends_on, route=j.route)
        for end, job_id, attempt in sorted(r for r in running if r[0] <= t):
            if fails(job_id, attempt, seed):
                if policy == "fifo":
                    waiting_fifo.append(job_id)  # FIFO retries at once
                else:
                    scheduler.status(job_id, "failed", attempt=attempt, ts_ms=end)
            else:
                succeeded[job_id] = end
                if policy != "fifo":
                    scheduler.status(job_id, "succeeded", attempt=attempt, ts_ms=end)
        running = [r for r in running if r[0] > t]
        if policy == "fifo":
            ready = [i for i in waiting_fifo if all(d in succeeded for d in by_id[i].depends_on)]
            waiting_fifo = [i for i in waiting_fifo if i not in set(ready)]
            started = [(i, attempts.get(i, 0) + 1) for i in ready]
        else:
            started = [(r.job_id, r.attempt) for r in scheduler.advance(t)]
        for job_id, attempt in started:
            j = by_id[job_id]
            attempts[job_id] = attempt
            if (job_id, attempt) in releases:
                run.released_twice += 1
            releases[(job_id, attempt)] = t
            if any(d not in succeeded or succeeded[d] > t for d in j.depends_on):
                run.released_before_deps += 1
            run.cost_usd += j.base_cost_usd * prices.mean_price(j.route, t, j.duration_ms)
            running.append((t + j.duration_ms, job_id, attempt))
        t += tick_ms
    for j in jobs:
        if j.job_id not in succeeded:
            run.unfinished += 1
        elif succeeded[j.job_id] > j.deadline_ms:
            run.missed_deadlines += 1
    return run
