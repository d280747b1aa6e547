"""Routing state per workflow (its definition, pooled route latency/errors, budget) and per segment (quality, cost, shares).

Where each statistic lives follows what it depends on: latency and failures
are properties of a route under its current load, shared by every segment
that uses it (so an outage seen in one segment moves them all at once);
quality and cost depend on the task and the tenant, so they are learned per
(workflow, segment, route).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from processors.routing.budget import BudgetPacer, HardBudget
from processors.routing.estimates import DecayedMean, RewardEstimate
from processors.routing.shift import QualityShift
from schemas.records import RouteSpec, WorkflowDefinition
from schemas.serde import json_codec

_DEFINITION = json_codec(WorkflowDefinition)

#: Prior spread, per observation, relative to the prior value (latency, cost).
_PRIOR_REL_STD = 0.5
#: Prior error rate and its per-observation spread.
_PRIOR_ERROR, _PRIOR_ERROR_STD = 0.02, 0.14
#: Prior spread of a single request's quality.
_PRIOR_QUALITY_STD = 0.25


def typical_cost_usd(route: RouteSpec) -> float:
    """A price-based prior for one request's cost (1k tokens in, 300 out) before any is observed.

    >>> from tests.factories import make_route
    >>> round(typical_cost_usd(make_route(cost_per_1k_in_usd=0.003, cost_per_1k_out_usd=0.006)), 9)
    0.0048
    """
    return route.cost_per_1k_in_usd + 0.3 * route.cost_per_1k_out_usd


def parse_segment(segment: str) -> dict[str, str]:
    """The ``key=value`` pairs of a segment name.

    >>> parse_segment("task=code|privacy_level=restricted")
    {'task': 'code', 'privacy_level': 'restricted'}
    >>> parse_segment("all")
    {}
    """
    pairs = (part.split("=", 1) for part in segment.split("|") if "=" in part)
    return {k: v for k, v in pairs}


@dataclass(slots=True)
class RouteLoad:
    """One route's latency and failure statistics, pooled across the workflow's segments."""

    latency: DecayedMean
    error: DecayedMean

    @classmethod
    def prior(cls, route: RouteSpec, half_life_ms: float, weight: float, ts_ms: int) -> "RouteLoad":
        """Cold-start statistics from the route's declared priors."""
        lat = route.prior_latency_ms
        return cls(DecayedMean(half_life_ms, lat, _PRIOR_REL_STD * lat, weight, ts_ms),
                   DecayedMean(half_life_ms, _PRIOR_ERROR, _PRIOR_ERROR_STD, weight, ts_ms))


@dataclass(slots=True)
class SegmentRoute:
    """One route's quality and cost statistics within one segment."""

    quality: DecayedMean
    cost: DecayedMean
    shift: QualityShift = field(default_factory=QualityShift)

    @classmethod
    def prior(cls, route: RouteSpec, half_life_ms: float, quality_half_life_ms: float, weight: float,
              ts_ms: int) -> "SegmentRoute":
        """Cold-start statistics from the route's declared priors (cost from its prices)."""
        cost = typical_cost_usd(route)
        return cls(DecayedMean(quality_half_life_ms, route.prior_quality, _PRIOR_QUALITY_STD, weight, ts_ms),
                   DecayedMean(half_life_ms, cost, _PRIOR_REL_STD * cost, 1.0, ts_ms))


@dataclass(slots=True)
class WorkflowState:
    """A workflow's definition, route index, pooled route statistics and budget pacer."""

    definition: WorkflowDefinition
    loads: dict[str, RouteLoad]
    pacer: BudgetPacer | None = None
    prices: dict[str, float] = field(default_factory=dict)
    priced_ms: int = -1
    specs: dict[str, RouteSpec] = field(default_factory=dict)
    #: Pooled quality-shift detectors per route, and the shifts found: route -> [ts_ms, shift, n, segment].
    shifts: dict[str, QualityShift] = field(default_factory=dict)
    shift_notes: dict[str, list[Any]] = field(default_factory=dict)
    hard: HardBudget | None = None

    def __post_init__(self) -> None:
        self.specs = {r.name: r for r in self.definition.routes}

    @property
    def cost_scale(self) -> float:
        """The budget pacer's multiplier on the cost weight (1 without a budget)."""
        return self.pacer.cost_scale if self.pacer is not None else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"definition": _DEFINITION.to_dict(self.definition),
                "loads": {k: [v.latency.to_dict(), v.error.to_dict()] for k, v in self.loads.items()},
                "pacer": self.pacer.to_dict() if self.pacer is not None else None,
                "prices": self.prices, "priced_ms": self.priced_ms,
                "shifts": {k: v.to_dict() for k, v in self.shifts.items()}, "shift_notes": self.shift_notes,
                "hard": self.hard.to_dict() if self.hard is not None else None}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "WorkflowState":
        """Inverse of ``to_dict``."""
        loads = {k: RouteLoad(DecayedMean.from_dict(v[0]), DecayedMean.from_dict(v[1])) for k, v in state["loads"].items()}
        pacer = BudgetPacer.from_dict(state["pacer"]) if state["pacer"] is not None else None
        wf = cls(_DEFINITION.from_dict(state["definition"]), loads, pacer, dict(state["prices"]), int(state["priced_ms"]))
        wf.shifts = {k: QualityShift.from_dict(v) for k, v in state.get("shifts", {}).items()}
        wf.shift_notes = {k: list(v) for k, v in state.get("shift_notes", {}).items()}
        wf.hard = HardBudget.from_dict(state["hard"]) if state.get("hard") is not None else None
        return wf


