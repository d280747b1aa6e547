"""DriftMonitor: detects sustained shifts of residuals, not spikes or noise; snapshots restore exactly."""

from __future__ import annotations

import json
import random

import pytest

from processors.drift import DriftMonitor
from schemas.records import Severity, SignalKind


def residuals(n: int, seed: int, shift_at: int | None = None, shift: float = 3.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(0.0, 1.0) + (shift if shift_at is not None and i >= shift_at else 0.0)
            for i in range(n)]


def feed(monitor: DriftMonitor, values: list[float]) -> list[int]:
    hits = [monitor.observe("r1", "route", "latency_ms", 1000 * i, v) for i, v in enumerate(values)]
    return [i for i, h in enumerate(hits) if h is not None]


@pytest.mark.parametrize("kind", ["page_hinkley", "adwin"])
def test_mean_shift_is_detected_soon_after_it_starts(kind: str) -> None:
    hits = feed(DriftMonitor(kind), residuals(1000, seed=1, shift_at=500))
    assert hits and 500 < hits[0] < 560


@pytest.mark.parametrize("kind", ["page_hinkley", "adwin"])
def test_steady_noise_and_isolated_spikes_are_no_drift(kind: str) -> None:
    values = residuals(5000, seed=2)
    for i in range(100, 5000, 400):
        values[i] = 1e6
    assert feed(DriftMonitor(kind), values) == []


def test_drift_record_says_what_drifted_and_since_when() -> None:
    monitor = DriftMonitor()
    values = residuals(700, seed=3, shift_at=400)
    records = [monitor.observe("r1", "route", "latency_ms", 1000 * i, v) for i, v in enumerate(values)]
    first = next(r for r in records if r is not None)
    assert (first.kind, first.severity, first.detector) == (SignalKind.DRIFT, Severity.WARNING,
                                                            "page_hinkley")
    assert (first.entity, first.signal, first.window_start_ms) == ("r1", "latency_ms", 0)
    assert first.window_end_ms == first.ts_ms > 400_000


def test_repeated_detections_are_rate_limited_per_series() -> None:
    monitor = DriftMonitor(min_gap_ms=10_000_000)
    values = residuals(3000, seed=4, shift_at=500)
    values[1500:] = [v + 6.0 for v in values[1500:]]
    assert len(feed(monitor, values)) == 1


def test_page_hinkley_snapshot_through_json_gives_identical_detections() -> None:
    values = residuals(1200, seed=5, shift_at=900)
    original = DriftMonitor()
    feed(original, values[:600])
    restored = DriftMonitor()
    restored.restore(json.loads(json.dumps(original.snapshot())))
    tail = [(1000 * (600 + i), v) for i, v in enumerate(values[600:])]
    assert ([original.observe("r1", "route", "latency_ms", t, v) for t, v in tail]
            == [restored.observe("r1", "route", "latency_ms", t, v) for t, v in tail])


def test_adwin_restore_replays_its_tail_and_still_finds_the_drift() -> None:
    values = residuals(1200, seed=5, shift_at=900)
    original = DriftMonitor("adwin")
    feed(original, values[:600])
    restored = DriftMonitor()
    restored.restore(json.loads(json.dumps(original.snapshot())))
    assert restored.kind == "adwin"
    first_original = 600 + feed(original, values[600:])[0]
    first_restored = 600 + feed(restored, values[600:])[0]
    assert 900 < first_restored <= first_original + 20
