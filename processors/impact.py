"""Change impact: what a new workflow version will do, projected from recent traffic and learned route estimates.

``observe`` summarises a workflow's recent requests (rate, privacy levels,
per route: share, cost per request, latencies, tokens). ``project`` moves that
traffic onto the new version's routes: a route that stays keeps its share
(re-priced by the new version's prices), the share of a removed route goes to
the remaining routes by the published policies' probabilities (else evenly),
and a route without history is costed from the mean tokens and its prices with
its declared prior latency. It reports cost per hour, latency p95, expected
quality, capacity utilisation, budget fit and privacy coverage for the live
and the new version, and ``risks`` lists what crosses the caller's thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from schemas.records import (
    PRIVACY_RANK, PrivacyLevel, RequestEvent, RouteSpec, RoutingPolicy, Status, WorkflowDefinition,
)

_MAX_SAMPLES = 5000


@dataclass
class RouteTraffic:
    """One route's recent requests."""

    n: int = 0
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class TrafficMix:
    """A workflow's recent traffic: rate, privacy levels, routes."""

    n: int = 0
    first_ms: int = 0
    last_ms: int = 0
    privacy: dict[PrivacyLevel, int] = field(default_factory=dict)
    routes: dict[str, RouteTraffic] = field(default_factory=dict)

    @property
    def rate_rps(self) -> float:
        return self.n / max((self.last_ms - self.first_ms) / 1000.0, 1.0)


@dataclass(frozen=True, slots=True)
class Projection:
    """What a version does with the recent traffic."""

    version: str
    cost_per_hour_usd: float
    latency_p95_ms: float
    quality: float
    shares: Mapping[str, float]
    utilisation: Mapping[str, float]
    budget_usd_per_hour: float | None
    privacy_coverage: float
    unserved_privacy: tuple[str, ...]

    @property
    def is_within_budget(self) -> bool:
        return self.budget_usd_per_hour is None or self.cost_per_hour_usd <= self.budget_usd_per_hour


def observe(requests: Iterable[RequestEvent], workflow: str) -> TrafficMix:
    """Summarise ``workflow``'s requests (others are skipped)."""
    mix = TrafficMix()
    for r in requests:
        if r.workflow != workflow:
            continue
        mix.first_ms = r.ts_ms if not mix.n else min(mix.first_ms, r.ts_ms)
        mix.last_ms = max(mix.last_ms, r.ts_ms)
        mix.n += 1
        mix.privacy[r.context.privacy_level] = mix.privacy.get(r.context.privacy_level, 0) + 1
        route = mix.routes.setdefault(r.route, RouteTraffic())
        route.n += 1
        route.cost_usd += r.cost_usd
        route.tokens_in += r.tokens_in
        route.tokens_out += r.tokens_out
        if r.status is Status.OK and len(route.latencies_ms) < _MAX_SAMPLES:
            route.latencies_ms.append(r.latency_ms)
    return mix


