"""Per-route online statistics that forget by event time: decayed means, their uncertainty, the reward estimate.

Why not ``river.stats.EWMean`` or ``river.utils.Rolling``: both forget per
observation, so a route that gets 1 % of the traffic would remember 100 times
longer than one that gets all of it. Routing must forget by *event time*
(a half-life in seconds), so that a starved route's estimate grows uncertain
and is explored again, and so that late observations (quality, known when a
feedback window closes) count less than fresh ones. ``DecayedMean`` is that
estimator: West's weighted incremental mean and variance, with every weight
halved per half-life of event time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from schemas.records import Objective

#: Effective weight below which a mean is treated as unknown (its std saturates).
_MIN_WEIGHT = 1e-3


class DecayedMean:
    """Mean and variance of a series, every weight halved each ``half_life_ms`` of event time.

    Observations older than the newest one seen are weighted by their age,
    so late arrivals count for less instead of rewinding the clock.

    >>> m = DecayedMean(60_000, prior_mean=1.0, prior_std=0.5, prior_weight=2.0, ts_ms=0)
    >>> m.add(2.0, 0); round(m.mean, 4), round(m.weight, 4)
    (1.3333, 3.0)
    >>> m.decay_to(60_000); round(m.weight, 4)
    1.5
    >>> m.add(2.0, 0); round(m.weight, 4)   # one minute late: half a weight
    2.0
    """

    __slots__ = ("half_life_ms", "weight", "mean", "m2", "ts_ms")

    def __init__(self, half_life_ms: float, prior_mean: float = 0.0, prior_std: float = 1.0,
                 prior_weight: float = 0.0, ts_ms: int = 0) -> None:
        self.half_life_ms = half_life_ms
        self.weight = prior_weight
        self.mean = prior_mean
        self.m2 = prior_weight * prior_std * prior_std
        self.ts_ms = ts_ms

    def decay_to(self, ts_ms: int) -> None:
        """Age the statistics to ``ts_ms`` (no-op for an older time)."""
        if ts_ms > self.ts_ms:
            factor = 0.5 ** ((ts_ms - self.ts_ms) / self.half_life_ms)
            self.weight *= factor
            self.m2 *= factor
            self.ts_ms = ts_ms

    def add(self, x: float, ts_ms: int, weight: float = 1.0) -> None:
        """Fold one observation made at ``ts_ms`` in."""
        if ts_ms < self.ts_ms:
            weight *= 0.5 ** ((self.ts_ms - ts_ms) / self.half_life_ms)
        else:
            self.decay_to(ts_ms)
        self.weight += weight
        delta = x - self.mean
        self.mean += weight / self.weight * delta
        self.m2 += weight * delta * (x - self.mean)

    @property
    def variance(self) -> float:
        """Weighted variance of the observations (0 with no weight)."""
        return self.m2 / self.weight if self.weight > _MIN_WEIGHT else 0.0

    def std_of_mean(self, floor_std: float) -> float:
        """Standard error of the mean; grows without bound as the weight decays away."""
        var = max(self.variance, floor_std * floor_std)
        return math.sqrt(var / max(self.weight, _MIN_WEIGHT))

    def shrink(self, keep: float) -> None:
        """Keep only a fraction of the evidence (a drift event): the mean stays, the confidence goes."""
        self.weight *= keep
        self.m2 *= keep

    def to_dict(self) -> list[float]:
        """Plain JSON-able state."""
        return [self.half_life_ms, self.weight, self.mean, self.m2, self.ts_ms]

    @classmethod
    def from_dict(cls, state: list[Any]) -> "DecayedMean":
        """Inverse of ``to_dict``."""
        m = cls(float(state[0]))
        m.weight, m.mean, m.m2, m.ts_ms = float(state[1]), float(state[2]), float(state[3]), int(state[4])
        return m


@dataclass(frozen=True, slots=True)
class RewardEstimate:
    """A route's expected reward under an objective, with its standard error and effective sample size."""

    mean: float
    std: float
    n_eff: float
    quality: float
    latency_ms: float
    cost_usd: float
    error: float


def estimate_reward(quality: DecayedMean, latency: DecayedMean, cost: DecayedMean, error: DecayedMean,
                    objective: Objective, cost_scale: float = 1.0) -> RewardEstimate:
    """Plug the four means into ``processors.reward``'s formula; propagate their standard errors (delta method).

    ``cost_scale`` multiplies the cost weight: the budget pacer's lever.

    >>> q = DecayedMean(1e9, 0.8, 0.2, 100.0); lat = DecayedMean(1e9, 1000.0, 300.0, 100.0)
    >>> c = DecayedMean(1e9, 0.004, 0.001, 100.0); e = DecayedMean(1e9, 0.0, 0.1, 100.0)
    >>> round(estimate_reward(q, lat, c, e, Objective()).mean, 6)
    0.575
    """
    o = objective
    err = min(max(error.mean, 0.0), 1.0)
    q = min(max(quality.mean, 0.0), 1.0)
    wc = o.cost_weight * cost_scale
    mean = (o.quality_weight * q * (1.0 - err) - o.latency_weight * latency.mean / o.latency_ref_ms
            - wc * cost.mean / o.cost_ref_usd - o.error_weight * err)
    var = ((o.quality_weight * (1.0 - err) * quality.std_of_mean(0.05)) ** 2
           + (o.latency_weight / o.latency_ref_ms * latency.std_of_mean(1.0)) ** 2
           + (wc / o.cost_ref_usd * cost.std_of_mean(1e-6)) ** 2
           + ((o.error_weight + o.quality_weight * q) * error.std_of_mean(0.02)) ** 2)
    return RewardEstimate(mean, math.sqrt(var), cost.weight, q, latency.mean, cost.mean, err)
