"""River-based candidate scorers of one series (HalfSpaceTrees, GaussianScorer, forecaster residuals).

They are measured against the robust detectors of ``processors.anomaly`` in
``bench/detect_quality.py`` and selectable by name in ``loopwise detect``.
River estimators hold state that does not serialise to plain JSON (HalfSpaceTrees'
trees, SNARIMAX's regressor), so these wrappers are for offline scoring and
benchmarks; the stream uses the snapshot-able robust detectors.
"""

# River 0.26 ships without type hints on these constructors and methods.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from river import anomaly, linear_model, optim, preprocessing, time_series

from models.window import LogQuantile, SortedWindow, squash

FORECASTERS = ("holtwinters", "snarimax")


class RawScorer(Protocol):
    """Anything that gives an uncalibrated non-negative anomaly strength, scoring before learning."""

    def raw_step(self, value: float) -> float:
        """Score ``value`` then learn it; larger is more anomalous."""
        ...


class RiverScorer:
    """Calibrates a River scorer's raw output by an online 0.99-quantile of its own past output.

    Args:
        raw: the wrapped scorer.
        name: detector name for records and the CLI.
        warmup: values learned before any score above 0.

    >>> s = RiverScorer(ForecastResidual("holtwinters"), "holtwinters", warmup=5)
    >>> scores = [s.step(float(i % 2)) for i in range(30)]
    >>> scores[:5], s.step(40.0) > 0.8
    ([0.0, 0.0, 0.0, 0.0, 0.0], True)
    """

    def __init__(self, raw: RawScorer, name: str, warmup: int = 32) -> None:
        self.name, self.warmup = name, warmup
        self._raw, self._n = raw, 0
        self._q = LogQuantile(0.99, 1.0)

    def step(self, value: float, ts_ms: int | None = None) -> float:
        """Score then learn (``ts_ms`` is unused: these models see order only); non-finite values score 0."""
        if not math.isfinite(value):
            return 0.0
        raw = self._raw.raw_step(value)
        self._n += 1
        if self._n <= self.warmup:
            return 0.0
        score = squash(raw / self._q.value)
        self._q.update(max(raw, 1e-12))
        return score


class HalfSpaceScorer:
    """``MinMaxScaler | HalfSpaceTrees`` on the value alone; seeded."""

    def __init__(self, seed: int = 42) -> None:
        self._scaler = preprocessing.MinMaxScaler()
        self._hst = anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=64, seed=seed)

    def raw_step(self, value: float) -> float:
        """HST's score of the scaled value, then learn."""
        self._scaler.learn_one({"x": value})
        x = self._scaler.transform_one({"x": value})
        score = float(self._hst.score_one(x))
        self._hst.learn_one(x)
        return score


class GaussianTail:
    """``GaussianScorer`` over a rolling window; NB it scores 1.0 on a constant series."""

    def __init__(self, window: int = 256) -> None:
        self._scorer = anomaly.GaussianScorer(window_size=window, grace_period=1)

    def raw_step(self, value: float) -> float:
        """Two-sided tail strength ``-log(1 - score)`` of the value, then learn."""
        with np.errstate(divide="ignore", invalid="ignore"):  # zero variance: constant so far
            score = float(self._scorer.score_one(None, value))
        self._scorer.learn_one(None, value)
        return -math.log(max(1.0 - score, 1e-12)) if math.isfinite(score) else 0.0


class ForecastResidual:
    """Robust z of a one-step forecast's residual (HoltWinters or SNARIMAX).

    Args:
        kind: ``holtwinters`` (level + trend) or ``snarimax`` (2,1,1 on a standardised regressor).
        window: residuals kept for the robust scale.
    """

    def __init__(self, kind: str, window: int = 64) -> None:
        if kind not in FORECASTERS:
            raise ValueError(f"unknown forecaster {kind!r}; one of {FORECASTERS}")
        if kind == "holtwinters":
            self._model: time_series.base.Forecaster = time_series.HoltWinters(alpha=0.3, beta=0.05)
        else:
            regressor = preprocessing.StandardScaler() | linear_model.LinearRegression(
                optimizer=optim.SGD(0.005), intercept_lr=0.005)
            self._model = time_series.SNARIMAX(p=2, d=1, q=1, regressor=regressor)
        self._residuals = SortedWindow(window)
        self._n = 0

    def raw_step(self, value: float) -> float:
        """|residual - median| / IQR scale of past residuals, then learn."""
        forecast = float(self._model.forecast(horizon=1)[0]) if self._n > 2 else value
        residual = value - forecast if math.isfinite(forecast) else 0.0
        median = self._residuals.quantile(0.5)
        iqr = self._residuals.quantile(0.75) - self._residuals.quantile(0.25)
        z = abs(residual - median) / max(iqr / 1.349, 1e-9 * abs(value), 1e-300)
        self._residuals.push(residual)
        self._model.learn_one(value)
        self._n += 1
        return z if self._n > 3 else 0.0


def make_river_scorer(name: str, seed: int = 42, warmup: int = 32) -> RiverScorer:
    """Build a calibrated River candidate by name: ``hst``, ``gaussian``, ``holtwinters``, ``snarimax``."""
    if name == "hst":
        return RiverScorer(HalfSpaceScorer(seed), name, warmup)
    if name == "gaussian":
        return RiverScorer(GaussianTail(), name, warmup)
    return RiverScorer(ForecastResidual(name), name, warmup)