def _policy_weights(policies: Sequence[RoutingPolicy]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for policy in policies:
        for p in policy.routes:
            weights[p.route] = weights.get(p.route, 0.0) + p.probability
    return weights


def _quality(policies: Sequence[RoutingPolicy], spec: RouteSpec) -> float:
    found = [(p.expected_reward, p.n) for policy in policies for p in policy.routes if p.route == spec.name and p.n]
    if not found:
        return spec.prior_quality
    return sum(q * n for q, n in found) / sum(n for _, n in found)


def _p95(samples: list[tuple[float, float]]) -> float:
    """The 95th percentile of weighted samples ``(value, weight)``."""
    if not samples:
        return 0.0
    samples.sort()
    total, seen = sum(w for _, w in samples), 0.0
    for value, weight in samples:
        seen += weight
        if seen >= 0.95 * total:
            return value
    return samples[-1][0]


def project(mix: TrafficMix, definition: WorkflowDefinition, live: WorkflowDefinition | None,
            policies: Sequence[RoutingPolicy] = ()) -> Projection:
    """Project the recent traffic onto ``definition`` (``live``: the version that served it, for prices).

    >>> from schemas.records import RequestContext
    >>> a = RouteSpec("a", "p", False, PrivacyLevel.INTERNAL, 0.001, 0.002, capacity_rps=10)
    >>> b = RouteSpec("b", "p", False, PrivacyLevel.PUBLIC, 0.002, 0.004, prior_latency_ms=500.0)
    >>> reqs = [RequestEvent(f"r{i}", i * 1000, "wf", "v1", "a", RequestContext("t", "x"), 800.0, 0.004, 1000, 1000,
    ...                      Status.OK) for i in range(100)]
    >>> live = WorkflowDefinition("wf", "v1", 0, (a,))
    >>> new = WorkflowDefinition("wf", "v2", 0, (b,))
    >>> p = project(observe(reqs, "wf"), new, live)
    >>> round(p.cost_per_hour_usd, 2), p.latency_p95_ms, p.privacy_coverage
    (21.82, 500.0, 1.0)
    """
    specs = {r.name: r for r in definition.routes}
    live_specs = {r.name: r for r in (live.routes if live else ())}
    total = max(sum(t.n for t in mix.routes.values()), 1)
    shares = {name: t.n / total for name, t in mix.routes.items() if name in specs}
    orphaned = 1.0 - sum(shares.values()) if mix.routes else 1.0
    if orphaned > 1e-9 and specs:
        weights = {name: w for name, w in _policy_weights(policies).items() if name in specs}
        if not sum(weights.values()):
            weights = {name: 1.0 for name in specs}
        norm = sum(weights.values())
        for name, w in weights.items():
            shares[name] = shares.get(name, 0.0) + orphaned * w / norm
    mean_in = sum(t.tokens_in for t in mix.routes.values()) / total
    mean_out = sum(t.tokens_out for t in mix.routes.values()) / total
    rate, cost_per_request, samples, quality, utilisation = mix.rate_rps, 0.0, [], 0.0, {}
    for name, share in shares.items():
        spec, seen, before = specs[name], mix.routes.get(name), live_specs.get(name)
        if seen is not None and seen.n and before is not None:
            ratio_in = spec.cost_per_1k_in_usd / before.cost_per_1k_in_usd if before.cost_per_1k_in_usd else 1.0
            ratio_out = spec.cost_per_1k_out_usd / before.cost_per_1k_out_usd if before.cost_per_1k_out_usd else 1.0
            per_request = seen.cost_usd / seen.n * (ratio_in + ratio_out) / 2
        else:
            per_request = (mean_in * spec.cost_per_1k_in_usd + mean_out * spec.cost_per_1k_out_usd) / 1000.0
        cost_per_request += share * per_request
        lat = seen.latencies_ms if seen is not None and seen.latencies_ms else [spec.prior_latency_ms]
        samples += [(x, share / len(lat)) for x in lat]
        quality += share * _quality(policies, spec)
        if spec.capacity_rps:
            utilisation[name] = share * rate / spec.capacity_rps
    top = max((PRIVACY_RANK[r.max_privacy] for r in definition.routes), default=-1)
    unserved = tuple(sorted(str(level) for level, n in mix.privacy.items() if PRIVACY_RANK[level] > top and n))
    covered = sum(n for level, n in mix.privacy.items() if PRIVACY_RANK[level] <= top)
    return Projection(definition.version, cost_per_request * rate * 3600.0, _p95(samples), quality, shares,
                      utilisation, definition.budget_usd_per_hour, covered / max(mix.n, 1) if mix.n else 1.0, unserved)


def risks(before: Projection | None, after: Projection, *, max_cost_increase: float = 0.2,
          max_p95_increase: float = 0.2, max_quality_drop: float = 0.05, max_utilisation: float = 0.9) -> list[str]:
    """What in ``after`` crosses a threshold (relative to ``before`` where one is given)."""
    found: list[str] = []
    if before is not None and before.cost_per_hour_usd > 0 and \
            after.cost_per_hour_usd > before.cost_per_hour_usd * (1 + max_cost_increase):
        found.append(f"cost/hour {before.cost_per_hour_usd:.2f} -> {after.cost_per_hour_usd:.2f} USD "
                     f"(> +{max_cost_increase:.0%})")
    if before is not None and before.latency_p95_ms > 0 and \
            after.latency_p95_ms > before.latency_p95_ms * (1 + max_p95_increase):
        found.append(f"latency p95 {before.latency_p95_ms:.0f} -> {after.latency_p95_ms:.0f} ms (> +{max_p95_increase:.0%})")
    if before is not None and after.quality < before.quality - max_quality_drop:
        found.append(f"expected quality {before.quality:.3f} -> {after.quality:.3f} (> -{max_quality_drop})")
    found += [f"route {name} at {u:.0%} of its capacity (> {max_utilisation:.0%})"
              for name, u in sorted(after.utilisation.items()) if u > max_utilisation]
    if not after.is_within_budget:
        found.append(f"cost/hour {after.cost_per_hour_usd:.2f} USD over the budget {after.budget_usd_per_hour:.2f}")
    if after.unserved_privacy:
        found.append(f"privacy levels {', '.join(after.unserved_privacy)} of recent requests served by no route "
                     f"({1 - after.privacy_coverage:.1%} of requests)")
    return found
