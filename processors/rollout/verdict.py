"""Canary against baseline, concurrently: per-metric anytime-valid comparisons and a Kayenta-style verdict.

Each version's requests since the canary started are summarised in a
``VersionSample`` (quality from final outcomes with feedback; error rate,
cost and a latency histogram from provisional ones, so every request counts
once). ``judge`` compares the two on four metrics, each oriented so that a
positive ``delta`` means "the canary is worse":

* quality: ``baseline mean - canary mean`` (margin: ``max_regression`` x baseline mean);
* error rate: ``canary rate - baseline rate`` (absolute margin);
* latency p95, a quantile test: the share of canary requests slower than the
  baseline's p95 minus the baseline's own share (0.05 by construction);
* cost per request: ``canary mean - baseline mean`` (relative margin).

The test of each is the normal-mixture confidence sequence of
``processors.experiments.sequential`` (valid however often it is looked at),
at ``alpha / 4`` per metric so the four together keep a false-failure rate of
``alpha`` over the whole rollout. A metric *fails* when the sequence lies
wholly above 0 and the estimate is material (``>= fail_fraction x margin``),
*passes* when it lies wholly below the margin (non-inferiority), is
*marginal* otherwise, and *pending* below ``min_samples`` per version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping

from processors.experiments.sequential import Moments, cs_radius
from schemas.records import Outcome, Status

_LOG_BASE = math.log(1.05)
_MAX_BUCKET = 400


class Judgement(StrEnum):
    """A metric's (or the whole canary's) verdict, Kayenta's words plus ``pending``."""

    PASS = "pass"
    MARGINAL = "marginal"
    FAIL = "fail"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class VerdictConfig:
    """Margins and guards of the comparison.

    Attributes:
        alpha: False-failure rate of the whole rollout (split evenly over the four metrics).
        min_samples: Values each version needs on a metric before it is judged.
        error_margin: Tolerated error-rate increase, absolute (0.01 = one point).
        latency_margin: Tolerated increase of the share of requests above the baseline's p95.
        cost_margin: Tolerated cost-per-request increase, relative.
        fail_fraction: A failure also needs an estimate of at least this share of the margin.
    """

    alpha: float = 0.05
    min_samples: int = 200
    error_margin: float = 0.01
    latency_margin: float = 0.05
    cost_margin: float = 0.10
    fail_fraction: float = 0.25