@dataclass(slots=True)
class SegmentState:
    """One (workflow, segment): per-route statistics, the current shares, and what was last published."""

    workflow: str
    segment: str
    routes: dict[str, SegmentRoute]
    privacy: str | None = None
    task: str | None = None
    shares: dict[str, float] = field(default_factory=dict)
    estimates: dict[str, RewardEstimate] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    ranking: tuple[str, ...] = ()
    computed_ms: int = -1
    version: int = 0
    is_dirty: bool = True
    published_shares: dict[str, float] | None = None
    published_excluded: dict[str, str] = field(default_factory=dict)
    published_ms: int = -1
    eligible_cache: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def create(cls, workflow: str, segment: str) -> "SegmentState":
        """An empty segment; privacy and task are read from the name when the workflow segments by them."""
        pairs = parse_segment(segment)
        return cls(workflow, segment, {}, pairs.get("privacy_level"), pairs.get("task"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (caches are rebuilt on the next refresh)."""
        return {"workflow": self.workflow, "segment": self.segment,
                "routes": {k: [v.quality.to_dict(), v.cost.to_dict(), v.shift.to_dict()] for k, v in self.routes.items()},
                "shares": self.shares, "excluded": self.excluded, "computed_ms": self.computed_ms,
                "version": self.version, "is_dirty": self.is_dirty, "reasons": list(self.reasons), "ranking": list(self.ranking),
                "published_shares": self.published_shares,
                "published_excluded": self.published_excluded, "published_ms": self.published_ms}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "SegmentState":
        """Inverse of ``to_dict``; the next decision refreshes the shares from the restored statistics."""
        seg = cls.create(state["workflow"], state["segment"])
        seg.routes = {k: SegmentRoute(DecayedMean.from_dict(v[0]), DecayedMean.from_dict(v[1]),
                                      QualityShift.from_dict(v[2]) if len(v) > 2 else QualityShift())
                      for k, v in state["routes"].items()}
        seg.shares, seg.excluded = dict(state["shares"]), dict(state["excluded"])
        seg.computed_ms, seg.version = int(state["computed_ms"]), int(state["version"])
        seg.is_dirty, seg.reasons = bool(state["is_dirty"]), tuple(state["reasons"])
        seg.ranking = tuple(state["ranking"])
        seg.published_shares = state["published_shares"]
        seg.published_excluded = dict(state["published_excluded"])
        seg.published_ms = int(state["published_ms"])
        return seg


def rescale_costs(segments: Iterable[SegmentState], old_specs: Mapping[str, RouteSpec],
                  definition: WorkflowDefinition) -> None:
    """Rescale the learned costs of every route whose price changed: a repricing needs no relearning."""
    new = {r.name: typical_cost_usd(r) for r in definition.routes}
    ratios = {name: new[name] / typical_cost_usd(old) for name, old in old_specs.items()
              if name in new and typical_cost_usd(old) > 0 and new[name] != typical_cost_usd(old)}
    for seg in segments:
        if seg.workflow != definition.workflow:
            continue
        for name, ratio in ratios.items():
            if name in seg.routes:
                cost = seg.routes[name].cost
                cost.mean *= ratio
                cost.m2 *= ratio * ratio


def explain(exploration: str, estimates: Mapping[str, RewardEstimate], is_new: list[bool], max_new_share: float,
            cost_scale: float, prices: Mapping[str, float]) -> tuple[str, ...]:
    """The reasons a policy gives: method, best route, routes under exploration, pacing, capacity prices."""
    reasons = [f"{exploration} on reward posteriors"]
    if estimates:
        best = max(estimates, key=lambda n: estimates[n].mean)
        reasons.append(f"best expected reward: {best} {estimates[best].mean:.3f}")
    reasons.extend(f"exploring new route {n} (share <= {max_new_share})"
                   for n, new in zip(estimates, is_new) if new and not all(is_new))
    if cost_scale > 1.0:
        reasons.append(f"budget pacing: cost weight x{cost_scale:.2f}")
    reasons.extend(f"capacity price of {n}: {p:.3f}" for n, p in prices.items() if p > 0.0 and n in estimates)
    return tuple(reasons)
