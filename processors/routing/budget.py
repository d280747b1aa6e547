"""Spend pacing: when a workflow spends faster than its hourly budget, the cost weight of its objective grows.

The pacer watches spend per workflow as an event-time decayed rate (bias
corrected while its memory is still filling) and runs a multiplicative
controller on the cost weight: above ``target`` of the budget it raises the
multiplier, below it lets it fall back towards 1. The multiplier moves at
most ``gain`` e-folds per minute, so a single expensive request cannot swing
routing, yet a sustained overrun is corrected within minutes.
"""

from __future__ import annotations

import math
from typing import Any


_HOUR_MS = 3_600_000


class BudgetPacer:
    """Cost-weight multiplier of one workflow, driven by its spend rate against ``budget_usd_per_hour``.

    Args:
        budget_usd_per_hour: The workflow's budget.
        target: Fraction of the budget to aim at (the rest absorbs noise).
        half_life_ms: Memory of the spend rate.
        gain: Largest change of log(multiplier) per minute of event time.
        max_scale: Upper bound of the multiplier.

    >>> p = BudgetPacer(36.0, half_life_ms=60_000)
    >>> for t in range(0, 600_000, 1_000): p.add(0.02, t)   # $72/h, twice the budget
    >>> p.spend_per_hour(600_000) > 60, p.cost_scale > 2
    (True, True)
    """

    def __init__(self, budget_usd_per_hour: float, target: float = 0.95, half_life_ms: float = 60_000.0,
                 gain: float = 1.0, max_scale: float = 50.0, horizon_ms: float = 300_000.0) -> None:
        self.budget_usd_per_hour, self.target = budget_usd_per_hour, target
        self.half_life_ms, self.gain, self.max_scale = half_life_ms, gain, max_scale
        self.horizon_ms = horizon_ms
        self.cost_scale = 1.0
        self._spent = 0.0
        self._hour = -1
        self._hour_spent = 0.0
        self._ts_ms: int | None = None
        self._first_ms: int | None = None

    def add(self, cost_usd: float, ts_ms: int) -> None:
        """Count one request's cost at ``ts_ms``; step the controller by the event time elapsed."""
        if self._ts_ms is None or self._first_ms is None:
            self._ts_ms = self._first_ms = ts_ms
        elif ts_ms > self._ts_ms:
            dt_ms = ts_ms - self._ts_ms
            self._spent *= 0.5 ** (dt_ms / self.half_life_ms)
            self._ts_ms = ts_ms
            self._step(dt_ms)
        hour = ts_ms // _HOUR_MS
        if hour != self._hour:
            self._hour, self._hour_spent = hour, 0.0
        self._spent += cost_usd
        self._hour_spent += cost_usd

    def spend_per_hour(self, now_ms: int) -> float:
        """Estimated spend rate in USD per hour at ``now_ms``."""
        if self._ts_ms is None or self._first_ms is None:
            return 0.0
        spent = self._spent * 0.5 ** (max(now_ms - self._ts_ms, 0) / self.half_life_ms)
        coverage = 1.0 - 0.5 ** (max(now_ms - self._first_ms, 1_000) / self.half_life_ms)
        return float(spent * math.log(2) / (self.half_life_ms / _HOUR_MS) / coverage)

    def allowed_per_hour(self, now_ms: int) -> float:
        """The spend rate that brings this hour's spend back to ``target`` of its pro-rata budget within ``horizon_ms``.

        Pacing on the hour's spend so far (not only the recent rate) pays back an early
        overrun, so the hour ends within budget wherever it is cut.
        """
        is_this_hour = now_ms // _HOUR_MS == self._hour
        elapsed_ms = now_ms - self._hour * _HOUR_MS if is_this_hour else 0
        spent = self._hour_spent if is_this_hour else 0.0
        budget_by = self.target * self.budget_usd_per_hour * (elapsed_ms + self.horizon_ms) / _HOUR_MS
        return max(0.0, budget_by - spent) / (self.horizon_ms / _HOUR_MS)

    def _step(self, dt_ms: int) -> None:
        assert self._ts_ms is not None
        ratio = self.spend_per_hour(self._ts_ms) / max(self.allowed_per_hour(self._ts_ms), 1e-9)
        # log-ratio error, clipped: a 2x overrun and a 10x overrun push equally hard.
        error = max(-1.0, min(1.0, math.log(max(ratio, 1e-9))))
        step = self.gain * error * dt_ms / 60_000.0
        self.cost_scale = min(self.max_scale, max(1.0, self.cost_scale * math.exp(step)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"budget": self.budget_usd_per_hour, "target": self.target, "half_life_ms": self.half_life_ms,
                "gain": self.gain, "max_scale": self.max_scale, "scale": self.cost_scale, "spent": self._spent,
                "ts_ms": self._ts_ms, "first_ms": self._first_ms, "horizon_ms": self.horizon_ms, "hour": self._hour,
                "hour_spent": self._hour_spent}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "BudgetPacer":
        """Inverse of ``to_dict``."""
        p = cls(float(state["budget"]), float(state["target"]), float(state["half_life_ms"]), float(state["gain"]),
                float(state["max_scale"]), float(state.get("horizon_ms", 300_000.0)))
        p.cost_scale, p._spent = float(state["scale"]), float(state["spent"])
        p._ts_ms, p._first_ms = state["ts_ms"], state["first_ms"]
        p._hour, p._hour_spent = int(state.get("hour", -1)), float(state.get("hour_spent", 0.0))
        return p


class HardBudget:
    """``budget_mode: hard``: the hour's spend, with what is in flight, held under its pro-rata budget.

    Every decision reserves its expected cost (``reserve``); the outcome's real
    cost replaces the reservation (``settle``). ``allowance`` is what may still
    be committed now without the hour's spend passing ``budget * elapsed / 1 h``
    at any moment, so wherever the hour is cut it is within budget. The router
    degrades to the cheapest allowed route when the chosen one does not fit,
    and refuses when not even that fits. Reservations never settled (a lost
    request) expire after ``reservation_ttl_ms``.

    >>> h = HardBudget(36.0)                     # $0.01 per second of the hour
    >>> round(h.allowance(10_000), 4)            # 10 s into the hour
    0.1
    >>> h.reserve("r1", 10_000, 0.08); round(h.allowance(10_000), 4)
    0.02
    >>> h.settle("r1", 10_000, 0.05); round(h.allowance(10_000), 4)
    0.05
    """

    def __init__(self, budget_usd_per_hour: float, reservation_ttl_ms: int = 120_000) -> None:
        self.budget_usd_per_hour = budget_usd_per_hour
        self.reservation_ttl_ms = reservation_ttl_ms
        self.hour = -1
        self.spent = 0.0
        self.reserved: dict[str, list[float]] = {}  # request_id -> [ts_ms, cost], insertion-ordered
        self.reserved_sum = 0.0

    def _roll(self, now_ms: int) -> None:
        hour = now_ms // _HOUR_MS
        if hour > self.hour:
            self.hour, self.spent = hour, 0.0
            start = hour * _HOUR_MS
            self.reserved = {k: v for k, v in self.reserved.items() if v[0] >= start}
            self.reserved_sum = sum(v[1] for v in self.reserved.values())
        while self.reserved:
            oldest = next(iter(self.reserved))
            if self.reserved[oldest][0] >= now_ms - self.reservation_ttl_ms:
                break
            self.reserved_sum -= self.reserved.pop(oldest)[1]

    def allowance(self, now_ms: int) -> float:
        """USD that may still be committed at ``now_ms`` within the hour's pro-rata budget."""
        self._roll(now_ms)
        elapsed = now_ms - self.hour * _HOUR_MS
        return self.budget_usd_per_hour * elapsed / _HOUR_MS - self.spent - max(self.reserved_sum, 0.0)

    def reserve(self, request_id: str, now_ms: int, cost_usd: float) -> None:
        """Hold ``cost_usd`` for a request just routed."""
        self._roll(now_ms)
        self.reserved[request_id] = [float(now_ms), cost_usd]
        self.reserved_sum += cost_usd

    def settle(self, request_id: str, ts_ms: int, cost_usd: float) -> None:
        """Replace a request's reservation by its real cost (counted in the hour of its request)."""
        held = self.reserved.pop(request_id, None)
        if held is not None:
            self.reserved_sum -= held[1]
        if ts_ms // _HOUR_MS >= self.hour:
            self._roll(ts_ms)
            self.spent += cost_usd

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state."""
        return {"budget": self.budget_usd_per_hour, "ttl_ms": self.reservation_ttl_ms, "hour": self.hour,
                "spent": self.spent, "reserved": self.reserved}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "HardBudget":
        """Inverse of ``to_dict``."""
        h = cls(float(state["budget"]), int(state["ttl_ms"]))
        h.hour, h.spent = int(state["hour"]), float(state["spent"])
        h.reserved = {k: [float(v[0]), float(v[1])] for k, v in state["reserved"].items()}
        h.reserved_sum = sum(v[1] for v in h.reserved.values())
        return h
