"""Online load forecasts: per-bucket aggregation by event time and a seasonal forecaster per entity.

An entity is what is forecast: ``route:<name>|rps``, ``route:<name>|tokens_s``,
``workflow:<name>|rps`` … or ``metric:<source>/<name>`` (a gauge, averaged per
bucket). Counts are additive, so a stage can aggregate each input partition
into per-bucket partial sums (``BucketAggregator``), send them keyed by entity,
and a second stage adds the partial sums of one entity (``EntitySeries``) and
forecasts the completed buckets (``SeasonalForecaster``).

The forecaster is multiplicative seasonal with a short-term level:

    forecast(t + h) = level(t) * day_profile(time of day of t + h) * week_factor(weekday of t + h)

``day_profile`` has 5-minute slots (a daily surge keeps its edges), read with linear interpolation and
learnt across days; ``level`` follows the last minutes' ratio of actual to
profile, so a day busier than usual is followed within minutes. Until a day
has been seen the forecast is the level alone (the recent mean). Prediction
intervals come from the quantiles of the recent forecast-to-actual ratios at
each horizon: no distribution is assumed.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any, Iterator

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
#: Horizons published with every forecast, in buckets (1-minute buckets: 5, 15, 30 and 60 minutes).
DEFAULT_HORIZONS = (5, 15, 30, 60)
_REFRESH = 15


@dataclass(frozen=True, slots=True)
class Point:
    """A forecast at one horizon: point value and a prediction interval (``lower`` ≤ ``value`` ≤ ``upper``)."""

    horizon_ms: int
    value: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class ForecasterConfig:
    """Parameters of ``SeasonalForecaster``: bucket, slots, smoothing, interval quantiles."""

    bucket_ms: int = 60_000
    slot_ms: int = 300_000
    level_alpha: float = 0.12
    profile_alpha_min: float = 0.03
    week_alpha: float = 0.004
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    interval: tuple[float, float] = (0.05, 0.95)
    residuals: int = 120
    is_weekly: bool = True


class SeasonalForecaster:
    """Forecast one series of bucket values with daily (and weekly) seasonality, online.

    ``observe(bucket_start_ms, value)`` takes buckets in order (gaps allowed) and
    returns the forecasts from the end of that bucket.

    >>> f = SeasonalForecaster(ForecasterConfig(horizons=(15,)))
    >>> for m in range(3 * 1440):  # three days of a daily cycle
    ...     points = f.observe(m * 60_000, 100.0 + 50.0 * math.sin(2 * math.pi * m / 1440))
    >>> round(points[0].value)  # 15 minutes after midnight of day 4: sin(2π·16/1440) ≈ 0.07
    103
    >>> points[0].lower <= points[0].value <= points[0].upper  # a noiseless series: the interval may be a point
    True
    """

    def __init__(self, config: ForecasterConfig = ForecasterConfig()) -> None:
        self.config = config
        n_slots = DAY_MS // config.slot_ms
        # Compact arrays, not lists of floats: an entity costs a few kB, so 10 k entities fit in tens of MB.
        self.profile = array("d", [0.0]) * n_slots
        self.profile_n = array("q", [0]) * n_slots
        self.week = [1.0] * 7
        self.level = 1.0
        self.recent = 0.0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        #: Forecasts waiting for their actual, per horizon: a ring of (target bucket number, value).
        self.pending_at = {h: array("q", [-1]) * h for h in config.horizons}
        self.pending_value = {h: array("d", [0.0]) * h for h in config.horizons}
        #: Per horizon, a ring of the last actual/forecast ratios (sorted copies are made when intervals are read).
        self.ratios = {h: array("d") for h in config.horizons}
        #: Interval quantiles per horizon, refreshed every ``_REFRESH`` new ratios (sorting each bucket costs 100 µs).
        self._quantiles: dict[int, tuple[float, float, int]] = {}
        self._seen: dict[int, int] = {}

    @property
    def is_seasonal(self) -> bool:
        """Whether a whole day has been seen (before that, forecasts are the recent level)."""
        return self.first_ms is not None and self.last_ms is not None and self.last_ms - self.first_ms >= DAY_MS

    def base(self, ts_ms: int) -> float:
        """The seasonal expectation at ``ts_ms`` (time of day profile × weekday factor)."""
        slot_f = (ts_ms % DAY_MS) / self.config.slot_ms - 0.5
        n = len(self.profile)
        i0 = math.floor(slot_f)
        w = slot_f - i0
        a, b = self.profile[i0 % n], self.profile[(i0 + 1) % n]
        day = (ts_ms // DAY_MS + 4) % 7  # 1970-01-01 was a Thursday: 0 = Monday
        return ((1 - w) * a + w * b) * (self.week[day] if self.config.is_weekly else 1.0)

    def observe(self, bucket_ms: int, value: float) -> list[Point]:
        """Learn one completed bucket (score first: the pending forecasts for it are scored, then learnt)."""
        cfg = self.config
        if self.first_ms is None:
            self.first_ms, self.recent = bucket_ms, value
        number = bucket_ms // cfg.bucket_ms
        for horizon, targets in self.pending_at.items():
            slot = number % horizon
            predicted = self.pending_value[horizon][slot]
            if targets[slot] == number and predicted > 1e-9:
                self._add_ratio(horizon, value / predicted)
        self.last_ms = bucket_ms
        self.recent += 0.2 * (value - self.recent)
        mid = bucket_ms + cfg.bucket_ms // 2
        base = self.base(mid)
        if self.is_seasonal and base > 1e-9:
            ratio = min(max(value / base, 0.2), 5.0)  # one odd bucket moves the level, not to zero or ten-fold
            self.level += cfg.level_alpha * (ratio - self.level)
        self._learn_profile(mid, value)
        points = [self._point(bucket_ms, h) for h in cfg.horizons]
        return points

    def _learn_profile(self, ts_ms: int, value: float) -> None:
        cfg = self.config
        day = (ts_ms // DAY_MS + 4) % 7
        week = self.week[day] if cfg.is_weekly else 1.0
        if cfg.is_weekly and self.is_seasonal:
            plain = self.base(ts_ms) / max(week, 1e-9)
            if plain > 1e-9:
                target = min(max(value / plain, 0.2), 5.0)
                self.week[day] += cfg.week_alpha * (target - week)
        deseasoned = value / max(week, 1e-9)
        slot_f = (ts_ms % DAY_MS) / cfg.slot_ms - 0.5
        n = len(self.profile)
        i0 = math.floor(slot_f)
        w = slot_f - i0
        for i, share in ((i0 % n, 1 - w), ((i0 + 1) % n, w)):
            if share <= 0:
                continue
            self.profile_n[i] += 1
            if self.profile_n[i] == 1:
                self.profile[i] = deseasoned
                continue
            alpha = share * max(1.0 / self.profile_n[i], cfg.profile_alpha_min)
            self.profile[i] += alpha * (deseasoned - self.profile[i])

    def _point(self, bucket_ms: int, horizon: int) -> Point:
        cfg = self.config
        target_ms = bucket_ms + horizon * cfg.bucket_ms
        if self.is_seasonal:
            value = max(self.level * self.base(target_ms + cfg.bucket_ms // 2), 0.0)
        else:
            value = max(self.recent, 0.0)
        number = target_ms // cfg.bucket_ms
        self.pending_at[horizon][number % horizon] = number
        self.pending_value[horizon][number % horizon] = value
        lo, hi = self._interval(horizon)
        lower, upper = value * lo, value * hi
        return Point(horizon * cfg.bucket_ms, value, min(lower, value), max(upper, value))

    def _add_ratio(self, horizon: int, ratio: float) -> None:
        ring, seen = self.ratios[horizon], self._seen.get(horizon, 0)
        if len(ring) < self.config.residuals:
            ring.append(ratio)
        else:
            ring[seen % self.config.residuals] = ratio
        self._seen[horizon] = seen + 1

    def _interval(self, horizon: int) -> tuple[float, float]:
        ratios = self.ratios[horizon]
        if len(ratios) < 20:  # not enough history: a wide interval that says so
            return 0.5, 1.5
        cached = self._quantiles.get(horizon)
        seen = self._seen.get(horizon, 0)
        if cached is None or seen - cached[2] >= _REFRESH:
            ordered = sorted(ratios)
            lo_q, hi_q = self.config.interval
            cached = (ordered[int(lo_q * (len(ordered) - 1))], ordered[int(math.ceil(hi_q * (len(ordered) - 1)))], seen)
            self._quantiles[horizon] = cached
        return cached[0], cached[1]

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        """Plain-JSON state (round trips through ``restore``)."""
        return {
            "profile": self.profile.tolist(), "profile_n": self.profile_n.tolist(), "week": self.week,
            "level": self.level, "recent": self.recent, "first_ms": self.first_ms, "last_ms": self.last_ms,
            "pending": {str(h): [self.pending_at[h].tolist(), self.pending_value[h].tolist()] for h in self.pending_at},
            "ratios": {str(h): r.tolist() for h, r in self.ratios.items()},
            "quantiles": {str(h): list(q) for h, q in self._quantiles.items()},
            "seen": {str(h): n for h, n in self._seen.items()},
        }

    @classmethod
    def restore(cls, data: dict[str, Any], config: ForecasterConfig = ForecasterConfig()) -> "SeasonalForecaster":
        """Rebuild from ``snapshot()``."""
        f = cls(config)
        f.profile, f.profile_n = array("d", data["profile"]), array("q", data["profile_n"])
        f.week, f.level, f.recent = [float(x) for x in data["week"]], float(data["level"]), float(data["recent"])
        f.first_ms, f.last_ms = data["first_ms"], data["last_ms"]
        for h, (targets, values) in data["pending"].items():
            if int(h) in f.pending_at:
                f.pending_at[int(h)], f.pending_value[int(h)] = array("q", targets), array("d", values)
        f._quantiles = {int(h): (float(q[0]), float(q[1]), int(q[2])) for h, q in data.get("quantiles", {}).items()}
        f._seen = {int(h): int(n) for h, n in data.get("seen", {}).items()}
        for h, values in data["ratios"].items():
            if int(h) in f.ratios:
                f.ratios[int(h)] = array("d", values)
        return f


def seasonal_naive(history: dict[int, float], target_ms: int, season_ms: int = DAY_MS) -> float | None:
    """The baseline: the value one season before ``target_ms`` (``None`` without one).

    >>> seasonal_naive({0: 5.0}, DAY_MS)
    5.0
    """
    return history.get(target_ms - season_ms)


# --------------------------------------------------------------------------- aggregation


def entities_of_request(route: str, workflow: str, tokens: int) -> Iterator[tuple[str, float]]:
    """What one request adds to which entity's bucket sum: one request and its tokens, per route and workflow."""
    yield f"route:{route}|rps", 1.0
    yield f"route:{route}|tokens_s", float(tokens)
    yield f"workflow:{workflow}|rps", 1.0
    yield f"workflow:{workflow}|tokens_s", float(tokens)


