"""Score-then-learn detectors of one numeric series, calibrated to [0, 1] and snapshot-able to JSON.

Components (chosen by ``bench/detect_quality.py``, see its table):

* ``level`` — robust z of the value against the median of the last ``window``
  values, scaled by the window's IQR (fallbacks for flat, quantised series:
  interdecile range, then running mean absolute deviation).
* ``diff`` — robust z of the step from the median of the last ``SHORT``
  values (not the last value alone, so the return from a spike is not a
  second alarm) against the median absolute step (of non-zero steps when most
  are zero); catches spikes and level shifts on smooth or seasonal series
  where the level's spread is wide.
* ``ewma`` — the z of the value against an exponentially weighted mean and
  variance; the classical baseline.

Each raw z is divided by an online 0.995-quantile of the same entity's past z
(never below ``Z_FLOOR``), so a heavy-tailed but steady series keeps low
scores, then squashed to [0, 1] (0.5 at 1.5 times that quantile). ``ensemble``
takes the max of ``level`` and ``diff``; with ``season_bins`` it first removes
a learned time-of-day offset (the registry's ``seasonal``; it did not pay on
the benchmark, so it is off by default).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Any, Literal

from models.window import HALF_SCORE_Z, LogQuantile, SortedWindow, squash
from processors.anomaly.trend import TrendComponent

Method = Literal["level", "diff", "ewma", "ensemble"]
Direction = Literal["both", "up", "down"]
METHODS: tuple[Method, ...] = ("level", "diff", "ewma", "ensemble")
VERSION = "1"
Z_FLOOR = 3.0  # a Gaussian series' 0.99-quantile of |z| is 2.58: never sharpen beyond that
SCORE_TAU = 0.995  # measured: fewer false alarms than 0.99 at the same recall (bench/detect_quality)
IQR_TO_SIGMA = 1.349
IDR_TO_SIGMA = 2.563
MEDIAN_ABS_TO_SIGMA = 0.6745
MEAN_ABS_TO_SIGMA = 1.2533
SHORT = 5
DAY_MS = 86_400_000
SEASON_RATE = 0.1


@dataclass(frozen=True, slots=True)
class Scored:
    """One judged value: calibrated score, signed robust z, and the range the detector expected."""

    score: float
    z: float
    expected_low: float
    expected_high: float
    is_warm: bool


class SeriesDetector:
    """Robust online detector of one series: ``step`` scores a value, then learns it.

    Args:
        method: which component(s) score; see the module docstring.
        window: values kept for the rolling median and scale.
        warmup: values learned before any score above 0.
        direction: ``up`` ignores drops (latency, error rate), ``down`` rises.
        season_bins: time-of-day bins of a learned seasonal offset removed before
            scoring (0: off — it did not pay on the benchmark, see ``seasonal``).
        min_scale: absolute floor of the scales, for bounded signals whose
            natural unit is known (an error rate moves by whole requests).
        has_trend: also score the recent level against the older half of the
            window (:mod:`processors.anomaly.trend`), for slow degradations.

    >>> d = SeriesDetector(window=16, warmup=8)
    >>> [d.step(float(i % 3)).score for i in range(9)][-1] < 0.5
    True
    >>> d.step(50.0).score > 0.9
    True
    """

    __slots__ = ("method", "window", "warmup", "direction", "_n", "_recent", "_level",
                 "_steps", "_absdev", "_absstep", "_ew", "_q_level", "_q_diff", "season_bins", "_season", "min_scale",
                 "_trend")

    def __init__(self, method: Method = "ensemble", window: int = 128, warmup: int = 32,
                 direction: Direction = "both", season_bins: int = 0, min_scale: float = 0.0,
                 has_trend: bool = False) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; one of {METHODS}")
        self.method, self.window, self.warmup, self.direction = method, window, warmup, direction
        self._n = 0
        self._recent = array("d")  # last SHORT values, arrival order
        self._level = SortedWindow(window)
        self._steps = SortedWindow(window)
        self._absdev = 0.0  # EW mean |x - median|: the scale when the IQR is 0 (quantised series)
        self._absstep = 0.0
        self._ew = array("d", (0.0, 0.0))  # EW mean, EW variance
        self._q_level = LogQuantile(SCORE_TAU, Z_FLOOR)
        self._q_diff = LogQuantile(SCORE_TAU, Z_FLOOR)
        self.season_bins, self.min_scale = season_bins, min_scale
        self._season = array("d", bytes(8 * season_bins))  # time-of-day offsets
        self._trend = TrendComponent(window, SCORE_TAU, Z_FLOOR) if has_trend else None

    @property
    def name(self) -> str:
        """Detector name as written in ``Anomaly.detector``."""
        return f"robust-{self.method}"

    @property
    def seen(self) -> int:
        """Finite values learned so far."""
        return self._n

    def step(self, value: float, ts_ms: int | None = None) -> Scored:
        """Score ``value`` against the past, then learn it. Non-finite values score 0 and are skipped."""
        return self._judge(value, ts_ms, True)

    def score(self, value: float, ts_ms: int | None = None) -> Scored:
        """Score ``value`` against the past without learning it.

        For a series scored more often than it is learned: the bank scores a
        route's error rate at every request, so an outage shows at once, but
        learns it once per window, so its memory spans minutes, not requests.
        """
        return self._judge(value, ts_ms, False)

    def _judge(self, value: float, ts_ms: int | None, is_learning: bool) -> Scored:
        if not math.isfinite(value):
            return Scored(0.0, 0.0, math.nan, math.nan, self._n >= self.warmup)
        median = self._level.quantile(0.5) if self._n else value
        level_scale = self._level_scale(median)
        pos, offset = self._season_at(ts_ms)
        x = value - offset
        z_level, z_diff = self._components(x, median, level_scale)
        z_trend = 0.0 if self._trend is None else self._trend.z(x, list(self._recent)[1:], self._step_scale(median))
        is_warm = self._n >= self.warmup
        score = self._score(z_level, z_diff, z_trend) if is_warm else 0.0
        centre, spread = (self._ew[0], math.sqrt(self._ew[1]) or level_scale) if self.method == "ewma" \
            else (median, level_scale)
        # The range whose values would score below 0.5 on the level component.
        band = HALF_SCORE_Z * max(self._q_level.value, Z_FLOOR) * spread
        scored = Scored(score, z_level, offset + centre - band, offset + centre + band, is_warm)
        if is_learning:
            self._learn_season(pos, x - median, offset, level_scale)
            self._learn(x, median, (z_level, z_diff), is_warm)
            if self._trend is not None:
                self._trend.learn(x, z_trend, is_warm)
        return scored

    def _season_at(self, ts_ms: int | None) -> tuple[float, float]:
        """Fractional bin of the time of day and the learned offset there (linear between bins)."""
        if ts_ms is None or not self.season_bins:
            return -1.0, 0.0
        pos = (ts_ms % DAY_MS) * self.season_bins / DAY_MS
        lo = int(pos)
        w = pos - lo
        return pos, (1 - w) * self._season[lo] + w * self._season[(lo + 1) % self.season_bins]

    def _learn_season(self, pos: float, residual: float, offset: float, scale: float) -> None:
        if pos < 0:
            return
        # Clipped so that a spike does not echo a day later.
        target = offset + max(-3.0 * scale, min(3.0 * scale, residual))
        lo = int(pos)
        w = pos - lo
        self._season[lo] += SEASON_RATE * (1 - w) * (target - self._season[lo])
        hi = (lo + 1) % self.season_bins
        self._season[hi] += SEASON_RATE * w * (target - self._season[hi])

    def _components(self, x: float, median: float, level_scale: float) -> tuple[float, float]:
        """Signed raw z of the level and of the step (0 while history is too short)."""
        if self._n < 2:
            return 0.0, 0.0
        if self.method == "ewma":
            z_level = (x - self._ew[0]) / (math.sqrt(self._ew[1]) or level_scale)
        else:
            z_level = (x - median) / level_scale
        z_diff = (x - self._reference()) / self._step_scale(median)
        return z_level, z_diff

    def _score(self, z_level: float, z_diff: float, z_trend: float) -> float:
        score = 0.0
        if self.method in ("level", "ewma", "ensemble"):
            score = squash(self._directed(z_level) / max(self._q_level.value, Z_FLOOR))
        if self.method in ("diff", "ensemble"):
            score = max(score, squash(self._directed(z_diff) / max(self._q_diff.value, Z_FLOOR)))
        if self._trend is not None:
            score = max(score, squash(self._directed(z_trend) / max(self._trend.quantile.value, Z_FLOOR)))
        return score

    def _reference(self) -> float:
        recent = sorted(self._recent)
        return recent[len(recent) // 2] if recent else 0.0

    def _directed(self, z: float) -> float:
        if self.direction == "up":
            return max(z, 0.0)
        if self.direction == "down":
            return max(-z, 0.0)
        return abs(z)

    def _level_scale(self, median: float) -> float:
        # Quantised or mostly flat series have a zero IQR: widen to the interdecile range,
        # then to the (less robust) mean absolute deviation. The last floors keep an
        # exactly constant series at z = 0 instead of 0/0.
        scale = (self._level.quantile(0.75) - self._level.quantile(0.25)) / IQR_TO_SIGMA
        if scale <= 0.0:
            scale = (self._level.quantile(0.9) - self._level.quantile(0.1)) / IDR_TO_SIGMA
        if scale <= 0.0:
            scale = MEAN_ABS_TO_SIGMA * self._absdev
        return max(scale, self.min_scale, 1e-9 * abs(median), 1e-300)

    def _step_scale(self, median: float) -> float:
        # A mostly flat series moves in occasional steps: its typical move is the
        # median of the non-zero steps, not the (zero) median step.
        scale = self._steps.median_nonzero() / MEDIAN_ABS_TO_SIGMA
        if scale <= 0.0:
            scale = MEAN_ABS_TO_SIGMA * self._absstep
        return max(scale, self.min_scale, 1e-9 * abs(median), 1e-300)

    def _learn(self, x: float, median: float, zs: tuple[float, float], is_warm: bool) -> None:
        alpha = 2.0 / (self.window + 1.0)
        if is_warm:
            self._q_level.update(abs(zs[0]))
            self._q_diff.update(abs(zs[1]))
        if self._n:
            step = abs(x - self._reference())
            self._steps.push(step)
            self._absstep += alpha * (step - self._absstep)
            self._absdev += alpha * (abs(x - median) - self._absdev)
            delta = x - self._ew[0]
            self._ew[0] += alpha * delta
            self._ew[1] = (1.0 - alpha) * (self._ew[1] + alpha * delta * delta)
        else:
            self._ew[0] = x
        self._level.push(x)
        if len(self._recent) == SHORT:
            del self._recent[0]
        self._recent.append(x)
        self._n += 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state: restoring it gives identical subsequent scores."""
        return {
            "version": VERSION, "method": self.method, "window": self.window,
            "warmup": self.warmup, "direction": self.direction, "n": self._n,
            "recent": list(self._recent),
            "level": self._level.snapshot(), "steps": self._steps.snapshot(),
            "absdev": self._absdev, "absstep": self._absstep, "ew": list(self._ew),
            "q_level": self._q_level.snapshot(), "q_diff": self._q_diff.snapshot(),
            "season_bins": self.season_bins, "season": list(self._season),
            "min_scale": self.min_scale,
            "trend": None if self._trend is None else self._trend.snapshot(),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> SeriesDetector:
        """Rebuild a detector from :meth:`snapshot`."""
        d = cls(state["method"], int(state["window"]), int(state["warmup"]), state["direction"],
                int(state["season_bins"]), float(state["min_scale"]))
        d._n = int(state["n"])
        d._recent = array("d", (float(v) for v in state["recent"]))
        d._level = SortedWindow.restore(state["level"])
        d._steps = SortedWindow.restore(state["steps"])
        d._absdev, d._absstep = float(state["absdev"]), float(state["absstep"])
        d._ew = array("d", (float(v) for v in state["ew"]))
        d._q_level = LogQuantile.restore(state["q_level"])
        d._q_diff = LogQuantile.restore(state["q_diff"])
        d._season = array("d", (float(v) for v in state["season"]))
        trend = state.get("trend")
        d._trend = None if trend is None else TrendComponent.restore(trend)
        return d
