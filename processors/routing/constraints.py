"""Hard constraints of routing: privacy, capability, open circuits, and the capacity a route may be planned for.

These are never traded against reward: a route that breaks one gets
probability 0 and no decision, whatever its estimate.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from schemas.records import PRIVACY_RANK, PrivacyLevel, RouteSpec


def exclusion(route: RouteSpec, privacy: PrivacyLevel | None, task: str | None) -> str | None:
    """Why ``route`` may not serve a request of this privacy level and task (None when it may).

    >>> from tests.factories import make_route
    >>> exclusion(make_route(max_privacy=PrivacyLevel.INTERNAL), PrivacyLevel.RESTRICTED, "chat")
    'privacy: restricted above max internal'
    >>> exclusion(make_route(capabilities=("chat",)), PrivacyLevel.PUBLIC, "code")
    'capability: cannot do code'
    >>> exclusion(make_route(), PrivacyLevel.PUBLIC, "code") is None
    True
    """
    if privacy is not None and PRIVACY_RANK[PrivacyLevel(privacy)] > PRIVACY_RANK[route.max_privacy]:
        return f"privacy: {privacy} above max {route.max_privacy}"
    if task is not None and route.capabilities and task not in route.capabilities:
        return f"capability: cannot do {task}"
    return None


class Circuits:
    """Open circuits per route (fed from remediation commands); an open route gets nothing until it closes.

    >>> c = Circuits(); c.open("gpt-large", until_ms=1_000)
    >>> c.is_open("gpt-large", 999), c.is_open("gpt-large", 1_000)
    (True, False)
    """

    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    def open(self, route: str, until_ms: int) -> None:
        """Open ``route``'s circuit until ``until_ms`` (event time)."""
        self._until[route] = until_ms

    def close(self, route: str) -> None:
        """Close ``route``'s circuit now."""
        self._until.pop(route, None)

    def is_open(self, route: str, now_ms: int) -> bool:
        """Whether ``route``'s circuit is open at ``now_ms``."""
        until = self._until.get(route)
        return until is not None and until > now_ms

    def until(self, route: str) -> int:
        """When ``route``'s circuit closes (0 when it is not open)."""
        return self._until.get(route, 0)

    def to_dict(self) -> dict[str, int]:
        """Plain JSON-able state."""
        return dict(self._until)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Circuits":
        """Inverse of ``to_dict``."""
        c = cls()
        c._until = {k: int(v) for k, v in state.items()}
        return c


class LoadMeter:
    """Requests per second planned onto each route, as an event-time decayed count (bias-corrected at start).

    A route whose planned rate reaches ``headroom * capacity_rps`` takes no
    more decisions until it drains: capacity is planned, not discovered by 429s.

    >>> m = LoadMeter(half_life_ms=5_000)
    >>> for t in range(0, 10_000, 100): m.add("r", t)
    >>> round(m.rate("r", 10_000), 1)   # 10 a second; the last 100 ms are still empty
    9.9
    """

    def __init__(self, half_life_ms: float = 5_000.0) -> None:
        self.half_life_ms = half_life_ms
        self._count: dict[str, list[float]] = {}  # route -> [decayed count, ts_ms, first_ts_ms]

    def add(self, route: str, ts_ms: int) -> None:
        """Count one decision for ``route`` at ``ts_ms``."""
        entry = self._count.get(route)
        if entry is None:
            self._count[route] = [1.0, float(ts_ms), float(ts_ms)]
            return
        if ts_ms > entry[1]:
            entry[0] *= 0.5 ** ((ts_ms - entry[1]) / self.half_life_ms)
            entry[1] = float(ts_ms)
        entry[0] += 1.0

    def rate(self, route: str, now_ms: int) -> float:
        """Decisions per second for ``route`` around ``now_ms``."""
        entry = self._count.get(route)
        if entry is None:
            return 0.0
        age_ms = max(now_ms - entry[1], 0.0)
        count = entry[0] * 0.5 ** (age_ms / self.half_life_ms)
        # A decayed count over a span shorter than the memory under-reads the rate: correct it.
        span_ms = max(now_ms - entry[2], 1.0)
        coverage = 1.0 - 0.5 ** (span_ms / self.half_life_ms)
        return float(count * math.log(2) / (self.half_life_ms / 1000.0) / coverage)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain JSON-able state."""
        return {k: list(v) for k, v in self._count.items()}

    @classmethod
    def from_dict(cls, half_life_ms: float, state: dict[str, Any]) -> "LoadMeter":
        """Inverse of ``to_dict``."""
        m = cls(half_life_ms)
        m._count = {k: [float(x) for x in v] for k, v in state.items()}
        return m


def step_capacity_prices(prices: dict[str, float], rates: Mapping[str, float], specs: Mapping[str, RouteSpec],
                         target: float, step: float, dt_s: float) -> None:
    """One dual-ascent step of each route's capacity price (reward per request), in place.

    A route planned above ``target`` utilisation gets dearer, one below it
    cheaper (never below 0): its capacity then goes to the segments that lose
    most without it, the way the oracle hands out capacity.

    >>> prices = {}
    >>> step_capacity_prices(prices, {"a": 9.0}, {"a": RouteSpec("a", "p", False, PrivacyLevel.PUBLIC, 0, 0, capacity_rps=10)},
    ...                      target=0.6, step=0.02, dt_s=1.0)
    >>> round(prices["a"], 4)
    0.006
    """
    for name, spec in specs.items():
        if spec.capacity_rps:
            excess = rates.get(name, 0.0) / spec.capacity_rps - target
            prices[name] = max(0.0, prices.get(name, 0.0) + step * excess * dt_s)
