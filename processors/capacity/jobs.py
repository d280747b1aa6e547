"""Cost-aware batch job release: dependencies, priorities, deadlines, cheap hours, cron, headroom, retries.

``JobScheduler`` holds the durable queue. It is fed job submissions and job
status events (``observe``), the capacity headroom of routes (``set_headroom``),
and asked in event time which jobs to release now (``advance``). A job is released:

- only once every job it depends on has succeeded;
- at the cheapest start in its window (``PriceSchedule``: a price multiplier per
  hour of the day per route or provider, in a time zone), the window running from
  now to the latest start that still meets its deadline — and the deadlines of
  the jobs waiting for it (critical path) — with room for one failed attempt and a
  safety slack (jobs without a deadline wait at most ``default_window_ms``);
- when the route has capacity headroom and fewer than ``max_running_per_route``
  jobs running — unless it is at its latest start, where the deadline wins;
- higher priority first, then earliest latest-start;
- at most once per attempt: a failed attempt is retried after an exponential
  backoff with seeded jitter, up to ``max_attempts``.

Recurring jobs carry a cron expression and a time zone: each occurrence becomes
a job of its own (``<job_id>@<occurrence ms>``) whose deadline is the next occurrence.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from croniter import croniter

HOUR_MS = 3_600_000
WAITING, RELEASED, SUCCEEDED, FAILED, DEAD = "waiting", "released", "succeeded", "failed", "dead"


class PriceSchedule:
    """Hourly price multipliers per route or provider, in local time of ``tz``.

    >>> p = PriceSchedule({"batch-api": [0.5] * 7 + [1.0] * 15 + [0.5] * 2}, tz="UTC")
    >>> p.price("batch-api", 3 * HOUR_MS), p.price("batch-api", 12 * HOUR_MS), p.price("other", 0)
    (0.5, 1.0, 1.0)
    """

    def __init__(self, hourly: Mapping[str, Iterable[float]] | None = None, tz: str = "UTC") -> None:
        self.hourly = {name: tuple(float(x) for x in values) for name, values in (hourly or {}).items()}
        for name, values in self.hourly.items():
            if len(values) != 24:
                raise ValueError(f"price schedule of {name!r} has {len(values)} hours, not 24")
        self.tz = ZoneInfo(tz)
        self._hours: dict[int, int] = {}

    def local_hour(self, ts_ms: int) -> int:
        """The hour of the day at ``ts_ms`` in the schedule's zone (cached per quarter hour: zones differ by those)."""
        quarter = ts_ms // 900_000
        hour = self._hours.get(quarter)
        if hour is None:
            if len(self._hours) > 100_000:
                self._hours.clear()
            hour = self._hours[quarter] = datetime.fromtimestamp(quarter * 900, self.tz).hour
        return hour

    def price(self, route: str | None, ts_ms: int) -> float:
        """The multiplier in force at ``ts_ms`` for ``route`` (1.0 for a route without a schedule)."""
        values = self.hourly.get(route or "") or self.hourly.get("*")
        if values is None:
            return 1.0
        return values[self.local_hour(ts_ms)]

    def mean_price(self, route: str | None, start_ms: int, duration_ms: int) -> float:
        """The time-weighted mean multiplier over ``[start, start + duration)``."""
        if duration_ms <= 0:
            return self.price(route, start_ms)
        total, t, end = 0.0, start_ms, start_ms + duration_ms
        while t < end:
            step = min(end, t - t % 900_000 + 900_000) - t
            total += self.price(route, t) * step
            t += step
        return total / duration_ms


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Knobs of ``JobScheduler``."""

    max_running_per_route: int = 4
    min_headroom: float = 0.1
    slack_ms: int = 600_000
    default_window_ms: int = 24 * HOUR_MS
    retry_base_ms: int = 60_000
    retry_max_ms: int = 3_600_000
    max_attempts: int = 3
    seed: int = 0
    #: Room kept before a deadline for this many failed attempts (each: the job's duration and a backoff).
    retry_reserve: int = 1


@dataclass
class Job:
    """One job in the queue (plain data: its ``asdict`` goes to the changelog)."""

    job_id: str
    workflow: str
    priority: int
    cost_usd: float
    duration_ms: int
    submitted_ms: int
    deadline_ms: int | None = None
    depends_on: list[str] = field(default_factory=list)
    route: str | None = None
    status: str = WAITING
    attempt: int = 0
    not_before_ms: int = 0
    released_ms: int | None = None
    cron: str | None = None
    tz: str | None = None
    next_run_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """A decision to start one attempt of a job now, and why."""

    job_id: str
    ts_ms: int
    attempt: int
    workflow: str
    route: str | None
    price: float
    latest_start_ms: int
    reason: str


class JobScheduler:
    """The durable job queue and its release policy (see the module docstring).

    >>> s = JobScheduler(PriceSchedule({"*": [0.5] * 6 + [1.0] * 18}))
    >>> s.submit("a", ts_ms=HOUR_MS, workflow="etl", priority=1, cost_usd=10, duration_s=600, deadline_ms=8 * HOUR_MS)
    >>> s.submit("b", ts_ms=HOUR_MS, workflow="etl", priority=1, cost_usd=5, duration_s=600, depends_on=("a",))
    >>> [r.job_id for r in s.advance(HOUR_MS)]  # 01:00 is cheap: a goes, b waits for a
    ['a']
    >>> s.status("a", "succeeded", attempt=1, ts_ms=HOUR_MS + 600_000)
    >>> [r.job_id for r in s.advance(HOUR_MS + 600_000)]
    ['b']
    """

    def __init__(self, prices: PriceSchedule | None = None, config: SchedulerConfig = SchedulerConfig()) -> None:
        self.prices, self.config = prices or PriceSchedule(), config
        self.jobs: dict[str, Job] = {}
        self.headroom: dict[str, float] = {}
        self.changed: set[str] = set()
        #: Who waits for whom: a job's latest finish is its dependents' latest start (critical path).
        self.dependents: dict[str, list[str]] = {}
        self._latest: dict[str, int] = {}

    # ------------------------------------------------------------------ input

    def submit(self, job_id: str, *, ts_ms: int, workflow: str, priority: int, cost_usd: float, duration_s: float,
               deadline_ms: int | None = None, depends_on: Iterable[str] = (), route: str | None = None,
               cron: str | None = None, tz: str | None = None) -> None:
        """Queue a job (a repeated submission of a known job is ignored: the queue is idempotent)."""
        if job_id in self.jobs:
            return
        job = Job(job_id, workflow, int(priority), float(cost_usd), int(duration_s * 1000), ts_ms, deadline_ms,
                  list(depends_on), route, cron=cron, tz=tz)
        if cron:
            job.status = "recurring"
            job.next_run_ms = next_occurrence(cron, tz or "UTC", ts_ms - 1)
        self._index(job)
        self.changed.add(job_id)

    def _index(self, job: Job) -> None:
        self.jobs[job.job_id] = job
        for dep in job.depends_on:
            self.dependents.setdefault(dep, []).append(job.job_id)

    def status(self, job_id: str, status: str, *, attempt: int | None, ts_ms: int) -> None:
        """A job reports how an attempt ended (``succeeded`` or ``failed``); stale attempts are ignored."""
        job = self.jobs.get(job_id)
        if job is None or job.status != RELEASED or (attempt is not None and attempt != job.attempt):
            return
        if status == SUCCEEDED:
            job.status = SUCCEEDED
        elif status == FAILED:
            if job.attempt >= self.config.max_attempts:
                job.status = DEAD
            else:
                job.status, job.not_before_ms = WAITING, ts_ms + self.backoff_ms(job_id, job.attempt)
        else:
            return
        self.changed.add(job_id)

    def set_headroom(self, route: str, free_share: float) -> None:
        """The share of a route's capacity that is free (from its forecast); 1.0 for a route never heard of."""
        self.headroom[route] = free_share

    def backoff_ms(self, job_id: str, attempt: int) -> int:
        """Exponential backoff with "equal jitter" from a seeded keyed hash (reproducible, no shared RNG)."""
        cfg = self.config
        cap = min(cfg.retry_base_ms * 2 ** max(attempt - 1, 0), cfg.retry_max_ms)
        digest = hashlib.blake2b(f"{cfg.seed}|{job_id}|{attempt}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2**64
        return int(cap / 2 + u * cap / 2)

    # ------------------------------------------------------------------ decisions

    def latest_start_ms(self, job: Job, now_ms: int) -> int:
        """The last start that still lets this job and every job waiting for it meet their deadlines,
        with the slack each (without a deadline: the end of the default window)."""
        found = self._latest.get(job.job_id)
        if found is not None:
            return found
        self._latest[job.job_id] = 2**62  # a dependency cycle ends here instead of recursing forever
        if job.deadline_ms is None:
            finish = job.submitted_ms + self.config.default_window_ms + job.duration_ms
        else:
            finish = job.deadline_ms
        for child in self.dependents.get(job.job_id, ()):
            waiting = self.jobs.get(child)
            if waiting is not None and waiting.status in (WAITING, RELEASED):
                finish = min(finish, self.latest_start_ms(waiting, now_ms))
        cfg = self.config
        retries = min(cfg.retry_reserve, max(cfg.max_attempts - job.attempt - 1, 0))
        latest = finish - job.duration_ms * (1 + retries) - retries * cfg.retry_base_ms - cfg.slack_ms
        self._latest[job.job_id] = latest
        return latest

    def best_start_ms(self, job: Job, now_ms: int, latest_ms: int) -> tuple[int, float]:
        """The cheapest start in ``[now, latest]`` (now or an hour boundary) and its mean price."""
        best, best_price = now_ms, self.prices.mean_price(job.route, now_ms, job.duration_ms)
        t = now_ms - now_ms % HOUR_MS + HOUR_MS
        while t <= latest_ms:
            price = self.prices.mean_price(job.route, t, job.duration_ms)
            if price < best_price - 1e-12:
                best, best_price = t, price
            t += HOUR_MS
        return best, best_price

    def advance(self, now_ms: int) -> list[Release]:
        """The jobs to release at ``now_ms``, in release order."""
        self._spawn_recurring(now_ms)
        self._latest.clear()
        running: dict[str, int] = {}
        for job in self.jobs.values():
            # A job that never reports counts as running for twice its estimate, not forever.
            if job.status == RELEASED and (job.released_ms or 0) + 2 * job.duration_ms > now_ms:
                running[job.route or ""] = running.get(job.route or "", 0) + 1
        ready = [j for j in self.jobs.values() if j.status == WAITING and j.not_before_ms <= now_ms and self._deps_done(j)]
        ready.sort(key=lambda j: (-j.priority, self.latest_start_ms(j, now_ms), j.job_id))
        out: list[Release] = []
        for job in ready:
            latest = self.latest_start_ms(job, now_ms)
            is_due = now_ms >= latest
            best, _ = self.best_start_ms(job, now_ms, latest)
            if best > now_ms and not is_due:
                continue  # a cheaper hour is still ahead and reachable
            route = job.route or ""
            busy = running.get(route, 0) >= self.config.max_running_per_route
            if not is_due and (busy or self.headroom.get(route, 1.0) < self.config.min_headroom):
                continue  # throttled by capacity; the deadline overrides
            running[route] = running.get(route, 0) + 1
            job.status, job.attempt, job.released_ms = RELEASED, job.attempt + 1, now_ms
            self.changed.add(job.job_id)
            why = "deadline" if is_due else "cheapest window"
            out.append(Release(job.job_id, now_ms, job.attempt, job.workflow, job.route,
                               self.prices.mean_price(job.route, now_ms, job.duration_ms), latest, why))
        return out

    def _deps_done(self, job: Job) -> bool:
        for dep in job.depends_on:
            found = self.jobs.get(dep)
            if found is None or found.status != SUCCEEDED:
                if found is not None and found.status == DEAD and job.status == WAITING:
                    job.status = DEAD  # a prerequisite gave up: so does this job (never released)
                    self.changed.add(job.job_id)
                return False
        return True

    def _spawn_recurring(self, now_ms: int) -> None:
        for template in [j for j in self.jobs.values() if j.cron and j.next_run_ms is not None]:
            assert template.next_run_ms is not None and template.cron is not None
            while template.next_run_ms <= now_ms:
                run_ms = template.next_run_ms
                template.next_run_ms = next_occurrence(template.cron, template.tz or "UTC", run_ms)
                self.submit(f"{template.job_id}@{run_ms}", ts_ms=run_ms, workflow=template.workflow,
                            priority=template.priority, cost_usd=template.cost_usd,
                            duration_s=template.duration_ms / 1000, deadline_ms=template.next_run_ms,
                            depends_on=template.depends_on, route=template.route)
                self.changed.add(template.job_id)

    # ------------------------------------------------------------------ state

    def drain_changes(self) -> list[tuple[str, dict[str, Any]]]:
        """The jobs changed since the last call, as plain dicts (the changelog records)."""
        out = [(job_id, asdict(self.jobs[job_id])) for job_id in sorted(self.changed)]
        self.changed.clear()
        return out

    def load(self, data: dict[str, Any]) -> None:
        self._index(Job(**data))


def next_occurrence(cron: str, tz: str, after_ms: int) -> int:
    """The first time strictly after ``after_ms`` that ``cron`` names, read in time zone ``tz`` (DST-aware).

    >>> next_occurrence("0 2 * * *", "Europe/Paris", 0)  # 02:00 in Paris on 1970-01-01 is 01:00 UTC
    3600000
    """
    start = datetime.fromtimestamp(after_ms / 1000, timezone.utc).astimezone(ZoneInfo(tz))
    nxt: datetime = croniter(cron, start).get_next(datetime)
    return int(math.floor(nxt.timestamp() * 1000))
