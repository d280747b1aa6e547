"""Detectors by name: the one table the stream, ``loopwise detect`` and the benchmarks share."""

from __future__ import annotations

from typing import Protocol, Sequence

from models.scorers import make_river_scorer
from processors.anomaly.detectors import METHODS, SeriesDetector

DEFAULT_DETECTOR = "ensemble"
RIVER_DETECTORS = ("hst", "gaussian", "holtwinters", "snarimax")
SEASONAL = "seasonal"  # the ensemble on values adjusted by learned time-of-day offsets
DETECTORS: tuple[str, ...] = ("default", *METHODS, SEASONAL, *RIVER_DETECTORS)


class SeriesScorer(Protocol):
    """Scores one value of one series in [0, 1], scoring before learning."""

    def step(self, value: float, ts_ms: int | None = None) -> float:
        """Score ``value`` (observed at ``ts_ms`` if known) then learn it."""
        ...


class _RobustScorer:
    """Adapts :class:`SeriesDetector` (which also returns evidence) to :class:`SeriesScorer`."""

    def __init__(self, detector: SeriesDetector) -> None:
        self._detector = detector

    def step(self, value: float, ts_ms: int | None = None) -> float:
        return self._detector.step(value, ts_ms).score


def make_scorer(name: str = "default", seed: int = 42, warmup: int = 32) -> SeriesScorer:
    """Build a fresh scorer for one series.

    Args:
        name: one of :data:`DETECTORS`; ``default`` is the measured best.
        seed: seed of randomised detectors (HalfSpaceTrees).
        warmup: values learned before any score above 0.

    Raises:
        ValueError: unknown name.

    >>> scorer = make_scorer("default", warmup=3)
    >>> [scorer.step(v) for v in (1.0, 2.0, 1.0)]
    [0.0, 0.0, 0.0]
    >>> scorer.step(30.0) > 0.9
    True
    """
    if name == "default":
        name = DEFAULT_DETECTOR
    if name == SEASONAL:
        return _RobustScorer(SeriesDetector(warmup=warmup, season_bins=48))
    if name in METHODS:
        return _RobustScorer(SeriesDetector(method=name, warmup=warmup))
    if name in RIVER_DETECTORS:
        return make_river_scorer(name, seed=seed, warmup=warmup)
    raise ValueError(f"unknown detector {name!r}; one of {', '.join(DETECTORS)}")


def score_series(values: Sequence[float], ts_ms: Sequence[int | None] | None = None,
                 name: str = "default", seed: int = 42, warmup: int = 32) -> list[float]:
    """Score a whole series in order with a fresh scorer (offline mode of the stream's detector)."""
    scorer = make_scorer(name, seed, warmup)
    times: Sequence[int | None] = ts_ms if ts_ms is not None else [None] * len(values)
    return [scorer.step(v, t) for v, t in zip(values, times)]
