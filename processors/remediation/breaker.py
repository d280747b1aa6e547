"""Circuit breakers per route in event time: closed → open → half-open (probes) → closed, with flap damping.

A breaker counts requests and failures (errors, timeouts) of its route in
one-second buckets over a sliding window, plus critical latency anomalies.
It *proposes* transitions; the planner commits them once rate limits and the
all-routes-open rule agree, so a vetoed transition leaves the state as it was.

* closed → open: at least ``min_requests`` in the window (a quiet route is not
  opened on two errors) and a failure rate of at least ``failure_rate_to_open``,
  or ``latency_anomalies_to_open`` latency anomalies in the window. The rate is
  read over ``window_ms`` and over the last ``fast_window_ms``: a busy route that
  starts failing opens in seconds, before its healthy past dilutes the rate.
  A route the router has already starved (a few requests a second) still opens
  when the failure rate is above the threshold with confidence: the Wilson lower
  bound (``confidence_z``) over at least ``min_confident_requests`` (5 of 5 failing).
* open → half-open: after ``cooldown_ms``, growing by half after each failed
  probe up to ``max_cooldown_ms`` (few commands in a long outage, yet a recovered
  route is probed within ``max_cooldown_ms``); a small ``probe_share`` of
  traffic is let through.
* half-open → closed when ``min_probe_requests`` probes fail at most
  ``failure_rate_to_close`` (hysteresis: well below the open threshold);
  → open again otherwise.
* Flap damping: full opens and closes count against ``max_transitions_per_hour``;
  a close that would leave no room for the next open is held back, so a
  flapping route stays out of service instead of bouncing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Mapping

from processors.remediation.limits import SlidingLog

HOUR_MS = 3_600_000


class BreakerState(StrEnum):
    """Where a route's circuit is (``open``: no traffic)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def wilson_lower(failures: int, n: int, z: float) -> float:
    """Lower bound of the Wilson score interval of a failure rate (0 without data).

    >>> round(wilson_lower(5, 5, 2.0), 3), round(wilson_lower(4, 5, 2.0), 3), wilson_lower(0, 0, 2.0)
    (0.556, 0.369, 0.0)
    """
    if n <= 0:
        return 0.0
    p, z2 = failures / n, z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Thresholds of one route's breaker; ``from_params`` reads a workflow's ``open_circuit`` spec."""

    window_ms: int = 10_000
    fast_window_ms: int = 3_000
    bucket_ms: int = 1_000
    min_requests: int = 20
    failure_rate_to_open: float = 0.5
    latency_anomalies_to_open: int = 3
    cooldown_ms: int = 30_000
    max_cooldown_ms: int = 45_000
    probe_share: float = 0.05
    min_probe_requests: int = 10
    failure_rate_to_close: float = 0.2
    max_transitions_per_hour: int = 6
    min_confident_requests: int = 5
    confidence_z: float = 2.0

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "BreakerConfig":
        """Read ``window_s``, ``min_requests``, ``error_rate``, ``latency_anomalies``, ``cooldown_s``,
        ``max_cooldown_s``, ``probe_share``, ``min_probe_requests``, ``close_error_rate``, ``max_flaps_per_hour``,
        ``min_confident_requests`` (default: 5, or ``min_requests`` when that is declared), ``confidence_z``.

        >>> BreakerConfig.from_params({"error_rate": "0.3", "cooldown_s": "10"}).cooldown_ms
        10000
        """
        d = cls()

        def get(name: str, default: float) -> float:
            try:
                return float(params.get(name, default))
            except ValueError:  # a badly declared parameter falls back rather than stopping remediation
                return default

        return cls(
            window_ms=int(get("window_s", d.window_ms / 1000) * 1000),
            fast_window_ms=int(get("fast_window_s", d.fast_window_ms / 1000) * 1000), bucket_ms=d.bucket_ms,
            min_requests=int(get("min_requests", d.min_requests)),
            failure_rate_to_open=get("error_rate", d.failure_rate_to_open),
            latency_anomalies_to_open=int(get("latency_anomalies", d.latency_anomalies_to_open)),
            cooldown_ms=int(get("cooldown_s", d.cooldown_ms / 1000) * 1000),
            max_cooldown_ms=int(get("max_cooldown_s", d.max_cooldown_ms / 1000) * 1000),
            probe_share=get("probe_share", d.probe_share),
            min_probe_requests=int(get("min_probe_requests", d.min_probe_requests)),
            failure_rate_to_close=get("close_error_rate", d.failure_rate_to_close),
            max_transitions_per_hour=int(get("max_flaps_per_hour", d.max_transitions_per_hour)),
            # A declared min_requests is the least evidence its author accepts, for either rule.
            min_confident_requests=int(get("min_confident_requests", get("min_requests", d.min_confident_requests)
                                           if "min_requests" in params else d.min_confident_requests)),
            confidence_z=get("confidence_z", d.confidence_z),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """A proposed (or committed) change of a route's circuit, with its evidence."""

    route: str
    source: BreakerState
    target: BreakerState
    ts_ms: int
    reason: str
    evidence: Mapping[str, Any]