class LatencyHistogram:
    """Counts of latencies in log buckets 5 % wide (1 ms to ~80 h), JSON-able.

    >>> h = LatencyHistogram()
    >>> for ms in range(1, 101):
    ...     h.add(float(ms))
    >>> 90 <= h.quantile(0.95) <= 100, h.share_above(h.quantile_bucket(0.95)) <= 0.05
    (True, True)
    """

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.n = sum(self.counts.values())

    @staticmethod
    def bucket(latency_ms: float) -> int:
        """Index of the bucket holding ``latency_ms``."""
        if latency_ms <= 1.0:
            return 0
        return min(int(math.log(latency_ms) / _LOG_BASE), _MAX_BUCKET)

    def add(self, latency_ms: float) -> None:
        """Count one latency."""
        b = self.bucket(latency_ms)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.n += 1

    def quantile_bucket(self, q: float) -> int:
        """The bucket holding the ``q`` quantile (-1 when empty)."""
        seen, target = 0, q * self.n
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= target:
                return b
        return -1

    def quantile(self, q: float) -> float:
        """Upper edge of the bucket holding the ``q`` quantile, in ms (0 when empty)."""
        b = self.quantile_bucket(q)
        return 0.0 if b < 0 else math.exp((b + 1) * _LOG_BASE)

    def share_above(self, bucket: int) -> float:
        """Share of latencies in buckets above ``bucket``."""
        if not self.n:
            return 0.0
        return sum(c for b, c in self.counts.items() if b > bucket) / self.n

    def to_dict(self) -> dict[str, int]:
        return {str(b): c for b, c in self.counts.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        return cls({int(b): int(c) for b, c in data.items()})


@dataclass
class VersionSample:
    """What one version's requests did since the canary started."""

    quality: Moments = field(default_factory=Moments)
    errors: Moments = field(default_factory=Moments)
    cost: Moments = field(default_factory=Moments)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def observe(self, outcome: Outcome) -> None:
        """Fold one outcome in: a provisional one counts its request, a final one its quality."""
        if outcome.is_final:
            if outcome.quality is not None:
                self.quality.add(outcome.quality)
            return
        if outcome.status is Status.REJECTED:  # never served: says nothing about the version
            return
        self.errors.add(0.0 if outcome.status is Status.OK else 1.0)
        self.cost.add(outcome.cost_usd)
        if outcome.status is Status.OK:
            self.latency.add(outcome.latency_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"quality": self.quality.to_dict(), "errors": self.errors.to_dict(), "cost": self.cost.to_dict(),
                "latency": self.latency.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionSample:
        return cls(Moments.from_dict(dict(data["quality"])), Moments.from_dict(dict(data["errors"])),
                   Moments.from_dict(dict(data["cost"])), LatencyHistogram.from_dict(data["latency"]))


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    """One metric's comparison: values, the worse-is-positive difference, its confidence sequence, judgement."""

    metric: str
    judgement: Judgement
    n_baseline: int
    n_canary: int
    baseline: float
    canary: float
    delta: float
    cs_low: float
    cs_high: float
    margin: float

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "judgement": str(self.judgement), "n_baseline": self.n_baseline,
                "n_canary": self.n_canary, "baseline": _r(self.baseline), "canary": _r(self.canary),
                "delta": _r(self.delta), "cs_low": _r(self.cs_low), "cs_high": _r(self.cs_high),
                "margin": _r(self.margin)}


def _judge_difference(metric: str, n_b: int, n_c: int, base: float, canary: float, delta: float, variance: float,
                      margin: float, config: VerdictConfig) -> MetricVerdict:
    if min(n_b, n_c) < config.min_samples:
        return MetricVerdict(metric, Judgement.PENDING, n_b, n_c, base, canary, delta, -math.inf, math.inf, margin)
    margin = max(margin, 1e-9)
    radius = cs_radius(max(variance, 1e-18), margin * margin, config.alpha / 4)
    low, high = delta - radius, delta + radius
    if low > 0 and delta >= config.fail_fraction * margin:
        judgement = Judgement.FAIL
    elif high < margin:
        judgement = Judgement.PASS
    else:
        judgement = Judgement.MARGINAL
    return MetricVerdict(metric, judgement, n_b, n_c, base, canary, delta, low, high, margin)


def _rate_variance(m: Moments) -> float:
    # A pseudo-count keeps a rare event's variance above zero while none has been seen yet.
    p = (m.mean * m.n + 1.0) / (m.n + 2.0)
    return p * (1.0 - p) / max(m.n, 1)


def judge(baseline: VersionSample, canary: VersionSample, max_regression: float,
          config: VerdictConfig = VerdictConfig()) -> list[MetricVerdict]:
    """Compare the canary with the baseline on quality, error rate, latency p95 and cost per request.

    >>> from processors.experiments.sequential import Moments
    >>> b, c = VersionSample(), VersionSample()
    >>> b.errors, c.errors = Moments(5000, 0.01, 0.0099 * 4999), Moments(1000, 0.10, 0.09 * 999)
    >>> [(v.metric, str(v.judgement)) for v in judge(b, c, 0.05)]
    [('quality', 'pending'), ('error_rate', 'fail'), ('latency_p95', 'pending'), ('cost', 'pending')]
    """
    q_b, q_c = baseline.quality, canary.quality
    quality = _judge_difference("quality", q_b.n, q_c.n, q_b.mean, q_c.mean, q_b.mean - q_c.mean,
                                q_b.variance / max(q_b.n, 1) + q_c.variance / max(q_c.n, 1),
                                max_regression * abs(q_b.mean), config)
    e_b, e_c = baseline.errors, canary.errors
    errors = _judge_difference("error_rate", e_b.n, e_c.n, e_b.mean, e_c.mean, e_c.mean - e_b.mean,
                               _rate_variance(e_b) + _rate_variance(e_c), config.error_margin, config)
    h_b, h_c = baseline.latency, canary.latency
    p95 = h_b.quantile_bucket(0.95)
    p_b, p_c = h_b.share_above(p95), h_c.share_above(p95)
    latency = _judge_difference(
        "latency_p95", h_b.n, h_c.n, h_b.quantile(0.95), h_c.quantile(0.95), p_c - p_b,
        _rate_variance(Moments(h_b.n, p_b)) + _rate_variance(Moments(h_c.n, p_c)), config.latency_margin, config)
    c_b, c_c = baseline.cost, canary.cost
    cost = _judge_difference("cost", c_b.n, c_c.n, c_b.mean, c_c.mean, c_c.mean - c_b.mean,
                             c_b.variance / max(c_b.n, 1) + c_c.variance / max(c_c.n, 1),
                             config.cost_margin * abs(c_b.mean), config)
    return [quality, errors, latency, cost]


def overall(verdicts: list[MetricVerdict]) -> Judgement:
    """Any failure fails; all passing passes; any pending metric keeps the whole pending; else marginal.

    >>> v = lambda j: MetricVerdict("m", j, 1, 1, 0, 0, 0, 0, 0, 1)
    >>> overall([v(Judgement.PASS), v(Judgement.FAIL)]), overall([v(Judgement.PASS), v(Judgement.PENDING)])
    (<Judgement.FAIL: 'fail'>, <Judgement.PENDING: 'pending'>)
    """
    kinds = {v.judgement for v in verdicts}
    if Judgement.FAIL in kinds:
        return Judgement.FAIL
    if kinds == {Judgement.PASS}:
        return Judgement.PASS
    if Judgement.PENDING in kinds:
        return Judgement.PENDING
    return Judgement.MARGINAL


def _r(x: float) -> float:
    return round(x, 6) if math.isfinite(x) else x