def is_rate(entity: str) -> bool:
    """Rates (counts per second, zero when nothing happened) vs gauges (mean of samples, absent when none)."""
    return not entity.startswith("metric:")


class BucketAggregator:
    """Per input partition: partial sums per (entity, bucket), closed once the partition's watermark passes.

    >>> agg = BucketAggregator(bucket_ms=60_000, lateness_ms=10_000)
    >>> agg.add("route:a|rps", 1_000, 1.0)
    True
    >>> agg.close()
    []
    >>> agg.add("route:a|rps", 71_000, 1.0)
    True
    >>> agg.close()
    [('route:a|rps', 0, 1.0, 1)]
    >>> agg.add("route:a|rps", 2_000, 1.0)  # its bucket is closed: late
    False
    """

    def __init__(self, bucket_ms: int = 60_000, lateness_ms: int = 10_000) -> None:
        self.bucket_ms, self.lateness_ms = bucket_ms, lateness_ms
        self.open: dict[tuple[str, int], list[float]] = {}
        self.watermark_ms = 0
        self.closed_before_ms = 0
        self.late = 0

    def add(self, entity: str, ts_ms: int, value: float) -> bool:
        """Add ``value`` to its bucket; ``False`` (and counted) when that bucket is already closed."""
        bucket = ts_ms - ts_ms % self.bucket_ms
        if bucket < self.closed_before_ms:
            self.late += 1
            return False
        acc = self.open.get((entity, bucket))
        if acc is None:
            self.open[(entity, bucket)] = [value, 1.0]
        else:
            acc[0] += value
            acc[1] += 1.0
        self.watermark_ms = max(self.watermark_ms, ts_ms)
        return True

    def close(self) -> list[tuple[str, int, float, int]]:
        """Buckets ended more than ``lateness_ms`` before the watermark: (entity, bucket, sum, samples)."""
        horizon = self.watermark_ms - self.lateness_ms
        horizon -= horizon % self.bucket_ms
        if horizon <= self.closed_before_ms:
            return []
        done = sorted((k for k in self.open if k[1] + self.bucket_ms <= horizon), key=lambda k: (k[1], k[0]))
        self.closed_before_ms = horizon
        return [(e, b, *self._pop(e, b)) for e, b in done]

    def _pop(self, entity: str, bucket: int) -> tuple[float, int]:
        total, n = self.open.pop((entity, bucket))
        return total, int(n)

    def snapshot(self) -> dict[str, Any]:
        return {"open": [[e, b, v[0], v[1]] for (e, b), v in self.open.items()],
                "watermark_ms": self.watermark_ms, "closed_before_ms": self.closed_before_ms}

    def load(self, data: dict[str, Any]) -> None:
        self.open = {(str(e), int(b)): [float(s), float(n)] for e, b, s, n in data["open"]}
        self.watermark_ms, self.closed_before_ms = int(data["watermark_ms"]), int(data["closed_before_ms"])