class CircuitBreaker:
    """The breaker of one route.

    >>> b = CircuitBreaker("r", BreakerConfig(min_requests=20))
    >>> for t in range(2):
    ...     b.observe(1_000 + t, is_failure=True)
    >>> b.propose(2_000) is None          # two errors on a quiet route
    True
    >>> for t in range(30):
    ...     b.observe(1_000 + t, is_failure=True)
    >>> b.propose(2_000).target.value
    'open'
    """

    def __init__(self, route: str, config: BreakerConfig) -> None:
        self.route, self.config = route, config
        self.state = BreakerState.CLOSED
        self.since_ms = 0
        self.episode_start_ms: int | None = None
        self.episode_step = 0
        self.failed_probes = 0
        self._buckets: dict[int, list[int]] = {}  # bucket -> [requests, failures]
        self._anomalies: list[int] = []
        self._probe = [0, 0]  # requests, failures since half-open
        self._flaps = SlidingLog(config.max_transitions_per_hour, HOUR_MS)

    # ------------------------------------------------------------------ inputs
    def observe(self, ts_ms: int, is_failure: bool) -> None:
        """Count one finished request of the route (``is_failure``: error or timeout)."""
        bucket = self._buckets.setdefault(ts_ms // self.config.bucket_ms, [0, 0])
        bucket[0] += 1
        bucket[1] += int(is_failure)
        if self.state is BreakerState.HALF_OPEN and ts_ms >= self.since_ms:
            self._probe[0] += 1
            self._probe[1] += int(is_failure)

    def observe_latency_anomaly(self, ts_ms: int) -> None:
        """Count one latency anomaly of the route."""
        self._anomalies.append(ts_ms)

    # ---------------------------------------------------------------- decisions
    def window(self, now_ms: int) -> tuple[int, int, int]:
        """Requests, failures and latency anomalies in the window ending at ``now_ms``."""
        low = (now_ms - self.config.window_ms) // self.config.bucket_ms
        for old in [b for b in self._buckets if b <= low]:
            del self._buckets[old]
        self._anomalies = [t for t in self._anomalies if t > now_ms - self.config.window_ms]
        requests = sum(b[0] for b in self._buckets.values())
        failures = sum(b[1] for b in self._buckets.values())
        return requests, failures, len(self._anomalies)

    @property
    def cooldown_ms(self) -> int:
        """How long the circuit stays open before the next probe."""
        return int(min(self.config.cooldown_ms * 1.5 ** self.failed_probes, self.config.max_cooldown_ms))

    def failure_rate(self, now_ms: int) -> float:
        """Failure rate in the window (0 when quiet): how bad the route looks now."""
        requests, failures, _ = self.window(now_ms)
        return failures / requests if requests else 0.0

    def propose(self, now_ms: int) -> Transition | None:
        """The transition the evidence calls for at ``now_ms``, or ``None`` (state unchanged)."""
        c = self.config
        requests, failures, anomalies = self.window(now_ms)
        rate = failures / requests if requests else 0.0
        evidence = {"requests": requests, "failures": failures, "failure_rate": round(rate, 4),
                    "latency_anomalies": anomalies, "window_s": c.window_ms / 1000}
        if self.state is BreakerState.CLOSED:
            fast_requests, fast_failures = self._recent(now_ms)
            fast_rate = fast_failures / fast_requests if fast_requests else 0.0
            if fast_requests >= c.min_requests and fast_rate >= c.failure_rate_to_open:
                evidence = {**evidence, "fast_requests": fast_requests, "fast_failures": fast_failures}
                return self._to(BreakerState.OPEN, now_ms, f"failure rate {fast_rate:.0%} over the last "
                                f"{fast_requests} requests ({c.fast_window_ms / 1000:g} s)", evidence)
            if requests >= c.min_confident_requests and requests < c.min_requests:
                lower = wilson_lower(failures, requests, c.confidence_z)
                if lower >= c.failure_rate_to_open:
                    return self._to(BreakerState.OPEN, now_ms, f"failure rate {rate:.0%} over {requests} requests "
                                    f"(at least {lower:.0%} with z={c.confidence_z:g})", evidence)
            if requests < c.min_requests:
                return None
            if rate >= c.failure_rate_to_open:
                return self._to(BreakerState.OPEN, now_ms, f"failure rate {rate:.0%} over {requests} requests", evidence)
            if anomalies >= c.latency_anomalies_to_open:
                return self._to(BreakerState.OPEN, now_ms, f"{anomalies} latency anomalies", evidence)
            return None
        if self.state is BreakerState.OPEN:
            if now_ms - self.since_ms < self.cooldown_ms:
                return None
            if self._flaps.count(self.route, now_ms) + 2 > c.max_transitions_per_hour:
                return None  # flap damping: hold the route out until a close and a reopen both fit
            return self._to(BreakerState.HALF_OPEN, now_ms, f"probing with {c.probe_share:.0%} of traffic", evidence)
        probes, probe_failures = self._probe
        if probes < c.min_probe_requests:
            return None
        probe_rate = probe_failures / probes
        evidence = {**evidence, "probes": probes, "probe_failures": probe_failures}
        if probe_rate <= c.failure_rate_to_close and anomalies < c.latency_anomalies_to_open:
            if self._flaps.count(self.route, now_ms) + 2 > c.max_transitions_per_hour:
                return None  # flap damping: closing now would leave no room to reopen
            return self._to(BreakerState.CLOSED, now_ms, f"probes recovered ({probe_rate:.0%} failures)", evidence)
        return self._to(BreakerState.OPEN, now_ms, f"probes still failing ({probe_rate:.0%})", evidence)

    def _recent(self, now_ms: int) -> tuple[int, int]:
        low = (now_ms - self.config.fast_window_ms) // self.config.bucket_ms
        recent = [b for k, b in self._buckets.items() if k > low]
        return sum(b[0] for b in recent), sum(b[1] for b in recent)

    def _to(self, target: BreakerState, now_ms: int, reason: str, evidence: Mapping[str, Any]) -> Transition:
        return Transition(self.route, self.state, target, now_ms, reason, evidence)

    def commit(self, transition: Transition) -> None:
        """Apply a transition the planner accepted."""
        if transition.source is BreakerState.CLOSED:
            self.episode_start_ms, self.episode_step = transition.ts_ms, 0
        else:
            self.episode_step += 1
        if (transition.source, transition.target) in _COUNTED:
            self._flaps.record(self.route, transition.ts_ms)
        if (transition.source, transition.target) == (BreakerState.HALF_OPEN, BreakerState.OPEN):
            self.failed_probes += 1
        if transition.target is BreakerState.CLOSED:
            self.failed_probes = 0
            # Hysteresis: a closed route starts from fresh evidence, not from its outage.
            self._buckets.clear()
            self._anomalies.clear()
        self.state, self.since_ms, self._probe = transition.target, transition.ts_ms, [0, 0]

    @property
    def transitions_last_hour(self) -> int:
        """Full opens and closes counted by flap damping (call after ``window``/``propose``)."""
        return sum(len(v) for v in self._flaps.snapshot().values())

    # ---------------------------------------------------------------- snapshots
    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"state": self.state.value, "since_ms": self.since_ms, "episode_start_ms": self.episode_start_ms,
                "episode_step": self.episode_step, "failed_probes": self.failed_probes, "buckets": {str(k): v for k, v in self._buckets.items()},
                "anomalies": list(self._anomalies), "probe": list(self._probe), "flaps": self._flaps.snapshot(),
                "config": {f.name: getattr(self.config, f.name) for f in fields(self.config)}}

    @classmethod
    def restore(cls, route: str, state: Mapping[str, Any]) -> "CircuitBreaker":
        """A breaker from what ``snapshot`` returned."""
        breaker = cls(route, BreakerConfig(**state["config"]))
        breaker.state, breaker.since_ms = BreakerState(state["state"]), int(state["since_ms"])
        breaker.episode_start_ms, breaker.episode_step = state["episode_start_ms"], int(state["episode_step"])
        breaker._buckets = {int(k): list(v) for k, v in state["buckets"].items()}
        breaker._anomalies, breaker._probe = list(state["anomalies"]), list(state["probe"])
        breaker.failed_probes = int(state["failed_probes"])
        breaker._flaps.restore(state["flaps"])
        return breaker


_COUNTED = {(BreakerState.CLOSED, BreakerState.OPEN), (BreakerState.HALF_OPEN, BreakerState.CLOSED)}
