"""NAB-style scoring (bench.detect_nab) and the causality of the detectors it compares."""

from __future__ import annotations

import numpy as np

from bench.data.synthetic import Series
from bench.detect_nab import corpus_score, nab_raw, sigmoid, window_gaussian, windows
from processors.anomaly.registry import score_series


def series(n: int = 400, at: int = 300) -> Series:
    labels = np.zeros(n, dtype=np.int8)
    labels[at] = 1
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 1.0, n)
    values[at] += 12.0
    return Series("s", "spike", np.arange(n, dtype=float), values, labels)


def test_perfect_detection_scores_100_and_silence_scores_0() -> None:
    s = series()
    (start, end), = windows(s.labels)
    early = np.zeros(len(s.values))
    early[start] = 1.0
    assert round(corpus_score([early], [s], 0.5), 6) == 100.0
    assert corpus_score([np.zeros(len(s.values))], [s], 0.5) == 0.0


def test_earlier_is_better_and_false_positives_cost() -> None:
    s = series()
    (start, end), = windows(s.labels)
    wins = windows(s.labels)
    early, late = np.zeros(len(s.values), dtype=bool), np.zeros(len(s.values), dtype=bool)
    early[start + 1], late[end - 2] = True, True
    assert nab_raw(early, wins) > nab_raw(late, wins) > -1.0
    noisy = early.copy()
    noisy[10] = True
    assert nab_raw(noisy, wins) == nab_raw(early, wins) - 0.11
    assert sigmoid(-1.0) > 0.98 and abs(sigmoid(0.0)) < 1e-12


def test_default_detector_and_window_gaussian_are_causal() -> None:
    s = series()
    future = s.values.copy()
    future[250:] = np.random.default_rng(9).normal(50.0, 20.0, len(future) - 250)  # a different future
    ts = [int(t * 1000) for t in s.ts_s]
    a = score_series(list(map(float, s.values)), ts, "default")
    b = score_series(list(map(float, future)), ts, "default")
    assert a[:250] == b[:250] and a[250:] != b[250:]
    assert np.array_equal(window_gaussian(s.values)[:250], window_gaussian(future)[:250])


def test_window_gaussian_ranks_the_spike_highest() -> None:
    s = series()
    assert int(np.argmax(window_gaussian(s.values))) == 300