class EntitySeries:
    """Per entity, after the repartition: adds partial sums of every source, closes buckets, forecasts them."""

    def __init__(self, entity: str, config: ForecasterConfig = ForecasterConfig()) -> None:
        self.entity, self.config = entity, config
        self.forecaster = SeasonalForecaster(config)
        self.partial: dict[int, list[float]] = {}
        self.next_bucket_ms: int | None = None
        self.last_value = 0.0

    def add(self, bucket_ms: int, total: float, samples: int) -> bool:
        """Add one partial sum; ``False`` when its bucket has already been forecast (late)."""
        if self.next_bucket_ms is not None and bucket_ms < self.next_bucket_ms:
            return False
        acc = self.partial.setdefault(bucket_ms, [0.0, 0.0])
        acc[0] += total
        acc[1] += samples
        return True

    def advance(self, until_ms: int) -> list[Point]:
        """Forecast from every bucket that ends by ``until_ms`` (rates: missing buckets are zero)."""
        bucket_ms = self.config.bucket_ms
        if self.next_bucket_ms is None:
            if not self.partial:
                return []
            self.next_bucket_ms = min(self.partial)
        points: list[Point] = []
        rate = is_rate(self.entity)
        while self.next_bucket_ms + bucket_ms <= until_ms:
            if not self.partial and (not rate or until_ms - self.next_bucket_ms > DAY_MS):
                # Nothing pending: a gauge waits for its next sample; a rate skips to the last day of zeros.
                if not rate:
                    break
                self.next_bucket_ms = until_ms - until_ms % bucket_ms - DAY_MS
            acc = self.partial.pop(self.next_bucket_ms, None)
            if acc is not None or rate:
                total, n = acc if acc is not None else (0.0, 0.0)
                self.last_value = total * 1000.0 / bucket_ms if rate else total / max(n, 1.0)
                points = self.forecaster.observe(self.next_bucket_ms, self.last_value)
                self.next_bucket_ms += bucket_ms
            else:
                self.next_bucket_ms = min(self.partial)  # a gauge's gap: go to its next sample
        return points

    def snapshot(self) -> dict[str, Any]:
        return {"f": self.forecaster.snapshot(), "partial": [[b, v[0], v[1]] for b, v in self.partial.items()],
                "next": self.next_bucket_ms, "last": self.last_value}

    def hot_snapshot(self) -> dict[str, Any]:
        """The part that changes every bucket and is small (sums, clock, level); ``snapshot`` has the rest too."""
        f = self.forecaster
        return {"partial": [[b, v[0], v[1]] for b, v in self.partial.items()], "next": self.next_bucket_ms,
                "last": self.last_value, "level": f.level, "recent": f.recent, "first_ms": f.first_ms,
                "last_ms": f.last_ms}

    def load_hot(self, data: dict[str, Any]) -> None:
        """Overlay a newer ``hot_snapshot`` on a (possibly older) full one."""
        f = self.forecaster
        self.partial = {int(b): [float(t), float(n)] for b, t, n in data["partial"]}
        self.next_bucket_ms, self.last_value = data["next"], float(data["last"])
        f.level, f.recent, f.first_ms, f.last_ms = float(data["level"]), float(data["recent"]), data["first_ms"], data["last_ms"]

    @classmethod
    def restore(cls, entity: str, data: dict[str, Any], config: ForecasterConfig = ForecasterConfig()) -> "EntitySeries":
        s = cls(entity, config)
        s.forecaster = SeasonalForecaster.restore(data["f"], config)
        s.partial = {int(b): [float(t), float(n)] for b, t, n in data["partial"]}
        s.next_bucket_ms, s.last_value = data["next"], float(data["last"])
        return s


def mape(pairs: list[tuple[float, float]]) -> float:
    """Mean absolute percentage error of (actual, forecast) pairs with a non-zero actual.

    >>> mape([(100.0, 90.0), (50.0, 55.0)])
    0.1
    """
    scored = [abs(a - f) / abs(a) for a, f in pairs if abs(a) > 1e-9]
    return sum(scored) / len(scored) if scored else float("nan")


__all__ = ["BucketAggregator", "EntitySeries", "ForecasterConfig", "Point", "SeasonalForecaster",
           "entities_of_request", "is_rate", "mape", "seasonal_naive"]
